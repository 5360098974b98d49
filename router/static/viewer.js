// The seasync viewer: the router's introspection objects, and any object live, in a browser.
//
// Built on seasync.js like any other page: it consumes SeapigServer::Objects, ::Connections,
// ::Statistics (seapig's time slots), SeasyncServer::Statistics (seasync's totals and rates) and
// SeasyncServer::Workers (only the ones the open tab needs: the router refreshes an introspection
// object only while someone watches it) and, in the Observe tab, any id or wildcard.
// Their shapes: docs/INTROSPECTION.md.
// No framework: each change re-renders the open tab, coalesced to one render per animation frame.

import {INTROSPECTION, SeasyncClient, matches} from "./seasync.js";

const {OBJECTS, CONNECTIONS, WORKERS} = INTROSPECTION;
const STATISTICS = INTROSPECTION.SEASYNC_STATISTICS; // totals and rates: the header and the Statistics tab
const SEAPIG_STATISTICS = INTROSPECTION.STATISTICS; // seapig's time slots: the Statistics tab
const TABS = ["objects", "connections", "workers", "statistics", "observe"];
const TAB_OBJECT = {objects: OBJECTS, connections: CONNECTIONS, workers: WORKERS, statistics: SEAPIG_STATISTICS};
const INTERNAL = /^(SeapigServer|SeasyncServer)::/;

const $ = (id) => document.getElementById(id);

const view = {
  client: null,
  url: "",
  tab: "objects",
  observe: "", // the pattern of the Observe tab
  consumers: new Map(), // pattern -> consumer, the subscriptions the open tab needs
  sort: {objects: ["id", 1], connections: ["id", 1], workers: ["id", 1]},
  scale: "seconds", // the Statistics tab's time scale
  cards: new Map(), // observe: id -> {el, value, pre}
  frame: 0,
};

// ------------------------------------------------------------------------------------------- DOM helpers

/** h("a", {href, class}, "text", child...): an element; strings become text nodes (never HTML). */
function h(tag, attrs = null, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}) {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  return el;
}

// ------------------------------------------------------------------------------------------- formatting

const nf = new Intl.NumberFormat("en-US");
const fmtInt = (n) => (typeof n === "number" ? nf.format(Math.round(n)) : "–");

function fmtBytes(n) {
  if (typeof n !== "number") return "–";
  if (n < 1024) return `${Math.round(n)} B`;
  const units = ["kB", "MB", "GB", "TB"];
  let value = n / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value < 10 ? value.toFixed(1) : Math.round(value)} ${units[unit]}`;
}

function fmtMs(ms) {
  if (typeof ms !== "number") return "–";
  if (ms < 1) return `${ms.toFixed(2)} ms`;
  if (ms < 1000) return `${ms < 10 ? ms.toFixed(1) : Math.round(ms)} ms`;
  return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
}

function fmtDuration(seconds) {
  if (typeof seconds !== "number" || !Number.isFinite(seconds)) return "–";
  const s = Math.max(0, seconds);
  if (s < 1) return "now";
  if (s < 60) return `${Math.floor(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d`;
}

const ago = (unixSeconds) => (typeof unixSeconds === "number" ? fmtDuration(Date.now() / 1000 - unixSeconds) : null);

/** A version: "–" for none, "key: value" lines for a dependency hash, compact JSON otherwise. */
function versionNode(version) {
  if (version === null || version === undefined || version === 0) return h("span", {class: "muted"}, "–");
  if (typeof version === "object" && !Array.isArray(version)) {
    return h("div", {class: "version"}, Object.keys(version).sort().map((key) =>
      h("div", null, h("span", {class: "muted"}, `${key}: `), JSON.stringify(version[key]))));
  }
  return h("span", {class: "version"}, JSON.stringify(version));
}

const observeLink = (id, text = id) => h("a", {href: `#observe/${encodeURIComponent(id)}`, class: "mono"}, text);

/** Client ids as chips; long lists collapse to the first few and "+N". */
function chips(items, link = false, max = 3) {
  if (!Array.isArray(items) || items.length === 0) return h("span", {class: "muted"}, "–");
  const shown = items.slice(0, max).map((item) => h("span", {class: "chip"}, link ? observeLink(item) : item));
  if (items.length > max) shown.push(h("span", {class: "chip more", title: items.join("\n")}, `+${items.length - max}`));
  return h("div", {class: "chips"}, shown);
}

function badge(text, kind) {
  return h("span", {class: `badge ${kind}`}, text);
}

function stateBadges(state) {
  if (!state || typeof state !== "object") return badge("?", "muted");
  const out = [];
  if (state.producing) out.push(badge("producing", "busy"));
  if (state.enqueued) out.push(badge("queued", "warn"));
  if (state.waiting) out.push(badge("waiting", "warn"));
  if (state.delayed) out.push(badge("delayed", "warn"));
  if (!out.length) out.push(state.current ? badge("current", "ok") : badge("stale", "muted"));
  return h("div", {class: "badges"}, out);
}

function stateRank(state) {
  if (!state) return 9;
  if (state.producing) return 0;
  if (state.enqueued) return 1;
  if (state.waiting) return 2;
  if (state.delayed) return 3;
  return state.current ? 5 : 4;
}

// ------------------------------------------------------------------------------------------- tables

/**
 * Render rows into a table: columns are {key, label, sort(row), cell(row), num (right-aligned), desc (first
 * sort descending, as num does)}. Clicking a header sorts by it (again: reverse). rowAttrs(row) gives each <tr> its attributes (data-id for tests and links).
 */
function renderTable(table, columns, rows, sortKey, rowAttrs, empty) {
  const [key, dir] = view.sort[sortKey];
  const column = columns.find((c) => c.key === key) || columns[0];
  const sorted = rows.slice().sort((a, b) => {
    const x = column.sort(a);
    const y = column.sort(b);
    if (x < y) return -dir;
    if (x > y) return dir;
    return String(a.id).localeCompare(String(b.id));
  });
  const head = h("tr", null, columns.map((c) => h("th", {
    class: c.num ? "num sortable" : "sortable",
    "aria-sort": c.key === column.key ? (dir > 0 ? "ascending" : "descending") : null,
    title: "Sort",
    onclick: () => {
      view.sort[sortKey] = [c.key, c.key === column.key ? -dir : c.num || c.desc ? -1 : 1];
      schedule();
    },
  }, c.label, c.key === column.key ? h("span", {class: "arrow"}, dir > 0 ? " ▲" : " ▼") : null)));
  const body = sorted.length
    ? sorted.map((row) => h("tr", rowAttrs(row), columns.map((c) =>
      h("td", {class: c.num ? "num" : null, "data-label": c.label}, c.cell(row)))))
    : [h("tr", null, h("td", {colspan: columns.length, class: "empty"}, empty))];
  table.replaceChildren(h("thead", null, head), h("tbody", null, body));
}

/** A substring or wildcard filter ("car-*" matches whole ids, anything else is a case-insensitive substring). */
function filterMatcher(text) {
  const query = text.trim();
  if (!query) return () => true;
  if (query.includes("*")) return (...fields) => fields.some((f) => matches(query, String(f)));
  const lower = query.toLowerCase();
  return (...fields) => fields.some((f) => String(f).toLowerCase().includes(lower));
}

/** What to show instead of data: null when the consumer has data. */
function waitingMessage(consumer) {
  if (!view.client || !view.client.connected) return `Not connected to ${view.url}: retrying…`;
  if (!consumer || consumer.value === null) return "Waiting for the router…";
  return null;
}

// ------------------------------------------------------------------------------------------- tabs

const OBJECT_COLUMNS = [
  {key: "id", label: "Object", sort: (o) => o.id, cell: (o) => observeLink(o.id)},
  {key: "state", label: "State", sort: (o) => stateRank(o.state), cell: (o) => stateBadges(o.state)},
  {key: "known", label: "Version", sort: (o) => JSON.stringify(o.version_highest_known ?? ""),
    cell: (o) => versionNode(o.version_highest_known)},
  {key: "inferred", label: "Inferred", sort: (o) => JSON.stringify(o.version_highest_inferred ?? ""),
    cell: (o) => versionNode(o.version_highest_inferred)},
  {key: "consumers", label: "Consumers", desc: true, sort: (o) => (o.consumers || []).length, cell: (o) => chips(o.consumers)},
  {key: "producers", label: "Producers", desc: true, sort: (o) => (o.producers || []).length, cell: (o) => chips(o.producers)},
  {key: "productions", label: "Productions", num: true, sort: (o) => o.productions ?? 0, cell: (o) => fmtInt(o.productions)},
  // uploads whose data equalled the data held (only the version moved): wasted productions
  {key: "unchanged", label: "Unchanged", num: true, sort: (o) => o.unchanged ?? 0, cell: (o) => fmtInt(o.unchanged)},
  {key: "production_ms", label: "Took", num: true, sort: (o) => o.production_ms ?? -1, cell: (o) => fmtMs(o.production_ms)},
  {key: "produced_at", label: "Produced", num: true, sort: (o) => o.produced_at ?? 0,
    cell: (o) => (o.produced_at ? `${ago(o.produced_at)} ago` : "–")},
  {key: "errors", label: "Errors", num: true, sort: (o) => o.errors ?? 0,
    cell: (o) => (o.errors ? h("span", {class: "bad", title: o.last_error || ""}, fmtInt(o.errors)) : fmtInt(o.errors ?? 0))},
  {key: "size", label: "Size", num: true, sort: (o) => o.size ?? -1, cell: (o) => fmtBytes(o.size)},
];

function renderObjects() {
  const consumer = view.consumers.get(OBJECTS);
  const waiting = waitingMessage(consumer);
  const data = consumer?.value || {};
  const showInternal = $("objects-internal").checked;
  const match = filterMatcher($("objects-filter").value);
  const all = Object.values(data).filter((o) => o && typeof o.id === "string");
  const rows = all.filter((o) => (showInternal || !INTERNAL.test(o.id)) && match(o.id));
  $("objects-count").textContent = waiting ? "" : `${rows.length} of ${all.length} objects`;
  renderTable($("objects-table"), OBJECT_COLUMNS, waiting ? [] : rows, "objects",
    (o) => ({"data-id": o.id, class: o.errors ? "has-error" : null}),
    waiting || (all.length ? "No object matches the filter." : "No objects: nobody consumes anything yet."));
}

function optionsText(options) {
  if (!options || typeof options !== "object") return "";
  const rest = Object.entries(options).filter(([key]) => key !== "name" && key !== "stats");
  return rest.map(([key, value]) => `${key}: ${JSON.stringify(value)}`).join(", ");
}

function producingNode(producing) {
  if (!producing || typeof producing !== "object") return h("span", {class: "muted"}, "idle");
  return h("div", null, observeLink(producing.id),
    producing.since ? h("span", {class: "muted"}, ` for ${fmtDuration(Date.now() / 1000 - producing.since)}`) : null,
    producing.version_inferred !== undefined && producing.version_inferred !== null
      ? h("div", {class: "small"}, versionNode(producing.version_inferred)) : null);
}

const CONNECTION_COLUMNS = [
  {key: "id", label: "Client", sort: (c) => c.id, cell: (c) => h("span", {class: "mono"}, c.id)},
  {key: "peer", label: "Via", sort: (c) => String(c.peer ?? ""), cell: (c) => h("span", {class: "small mono"}, c.peer ?? "–")},
  {key: "options", label: "Options", sort: (c) => optionsText(c.options), cell: (c) => h("span", {class: "small"}, optionsText(c.options) || "–")},
  {key: "consumes", label: "Consumes", desc: true, sort: (c) => (c.consumes || []).length, cell: (c) => chips(c.consumes, true, 4)},
  {key: "produces", label: "Produces", desc: true, sort: (c) => (c.produces || []).length, cell: (c) => chips(c.produces, false, 4)},
  {key: "producing", label: "Producing", sort: (c) => (c.producing ? c.producing.id : "~"), cell: (c) => producingNode(c.producing)},
];

function renderConnections() {
  const consumer = view.consumers.get(CONNECTIONS);
  const waiting = waitingMessage(consumer);
  const all = Object.values(consumer?.value || {}).filter((c) => c && typeof c.id === "string");
  const match = filterMatcher($("connections-filter").value);
  const rows = all.filter((c) => match(c.id, c.peer ?? "", ...(c.consumes || []), ...(c.produces || [])));
  $("connections-count").textContent = waiting ? "" : `${rows.length} of ${all.length} connections`;
  renderTable($("connections-table"), CONNECTION_COLUMNS, waiting ? [] : rows, "connections",
    (c) => ({"data-id": c.id}), waiting || "No connection matches the filter.");
}

function cpuBar(percent) {
  if (typeof percent !== "number") return h("span", {class: "muted"}, "–");
  const width = Math.max(0, Math.min(100, percent));
  return h("div", {class: "cpu", title: `${percent.toFixed(1)} % of one core`},
    h("div", {class: "bar"}, h("div", {class: `fill${percent > 80 ? " hot" : ""}`, style: `width: ${width}%`})),
    h("span", {class: "num"}, `${percent.toFixed(0)} %`));
}

const WORKER_COLUMNS = [
  {key: "id", label: "Worker", sort: (w) => w.id, cell: (w) => h("span", {class: "mono"}, w.id)},
  {key: "host", label: "Host", sort: (w) => String(w.host ?? ""), cell: (w) => w.host ?? "–"},
  {key: "pid", label: "PID", num: true, sort: (w) => w.pid ?? 0, cell: (w) => w.pid ?? "–"},
  {key: "cpu", label: "CPU", num: true, sort: (w) => w.cpu_percent ?? -1, cell: (w) => cpuBar(w.cpu_percent)},
  {key: "rss", label: "Memory", num: true, sort: (w) => w.rss ?? -1, cell: (w) => fmtBytes(w.rss)},
  {key: "producing", label: "Producing", sort: (w) => (w.producing ? w.producing.id : "~"), cell: (w) => producingNode(w.producing)},
  {key: "productions", label: "Productions", num: true, sort: (w) => w.productions ?? 0, cell: (w) => fmtInt(w.productions)},
  {key: "unchanged", label: "Unchanged", num: true, sort: (w) => w.unchanged ?? 0, cell: (w) => fmtInt(w.unchanged)},
  {key: "errors", label: "Errors", num: true, sort: (w) => w.errors ?? 0,
    cell: (w) => (w.errors ? h("span", {class: "bad"}, fmtInt(w.errors)) : fmtInt(w.errors ?? 0))},
];

function renderWorkers() {
  const consumer = view.consumers.get(WORKERS);
  const waiting = waitingMessage(consumer);
  const rows = Object.values(consumer?.value || {}).filter((w) => w && typeof w.id === "string");
  const busy = rows.filter((w) => w.producing).length;
  $("workers-count").textContent = waiting ? "" : `${rows.length} workers, ${busy} busy`;
  renderTable($("workers-table"), WORKER_COLUMNS, waiting ? [] : rows, "workers", (w) => ({"data-id": w.id}),
    waiting || "No workers connected. Start some with sync-worker.");
}

/** An inline SVG sparkline of a series (oldest first), scaled to its own maximum. */
function sparkline(values, width = 240, height = 44) {
  const series = Array.isArray(values) && values.length ? values.map((v) => (typeof v === "number" ? v : 0)) : [0];
  const max = Math.max(...series, 1);
  const step = series.length > 1 ? width / (series.length - 1) : width;
  const points = series.map((v, i) => `${(i * step).toFixed(1)},${(height - 2 - (v / max) * (height - 4)).toFixed(1)}`);
  const el = svg("svg", {class: "spark", viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none",
    role: "img", "aria-label": `last ${series.length} seconds, peak ${max}`});
  el.append(svg("path", {class: "area", d: `M0,${height} L${points.join(" L")} L${width},${height} Z`}));
  el.append(svg("polyline", {class: "line", points: points.join(" ")}));
  return el;
}

const RATES = [
  ["messages_in", "Messages in", fmtInt, "/s"],
  ["messages_out", "Messages out", fmtInt, "/s"],
  ["bytes_in", "Bytes in", fmtBytes, "/s"],
  ["bytes_out", "Bytes out", fmtBytes, "/s"],
  ["productions", "Productions", fmtInt, "/s"],
  ["unchanged", "Unchanged productions", fmtInt, "/s"],
];
const COUNTS = [["objects", "Objects"], ["sessions", "Sessions"], ["queue", "Queue"], ["peers", "Peers"],
  ["productions", "Productions"], ["unchanged", "Unchanged"], ["errors", "Errors"]];

function renderStatistics() {
  const consumer = view.consumers.get(STATISTICS);
  const waiting = waitingMessage(consumer);
  const target = $("statistics-cards");
  if (waiting) {
    target.replaceChildren(h("p", {class: "empty"}, waiting), renderSlots());
    return;
  }
  const stats = consumer.value;
  const counts = COUNTS.filter(([key]) => typeof stats[key] === "number").map(([key, label]) =>
    h("div", {class: `card count${key === "errors" && stats[key] ? " bad" : ""}`, "data-stat": key},
      h("div", {class: "label"}, label), h("div", {class: "big"}, fmtInt(stats[key]))));
  const rates = stats.rates || {};
  const rateCards = RATES.filter(([key]) => Array.isArray(rates[key])).map(([key, label, fmt, unit]) => {
    const series = rates[key];
    const last = series[series.length - 1] ?? 0;
    const peak = Math.max(0, ...series);
    const avg = series.reduce((a, b) => a + b, 0) / Math.max(1, series.length);
    return h("div", {class: "card rate", "data-rate": key},
      h("div", {class: "label"}, label),
      h("div", {class: "big"}, fmt(last), h("span", {class: "unit"}, unit)),
      sparkline(series),
      h("div", {class: "small muted"},
        `avg ${fmt(avg)}${unit} · peak ${fmt(peak)}${unit}`,
        typeof stats[key] === "number" ? ` · total ${fmt(stats[key])}` : ""));
  });
  target.replaceChildren(
    h("div", {class: "cards counts"}, counts),
    h("h2", null, "Last 60 seconds"),
    h("div", {class: "cards rates"}, rateCards.length ? rateCards : h("p", {class: "muted"}, "No rates published.")),
    renderSlots());
}

// seapig's SeapigServer::Statistics: per time scale, per entity, one entry per closed slot, oldest first.
const SCALES = ["seconds", "minutes", "hours", "days"];
const ENTITIES = [
  ["connections-count", "Connections", fmtInt],
  ["message-incoming-count", "Incoming messages", fmtInt],
  ["message-incoming-size", "Incoming size", fmtBytes],
  ["message-incoming-processing-time", "Processing time (µs)", (v) => fmtInt(Math.round(v))],
  ["message-outgoing-count", "Outgoing messages", fmtInt],
  ["message-outgoing-size", "Outgoing size", fmtBytes],
];
const AGGREGATES = ["last", "count", "sum", "average", "maximum"];

/** The histogram of one slot (bucket i holds values from 10^(i/multiplier)) as bars. */
function spectrum(column, multiplier, width = 240, height = 44) {
  const el = svg("svg", {class: "spectrum", viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none",
    role: "img", "aria-label": "histogram of the last slot"});
  const top = Math.max(1, ...column);
  const step = width / Math.max(1, column.length);
  column.forEach((n, i) => {
    if (!n) return;
    const bar = svg("rect", {x: (i * step).toFixed(1), width: Math.max(1, step - 1).toFixed(1),
      y: (height - (n / top) * height).toFixed(1), height: ((n / top) * height).toFixed(1), "data-bucket": i});
    const title = svg("title");
    title.textContent = `${n} from ${fmtInt(Math.ceil(10 ** (i / multiplier)))}`;
    bar.append(title);
    el.append(bar);
  });
  return el;
}

function renderSlots() {
  const consumer = view.consumers.get(SEAPIG_STATISTICS);
  const waiting = waitingMessage(consumer);
  const buttons = h("div", {class: "scales", role: "tablist"}, SCALES.map((name) =>
    h("button", {type: "button", "data-scale": name, "aria-selected": String(name === view.scale),
      onclick: () => { view.scale = name; schedule(); }}, name)));
  const section = h("section", {id: "slots", "data-scale": view.scale}, h("h2", null, "Time slots"), buttons);
  const scale = consumer?.value?.[view.scale];
  if (waiting || !scale || typeof scale.entities !== "object") {
    section.append(h("p", {class: "muted"}, waiting || `No ${view.scale} scale published.`));
    return section;
  }
  const cards = ENTITIES.filter(([key]) => scale.entities[key]).map(([key, label, fmt]) => {
    const entity = scale.entities[key];
    const metrics = entity.metrics || {};
    const shown = AGGREGATES.filter((a) => metrics[a]?.show && Array.isArray(entity[a]));
    const main = shown.includes("sum") ? "sum" : shown[0];
    const series = Array.isArray(entity[main]) ? entity[main] : [];
    const last = (a) => (entity[a].length ? entity[a][entity[a].length - 1] : null);
    const histograms = metrics.histogram?.show && Array.isArray(entity.histogram) ? entity.histogram : null;
    return h("div", {class: "card rate slot", "data-entity": key},
      h("div", {class: "label"}, label),
      h("div", {class: "small last-slot"},
        series.length ? `last ${scale.seconds} s slot: ` : "no closed slot yet",
        series.length ? shown.map((a) => h("span", {"data-aggregate": a}, `${a} ${last(a) === null ? "–" : fmt(last(a))} `)) : null),
      sparkline(series.map((v) => (typeof v === "number" ? v : 0))),
      histograms && histograms.length ? spectrum(histograms[histograms.length - 1], metrics.histogram.multiplier || 10) : null);
  });
  section.append(h("p", {class: "small muted"},
    `${scale.keep} slots of ${fmtInt(scale.seconds)} s kept; slot in progress since ${new Date(scale.timestamp * 1000).toLocaleTimeString()}`),
  h("div", {class: "cards rates"}, cards));
  return section;
}

// ---- observe

const prettyCache = new WeakMap(); // value object -> pretty JSON (values are replaced, never modified, on updates)
const INLINE_WIDTH = 72;

/** Indented JSON where small nested arrays and objects stay on one line: [0, 1, 4, 9] not 6 lines. */
function prettyJSON(value, indent = "") {
  if (value === null || typeof value !== "object") return JSON.stringify(value);
  const isArray = Array.isArray(value);
  const keys = isArray ? null : Object.keys(value);
  if ((isArray ? value.length : keys.length) === 0) return isArray ? "[]" : "{}";
  if (indent && JSON.stringify(value).length + indent.length <= INLINE_WIDTH) return inlineJSON(value);
  const inner = `${indent}  `;
  if (isArray && value.every((v) => v === null || typeof v !== "object")) {
    const lines = []; // long arrays of scalars: packed lines, not one number per line
    let line = "";
    for (const item of value.map((v) => JSON.stringify(v))) {
      if (line && inner.length + line.length + item.length + 2 > INLINE_WIDTH) {
        lines.push(`${inner}${line},`);
        line = "";
      }
      line = line ? `${line}, ${item}` : item;
    }
    lines.push(inner + line);
    return `[\n${lines.join("\n")}\n${indent}]`;
  }
  const items = isArray
    ? value.map((v) => inner + prettyJSON(v, inner))
    : keys.map((k) => `${inner}${JSON.stringify(k)}: ${prettyJSON(value[k], inner)}`);
  return `${isArray ? "[" : "{"}\n${items.join(",\n")}\n${indent}${isArray ? "]" : "}"}`;
}

/** JSON on one line with a space after commas and colons. */
function inlineJSON(value) {
  if (value === null || typeof value !== "object") return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(inlineJSON).join(", ")}]`;
  return `{${Object.keys(value).map((k) => `${JSON.stringify(k)}: ${inlineJSON(value[k])}`).join(", ")}}`;
}

function pretty(value) {
  if (value === null || typeof value !== "object") return JSON.stringify(value);
  let text = prettyCache.get(value);
  if (text === undefined) {
    text = prettyJSON(value);
    prettyCache.set(value, text);
  }
  return text;
}

const byteLength = (text) => new TextEncoder().encode(text).length;

/** One observed object as a card; updated in place so text selection survives unrelated renders. */
function updateCard(card, consumer) {
  const {el} = card;
  el.dataset.valid = String(consumer.valid);
  el.dataset.version = JSON.stringify(consumer.version);
  el.classList.toggle("invalid", !consumer.valid);
  const compactSize = consumer.value === null ? null : byteLength(JSON.stringify(consumer.value));
  card.meta.replaceChildren(
    consumer.valid ? badge("valid", "ok") : badge(consumer.destroyed ? "destroyed" : "not valid", "warn"),
    h("span", {class: "meta-item"}, h("span", {class: "muted"}, "version "), versionNode(consumer.version)),
    h("span", {class: "meta-item"}, h("span", {class: "muted"}, "size "), fmtBytes(compactSize)),
    consumer.receivedAt ? h("span", {class: "meta-item muted"}, `updated ${new Date(consumer.receivedAt).toLocaleTimeString()}`) : null,
  );
  card.error.hidden = !consumer.error;
  card.error.textContent = consumer.error || "";
  if (card.value !== consumer.value) {
    const first = card.value === undefined;
    card.value = consumer.value;
    card.pre.textContent = consumer.value === null ? "(no data yet)" : pretty(consumer.value);
    if (!first) {
      el.classList.remove("flash");
      void el.offsetWidth; // restart the animation
      el.classList.add("flash");
    }
  }
}

function newCard(id) {
  const meta = h("div", {class: "meta"});
  const error = h("div", {class: "error"});
  const pre = h("pre", {class: "json"});
  const el = h("article", {class: "card observed", "data-id": id}, h("h3", {class: "mono"}, id), meta, error, pre);
  return {el, meta, error, pre, value: undefined};
}

function renderObserve() {
  const out = $("observe-output");
  const pattern = view.observe;
  if ($("observe-pattern") !== document.activeElement) $("observe-pattern").value = pattern;
  if (!pattern) {
    view.cards.clear();
    out.replaceChildren(h("p", {class: "empty"},
      "Type an object id or a wildcard (every * matches any run of characters) to watch it live."));
    return;
  }
  const consumer = view.consumers.get(pattern);
  const children = consumer.children ? [...consumer.children.values()].sort((a, b) => a.id.localeCompare(b.id)) : [consumer];
  const header = h("p", {class: "observe-head"},
    consumer.children
      ? `${children.length} object${children.length === 1 ? "" : "s"} match ${pattern}`
      : `Watching ${pattern}`,
    view.client.connected ? "" : " (disconnected: retrying…)");
  const seen = new Set();
  const cards = children.map((child) => {
    seen.add(child.id);
    let card = view.cards.get(child.id);
    if (!card) {
      card = newCard(child.id);
      view.cards.set(child.id, card);
    }
    updateCard(card, child);
    return card.el;
  });
  for (const id of [...view.cards.keys()]) if (!seen.has(id)) view.cards.delete(id);
  const current = [...out.children];
  const wanted = [header, ...cards];
  if (current.length !== wanted.length || current.slice(1).some((el, i) => el !== cards[i])) {
    out.replaceChildren(...wanted);
  } else {
    out.replaceChild(header, current[0]);
  }
  if (consumer.children && children.length === 0) {
    out.append(h("p", {class: "empty"}, view.client.connected ? "No object matches yet." : "Not connected."));
  }
}

// ------------------------------------------------------------------------------------------- header

function renderHeader() {
  const client = view.client;
  const dot = $("status-dot");
  const state = !client ? "off" : client.connected ? "on" : "retry";
  dot.className = `dot ${state}`;
  dot.title = {on: `connected to ${view.url}`, retry: `connecting to ${view.url}…`, off: "not connected"}[state];
  const stats = view.consumers.get(STATISTICS)?.value;
  const summary = $("summary");
  if (!stats || !client?.connected) {
    summary.replaceChildren(h("span", {class: "muted"}, client?.connected ? "connected" : "not connected"));
  } else {
    const rate = (key) => {
      const series = stats.rates?.[key];
      return Array.isArray(series) && series.length ? series[series.length - 1] : 0;
    };
    summary.replaceChildren(
      h("span", null, h("b", null, fmtInt(stats.objects)), " objects"),
      h("span", null, h("b", null, fmtInt(stats.sessions)), " sessions"),
      h("span", null, h("b", null, fmtInt(stats.queue)), " queued"),
      h("span", {title: "messages per second in / out"}, h("b", null, `${fmtInt(rate("messages_in"))} / ${fmtInt(rate("messages_out"))}`), " msg/s"),
    );
  }
  const banner = $("banner");
  banner.hidden = !client || client.connected;
  banner.textContent = client && !client.connected ? `Not connected to ${view.url}: retrying every few seconds…` : "";
}

// ------------------------------------------------------------------------------------------- wiring

function render() {
  view.frame = 0;
  renderHeader();
  for (const tab of TABS) {
    $(`tab-${tab}`).hidden = tab !== view.tab;
    document.querySelector(`[data-tab="${tab}"]`).setAttribute("aria-selected", String(tab === view.tab));
  }
  ({objects: renderObjects, connections: renderConnections, workers: renderWorkers,
    statistics: renderStatistics, observe: renderObserve})[view.tab]();
}

function schedule() {
  if (!view.frame) view.frame = requestAnimationFrame(render);
}

/** Consume what the open tab needs (and SeasyncServer::Statistics, for the header); let go of the rest. */
function syncSubscriptions() {
  const client = view.client;
  if (!client) return;
  const wanted = new Set([STATISTICS]);
  if (TAB_OBJECT[view.tab]) wanted.add(TAB_OBJECT[view.tab]);
  if (view.tab === "observe" && view.observe) wanted.add(view.observe);
  for (const [pattern] of view.consumers) {
    if (!wanted.has(pattern)) {
      client.unlink(pattern);
      view.consumers.delete(pattern);
    }
  }
  for (const pattern of wanted) {
    if (view.consumers.has(pattern)) continue;
    const consumer = client.consume(pattern);
    consumer.onchange(schedule);
    consumer.onstatuschange(schedule);
    view.consumers.set(pattern, consumer);
  }
  schedule();
}

function connect(url) {
  view.client?.close();
  view.consumers.clear();
  view.cards.clear();
  view.url = url;
  $("url").value = url;
  const client = new SeasyncClient(url, {name: "web-viewer"});
  view.client = client;
  window.seasyncViewer = view;
  client.onconnectionchange(schedule);
  client.onerror((frame) => {
    if (frame.request && frame.request !== "object-produce") {
      const banner = $("banner");
      banner.hidden = false;
      banner.textContent = `The server refused a request: ${frame.message}`;
    }
  });
  syncSubscriptions();
}

function route() {
  const hash = decodeURIComponent(location.hash.slice(1));
  const [tab, ...rest] = hash.split("/");
  view.tab = TABS.includes(tab) ? tab : "objects";
  if (view.tab === "observe") {
    const pattern = rest.join("/").trim();
    if (pattern !== view.observe) {
      view.observe = pattern;
      view.cards.clear();
    }
  }
  syncSubscriptions();
}

function defaultUrl() {
  const param = new URLSearchParams(location.search).get("url");
  if (param) return param;
  if (location.host) return `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/`;
  return "ws://127.0.0.1:3001/";
}

$("connect-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const url = $("url").value.trim();
  if (!url) return;
  const params = new URLSearchParams(location.search);
  params.set("url", url);
  history.replaceState(null, "", `${location.pathname}?${params}${location.hash}`);
  connect(url);
});

$("observe-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const pattern = $("observe-pattern").value.trim();
  location.hash = pattern ? `#observe/${encodeURIComponent(pattern)}` : "#observe";
});

for (const id of ["objects-filter", "objects-internal", "connections-filter"]) $(id).addEventListener("input", schedule);
window.addEventListener("hashchange", route);
setInterval(() => {
  if (view.tab !== "observe" && view.tab !== "statistics") schedule(); // "produced 3 s ago" keeps moving
}, 1000);

connect(defaultUrl());
route();
