// Unit tests of router/static/seasync.js: patch application, diffing, versions, and the client's
// handling of frames (resync, reconnect, masters) against a scripted fake WebSocket.
// Run: node --test tests/e2e/js/   (tests/e2e/test_js_unit.py runs it from pytest)

import {afterEach, test} from "node:test";
import assert from "node:assert/strict";

import {FakeSocket, quiet} from "./fake_socket.mjs";
import {
  PatchError, SeasyncClient, applyPatch, deepEqual, makePatch, matches, nextVersion, parsePointer, sameVersion,
} from "../../../router/static/seasync.js";

// ------------------------------------------------------------------------------------------- patches

test("pointer parsing unescapes ~1 before ~0", () => {
  assert.deepEqual(parsePointer(""), []);
  assert.deepEqual(parsePointer("/a~1b/~0c/~01"), ["a/b", "~c", "~1"]);
  assert.deepEqual(parsePointer("/"), [""]);
  assert.throws(() => parsePointer("a"), PatchError);
  assert.throws(() => parsePointer("/a~2"), PatchError);
  assert.throws(() => parsePointer("/a~"), PatchError);
});

test("add, remove, replace on objects and arrays", () => {
  const doc = {list: [1, 2, 3], o: {x: 1}};
  const out = applyPatch(doc, [
    {op: "add", path: "/list/1", value: 9},
    {op: "add", path: "/list/-", value: 4},
    {op: "remove", path: "/list/0"},
    {op: "replace", path: "/o/x", value: {deep: true}},
    {op: "add", path: "/o/y", value: null},
  ]);
  assert.deepEqual(out, {list: [9, 2, 3, 4], o: {x: {deep: true}, y: null}});
  assert.deepEqual(doc, {list: [1, 2, 3], o: {x: 1}}, "the original is never modified");
});

test("move, copy and test", () => {
  const doc = {a: {b: [1, {c: 2}]}, d: 1};
  const out = applyPatch(doc, [
    {op: "copy", from: "/a/b/1", path: "/e"},
    {op: "move", from: "/d", path: "/a/d"},
    {op: "replace", path: "/e/c", value: 3},
    {op: "test", path: "/a/b/1/c", value: 2},
    {op: "test", path: "/a/d", value: 1},
    {op: "move", from: "/a/b/0", path: "/a/b/1"},
    {op: "move", from: "/e", path: "/e"},
  ]);
  assert.deepEqual(out, {a: {b: [{c: 2}, 1], d: 1}, e: {c: 3}});
  assert.deepEqual(doc, {a: {b: [1, {c: 2}]}, d: 1});
  assert.throws(() => applyPatch(doc, [{op: "move", from: "/a", path: "/a/b/x"}]), PatchError);
  assert.throws(() => applyPatch(doc, [{op: "test", path: "/d", value: 2}]), PatchError);
});

test("test compares deeply, keys in any order", () => {
  assert.deepEqual(applyPatch({a: {x: 1, y: [1, 2]}}, [{op: "test", path: "/a", value: {y: [1, 2], x: 1}}]),
    {a: {x: 1, y: [1, 2]}});
});

test("escaped keys", () => {
  const out = applyPatch({}, [{op: "add", path: "/a~1b", value: 1}, {op: "add", path: "/~0", value: 2},
    {op: "add", path: "/", value: 3}]);
  assert.deepEqual(out, {"a/b": 1, "~": 2, "": 3});
});

test("whole-document operations", () => {
  assert.deepEqual(applyPatch({a: 1}, [{op: "replace", path: "", value: {b: 2}}]), {b: 2});
  assert.deepEqual(applyPatch({a: 1}, [{op: "add", path: "", value: {c: 3}}]), {c: 3});
  assert.throws(() => applyPatch({a: 1}, [{op: "remove", path: ""}]), PatchError);
});

test("array index rules", () => {
  const doc = {l: [1, 2]};
  assert.throws(() => applyPatch(doc, [{op: "add", path: "/l/3", value: 0}]), PatchError);
  assert.throws(() => applyPatch(doc, [{op: "remove", path: "/l/2"}]), PatchError);
  assert.throws(() => applyPatch(doc, [{op: "replace", path: "/l/-", value: 0}]), PatchError);
  assert.throws(() => applyPatch(doc, [{op: "add", path: "/l/01", value: 0}]), PatchError);
  assert.throws(() => applyPatch(doc, [{op: "add", path: "/l/x", value: 0}]), PatchError);
  assert.deepEqual(applyPatch(doc, [{op: "add", path: "/l/2", value: 3}]), {l: [1, 2, 3]});
});

test("bad operations are refused", () => {
  const bad = [
    [{op: "remove", path: "/missing"}],
    [{op: "replace", path: "/missing", value: 1}],
    [{op: "add", path: "/missing/deeper", value: 1}],
    [{op: "add", path: "/a/b", value: 1}], // a is a number
    [{op: "add", path: "/x"}], // no value
    [{op: "frobnicate", path: "/a"}],
    [{op: "copy", from: "/nope", path: "/x"}],
    ["not an op"],
  ];
  for (const patch of bad) assert.throws(() => applyPatch({a: 1}, patch), PatchError, JSON.stringify(patch));
  assert.throws(() => applyPatch({a: 1}, {op: "add"}), PatchError);
});

test("a failing patch leaves nothing half-applied", () => {
  const doc = {list: [1, 2], nested: {deep: {x: 1}}};
  const frozen = JSON.stringify(doc);
  assert.throws(() => applyPatch(doc, [
    {op: "add", path: "/list/-", value: 3},
    {op: "replace", path: "/nested/deep/x", value: 2},
    {op: "remove", path: "/nested/missing"},
  ]), PatchError);
  assert.equal(JSON.stringify(doc), frozen);
});

test("copy-on-write: untouched subtrees are shared, copies are independent", () => {
  const doc = {a: {big: [1, 2, 3]}, b: {x: 1}};
  const out = applyPatch(doc, [{op: "replace", path: "/b/x", value: 2}]);
  assert.equal(out.a, doc.a);
  assert.notEqual(out.b, doc.b);
  const copied = applyPatch(doc, [{op: "copy", from: "/b", path: "/c"}, {op: "replace", path: "/c/x", value: 5}]);
  assert.deepEqual(copied, {a: {big: [1, 2, 3]}, b: {x: 1}, c: {x: 5}});
  assert.equal(applyPatch(doc, []), doc);
});

test("a __proto__ key stays a plain key", () => {
  const out = applyPatch(JSON.parse('{"__proto__": {"a": 1}}'), [{op: "add", path: "/__proto__/b", value: 2}]);
  assert.equal(Object.getPrototypeOf(out), Object.prototype);
  assert.deepEqual(Object.keys(out), ["__proto__"]);
  assert.deepEqual({...out["__proto__"]}, {a: 1, b: 2});
  assert.equal({}.b, undefined);
});

// A small deterministic generator of JSON values, for the diff round trip.
function rng(seed) {
  let s = seed >>> 0;
  return () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
}

function randomJSON(r, depth = 0) {
  const kind = Math.floor(r() * (depth > 3 ? 4 : 6));
  if (kind === 0) return Math.floor(r() * 10);
  if (kind === 1) return ["a", "b/c", "~d", ""][Math.floor(r() * 4)];
  if (kind === 2) return r() < 0.5 ? null : r() < 0.5;
  if (kind === 3) return r() * 100;
  if (kind === 4) return Array.from({length: Math.floor(r() * 4)}, () => randomJSON(r, depth + 1));
  const out = {};
  for (let i = Math.floor(r() * 4); i > 0; i--) out[["k", "a/b", "~0", "x"][Math.floor(r() * 4)] + i] = randomJSON(r, depth + 1);
  return out;
}

test("makePatch then applyPatch gives the target (random documents)", () => {
  const r = rng(42);
  for (let i = 0; i < 500; i++) {
    const a = {root: randomJSON(r)};
    const b = r() < 0.3 ? {root: randomJSON(r), extra: randomJSON(r)} : {root: randomJSON(r)};
    const before = JSON.stringify(a);
    const patch = makePatch(a, b);
    assert.ok(deepEqual(applyPatch(a, JSON.parse(JSON.stringify(patch))), b), JSON.stringify({a, b, patch}));
    assert.equal(JSON.stringify(a), before);
  }
  assert.deepEqual(makePatch({a: [1, 2]}, {a: [1, 2]}), []);
});

// ------------------------------------------------------------------------------------------- versions, patterns

test("versions", () => {
  assert.ok(sameVersion(0, null));
  assert.ok(sameVersion({a: [1, 2], b: 3}, {b: 3, a: [1, 2]}));
  assert.ok(!sameVersion([1, 2], [1, 3]));
  assert.deepEqual(nextVersion([5, 1]), [5, 2]);
  assert.equal(nextVersion(7), 8);
  assert.throws(() => nextVersion({a: 1}), TypeError);
});

test("patterns match whole ids, every star", () => {
  assert.ok(matches("foo-*", "foo-1"));
  assert.ok(matches("foo-*", "foo-"));
  assert.ok(!matches("foo-*", "xfoo-1"));
  assert.ok(matches("a*c*e", "abcde"));
  assert.ok(!matches("a.c*", "abc"));
  assert.ok(matches("cars", "cars"));
  assert.ok(!matches("cars", "cars-1"));
});

// ------------------------------------------------------------------------------------------- the client


const clients = [];
afterEach(() => clients.splice(0).forEach((client) => client.close())); // no timers left behind by a failure

function makeClient(opts = {}) {
  FakeSocket.all = [];
  const client = new SeasyncClient("ws://test", {name: "unit", WebSocket: FakeSocket, logger: quiet,
    reconnectDelay: 5, maxReconnectDelay: 10, ...opts});
  clients.push(client);
  return client;
}

const lastSocket = () => FakeSocket.all[FakeSocket.all.length - 1];
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function eventually(check, what, timeout = 2000) {
  const deadline = Date.now() + timeout;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(2);
  }
}

const update = (id, versionOld, versionNew, body) => ({action: "object-update", id, "version-old": versionOld,
  "version-new": versionNew, ...body});

test("handshake: options, consumers with held versions, wildcards, masters", () => {
  const client = makeClient();
  client.consume("held", {value: {a: 1}, version: [1, 2]});
  client.consume("fresh");
  client.consume("car-*");
  client.master("mine", {value: {x: 1}, version: [9, 0]});
  const ws = lastSocket();
  assert.deepEqual(ws.sent, [], "nothing is sent before the socket opens");
  ws.open();
  assert.deepEqual(ws.take(), [
    {action: "client-options-set", options: {name: "unit", heartbeat: true}},
    {action: "object-consumer-register", pattern: "held", "version-known": [1, 2]},
    {action: "object-consumer-register", pattern: "fresh", "version-known": 0},
    {action: "object-consumer-register", pattern: "car-*", "version-known": 0},
    {action: "object-producer-register", pattern: "mine", "version-known": [9, 0]},
    {action: "object-consumer-unregister", pattern: "seasync-sync-probe:1"}, // confirms "held" (stale until then)
  ]);
  assert.ok(client.consume("held").valid, "pre-seeded data is valid once registered");
  assert.ok(client.consume("held").stale, "... but stale until the server confirms it");
  ws.receive({action: "error", message: "no such registration", request: "object-consumer-unregister",
    pattern: "seasync-sync-probe:1"});
  assert.ok(!client.consume("held").stale);
  assert.ok(!client.consume("fresh").valid);
  client.close();
});

test("updates: full value, patch on the held version, changes reported", () => {
  const client = makeClient();
  const cars = client.consume("cars");
  const seen = [];
  cars.onchange((obj, change) => seen.push([obj.version, change.patch]));
  const ws = lastSocket();
  ws.open();
  ws.take();
  ws.receive(update("cars", 0, 1, {value: {list: [1]}}));
  assert.deepEqual(cars.value, {list: [1]});
  assert.ok(cars.valid);
  const patch = [{op: "add", path: "/list/-", value: 2}];
  ws.receive(update("cars", 1, 2, {patch}));
  assert.deepEqual(cars.value, {list: [1, 2]});
  assert.equal(cars.version, 2);
  ws.receive(update("cars", 2, 3, {patch: []}));
  assert.equal(cars.version, 3, "an empty patch still advances the version");
  assert.deepEqual(seen, [[1, null], [2, patch], [3, []]]);
  assert.deepEqual(ws.take(), []);
  client.close();
});

test("a patch from a version not held is not applied: re-register with the version held", () => {
  const client = makeClient();
  const cars = client.consume("cars");
  const ws = lastSocket();
  ws.open();
  ws.receive(update("cars", 0, [1, 1], {value: {n: 1}}));
  ws.take();
  ws.receive(update("cars", [1, 5], [1, 6], {patch: [{op: "replace", path: "/n", value: 6}]}));
  assert.deepEqual(cars.value, {n: 1});
  assert.deepEqual(cars.version, [1, 1]);
  assert.ok(!cars.valid);
  assert.deepEqual(ws.take(), [{action: "object-consumer-register", pattern: "cars", "version-known": [1, 1]}]);
  ws.receive(update("cars", [1, 6], [1, 7], {patch: [{op: "replace", path: "/n", value: 7}]}));
  assert.deepEqual(ws.take(), [], "asked once while resyncing");
  ws.receive(update("cars", [1, 1], [1, 7], {patch: [{op: "replace", path: "/n", value: 7}]}));
  assert.deepEqual(cars.value, {n: 7});
  assert.ok(cars.valid);
  client.close();
});

test("a patch that fails drops the data and asks for the full value", () => {
  const client = makeClient();
  const cars = client.consume("cars");
  const ws = lastSocket();
  ws.open();
  ws.receive(update("cars", 0, 1, {value: {n: 1}}));
  const held = cars.value;
  ws.take();
  ws.receive(update("cars", 1, 2, {patch: [{op: "replace", path: "/n", value: 2}, {op: "remove", path: "/zz"}]}));
  assert.deepEqual(held, {n: 1}, "the old value object was not touched");
  assert.equal(cars.value, null);
  assert.ok(!cars.valid);
  const [resync] = ws.take();
  assert.equal(resync.action, "object-consumer-register");
  assert.equal(resync.pattern, "cars");
  assert.ok(!sameVersion(resync["version-known"], 0) && !sameVersion(resync["version-known"], 1));
  ws.receive(update("cars", 0, 2, {value: {n: 2}}));
  assert.deepEqual(cars.value, {n: 2});
  assert.ok(cars.valid);
  client.close();
});

test("wildcard: children appear, resync through a temporary exact registration, destroy", () => {
  const client = makeClient();
  const family = client.consume("car-*");
  const events = [];
  family.onchange((child, change) => events.push([child.id, change.destroyed]));
  const ws = lastSocket();
  ws.open();
  ws.take();
  ws.receive(update("car-1", 0, 1, {value: {n: 1}}));
  ws.receive(update("car-2", 0, 1, {value: {n: 2}}));
  ws.receive(update("other", 0, 1, {value: {n: 3}}));
  assert.deepEqual([...family.children.keys()], ["car-1", "car-2"]);
  assert.deepEqual(family.value, {"car-1": {n: 1}, "car-2": {n: 2}});
  ws.receive(update("car-1", 4, 5, {patch: []}));
  assert.deepEqual(ws.take(), [{action: "object-consumer-register", pattern: "car-1", "version-known": 1}]);
  ws.receive(update("car-1", 1, 5, {patch: [{op: "replace", path: "/n", value: 5}]}));
  assert.deepEqual(ws.take(), [{action: "object-consumer-unregister", pattern: "car-1"}]);
  assert.deepEqual(family.children.get("car-1").value, {n: 5});
  ws.receive({action: "object-destroy", id: "car-2"});
  assert.deepEqual([...family.children.keys()], ["car-1"]);
  assert.deepEqual(events, [["car-1", false], ["car-2", false], ["car-1", false], ["car-2", true]]);
  client.close();
});

test("reconnect: invalid while away, re-register with versions held, valid again", async () => {
  const client = makeClient();
  const cars = client.consume("cars");
  const statuses = [];
  cars.onstatuschange((obj) => statuses.push(obj.valid));
  let ws = lastSocket();
  ws.open();
  ws.receive(update("cars", 0, [7, 1], {value: {n: 1}}));
  ws.close();
  assert.ok(!cars.valid);
  assert.ok(!client.connected);
  await eventually(() => FakeSocket.all.length === 2, "a reconnect attempt");
  ws = lastSocket();
  ws.close(); // refused: back off and retry
  await eventually(() => FakeSocket.all.length === 3, "another attempt");
  ws = lastSocket();
  ws.open();
  const sent = ws.take();
  assert.deepEqual(sent[1], {action: "object-consumer-register", pattern: "cars", "version-known": [7, 1]});
  assert.ok(cars.valid);
  assert.deepEqual(statuses, [true, false, true]);
  ws.receive(update("cars", [7, 1], [7, 2], {patch: [{op: "replace", path: "/n", value: 2}]}));
  assert.deepEqual(cars.value, {n: 2});
  client.close();
  assert.ok(!cars.valid);
  await sleep(30);
  assert.equal(FakeSocket.all.length, 3, "no reconnect after close()");
});

test("a silent connection is dropped once heartbeats have been seen", async () => {
  const client = makeClient({deadAfter: 40});
  const ws = lastSocket();
  ws.open();
  ws.receive({action: "heartbeat"});
  await eventually(() => FakeSocket.all.length === 2, "a reconnect after silence");
  assert.equal(ws.readyState, 3);
  client.close();
});

const LIST = Array.from({length: 30}, (_, i) => i);

test("keep-current master: answers production orders, bumps as patches, full value when refused", () => {
  const client = makeClient();
  const status = client.master("status", {value: {up: true, list: LIST}, version: [1, 0]});
  const ws = lastSocket();
  ws.open();
  ws.take();
  ws.receive({action: "object-produce", id: "status", "version-inferred": null});
  assert.deepEqual(ws.take(), [{action: "object-patch", id: "status", "version-new": [1, 0],
    value: {up: true, list: LIST}}]);
  status.value.up = false;
  assert.deepEqual(status.bump(), [1, 1]);
  assert.deepEqual(ws.take(), [{action: "object-patch", id: "status", "version-old": [1, 0], "version-new": [1, 1],
    patch: [{op: "replace", path: "/up", value: false}]}]);
  assert.equal(status.lastUpload, "patch");
  ws.receive({action: "error", message: "patch failed", request: "object-patch", id: "status"});
  assert.deepEqual(ws.take(), [{action: "object-patch", id: "status", "version-new": [1, 1],
    value: {up: false, list: LIST}}]);
  ws.receive({action: "object-destroy", id: "status"});
  status.set({up: true}, [2, 0]);
  assert.deepEqual(ws.take(), [], "nobody wants it: nothing uploaded");
  client.close();
});

test("produce-on-demand master: sync, async, declined, failing", async () => {
  const client = makeClient();
  const errors = [];
  client.onerror((frame) => errors.push(frame));
  client.master("car-*", {
    produce: async (id, inferred) => {
      if (id === "car-none") return [null, null];
      if (id === "car-bad") throw new Error("no such car");
      return [{id, inferred}, [3, 1]];
    },
  });
  client.master("sync", {produce: () => [false, 4]});
  const ws = lastSocket();
  ws.open();
  assert.deepEqual(ws.take().slice(1), [
    {action: "object-producer-register", pattern: "car-*", "version-known": 0},
    {action: "object-producer-register", pattern: "sync", "version-known": 0},
  ]);
  ws.receive({action: "object-produce", id: "car-1", "version-inferred": {"dep": 2}});
  ws.receive({action: "object-produce", id: "car-none", "version-inferred": null});
  ws.receive({action: "object-produce", id: "car-bad", "version-inferred": null});
  ws.receive({action: "object-produce", id: "sync", "version-inferred": null});
  ws.receive({action: "object-produce", id: "unknown", "version-inferred": null});
  await eventually(() => ws.sent.length === 5, "five answers");
  const byId = Object.fromEntries(ws.take().map((m) => [m.id, m]));
  assert.deepEqual(byId["car-1"], {action: "object-patch", id: "car-1", "version-new": [3, 1],
    value: {id: "car-1", inferred: {dep: 2}}});
  assert.deepEqual(byId["car-none"], {action: "object-patch", id: "car-none"});
  assert.deepEqual(byId["car-bad"], {action: "object-patch", id: "car-bad", error: "Error: no such car"});
  assert.deepEqual(byId.sync, {action: "object-patch", id: "sync", "version-new": 4, value: false});
  assert.deepEqual(byId.unknown, {action: "object-patch", id: "unknown"});
  ws.receive({action: "heartbeat"});
  ws.receive({action: "mystery"});
  ws.receive("not json");
  ws.receive({action: "error", message: "production failed: x", request: null, id: "car-1"});
  assert.equal(errors.length, 1);
  client.close();
});

test("a production answered after a reconnect is dropped", async () => {
  const client = makeClient();
  let release;
  client.master("slow", {produce: () => new Promise((resolve) => { release = resolve; })});
  const ws = lastSocket();
  ws.open();
  ws.receive({action: "object-produce", id: "slow", "version-inferred": null});
  await eventually(() => release !== undefined, "the production to start");
  ws.close();
  await eventually(() => FakeSocket.all.length === 2, "a reconnect attempt");
  const ws2 = lastSocket();
  ws2.open();
  ws2.take();
  release([{a: 1}, 1]);
  await sleep(10);
  assert.deepEqual(ws2.take(), []);
  client.close();
});

test("unlink: consumers, wildcards and masters unregister; errors reach consumers", () => {
  const client = makeClient();
  const cars = client.consume("cars");
  const family = client.consume("car-*");
  client.master("m", {produce: () => [{}, 1]});
  const destroyed = [];
  cars.ondestroy((c) => destroyed.push(c.id));
  family.ondestroy((w) => destroyed.push(w.pattern));
  const ws = lastSocket();
  ws.open();
  ws.take();
  ws.receive({action: "error", message: "production failed: boom", request: "object-produce", id: "cars"});
  assert.equal(cars.error, "production failed: boom");
  ws.receive(update("cars", 0, 1, {value: {}}));
  assert.equal(cars.error, null);
  assert.ok(client.unlink("cars"));
  assert.ok(client.unlink("car-*"));
  assert.ok(client.unlink("m"));
  assert.ok(!client.unlink("nothing"));
  assert.deepEqual(ws.take(), [
    {action: "object-consumer-unregister", pattern: "cars"},
    {action: "object-consumer-unregister", pattern: "car-*"},
    {action: "object-producer-unregister", pattern: "m"},
  ]);
  assert.deepEqual(destroyed, ["cars", "car-*"]);
  assert.ok(cars.destroyed && family.destroyed);
  client.close();
});

test("wait() resolves on data, rejects on timeout", async () => {
  const client = makeClient();
  const cars = client.consume("cars");
  const ws = lastSocket();
  ws.open();
  const waiting = cars.wait((v) => v.n === 2, 1000);
  ws.receive(update("cars", 0, 1, {value: {n: 1}}));
  ws.receive(update("cars", 1, 2, {patch: [{op: "replace", path: "/n", value: 2}]}));
  assert.deepEqual(await waiting, {n: 2});
  await assert.rejects(cars.wait((v) => v.n === 3, 20), /timed out/);
  client.close();
});

test("consume(id, {path}): the subtree, patches under it, skipped versions, re-registration with the path", () => {
  const client = makeClient();
  const row = client.consume("table", {path: "/rows/1"});
  assert.equal(client.consume("table", {path: "/rows/1"}), row, "the same path: the same consumer");
  assert.throws(() => client.consume("table", {path: "/rows/2"}), /another path/);
  assert.throws(() => client.consume("t*", {path: "/a"}), TypeError);
  const ws = lastSocket();
  ws.open();
  assert.deepEqual(ws.take().filter((m) => m.action === "object-consumer-register"),
    [{action: "object-consumer-register", pattern: "table", "version-known": 0, path: "/rows/1"}]);
  ws.receive({...update("table", 0, 1, {value: {n: 1}}), path: "/rows/1"});
  assert.deepEqual(row.value, {n: 1});
  // versions 2 and 3 touched nothing under the path: the next patch comes from 3
  ws.receive({...update("table", 3, 4, {patch: [{op: "replace", path: "/n", value: 2}]}), path: "/rows/1"});
  assert.deepEqual(row.value, {n: 2});
  assert.deepEqual(row.version, 4);
  ws.receive({...update("table", 4, 5, {patch: [{op: "replace", path: "", value: null}]}), path: "/rows/1"});
  assert.equal(row.value, null, "an absent subtree is null, and still held");
  ws.receive({...update("table", 5, 6, {patch: [{op: "replace", path: "", value: 7}]}), path: "/rows/1"});
  assert.equal(row.value, 7, "a subtree may be any JSON");
  ws.close();
  return eventually(() => lastSocket() !== ws, "a reconnect").then(() => {
    const again = lastSocket();
    again.open();
    assert.deepEqual(again.take().filter((m) => m.action === "object-consumer-register"),
      [{action: "object-consumer-register", pattern: "table", "version-known": 6, path: "/rows/1"}]);
    client.close();
  });
});
