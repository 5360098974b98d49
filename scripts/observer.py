"""`sync-observer`: a terminal UI that watches a seasync (or seapig) cluster through any front.

It is an ordinary client: it consumes the router's introspection objects (``SeapigServer::Objects``,
``::Connections``, ``SeasyncServer::Statistics`` and ``SeasyncServer::Workers``; docs/INTROSPECTION.md) with ``common.client.Client`` and
shows them as live tables, plus any object you pick (Enter) as JSON with its last change highlighted.
The client reconnects by itself; the status line says when the data is stale.

Rendering rules live in ``scripts.observer_format`` (pure). Here: ``LiveTable`` (a DataTable kept equal
to a list of keyed rows by updating only the cells that changed, so the cursor and scroll position
survive every refresh), the detail and rates widgets, and ``ObserverApp``, which owns the client,
turns its callbacks into messages and pushes data down into the widgets. Layout is in observer.tcss.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable, ClassVar, Sequence

import typer
from rich.text import Text
from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Container, Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Footer, Input, Sparkline, Static, TabbedContent, TabPane

from common.client import Change, Client, Consumer
from common.diff import make_patch
from common.protocol import CONNECTIONS, OBJECTS, WORKERS  # the introspection ids, defined once
from common.protocol import SEASYNC_STATISTICS as STATISTICS  # seasync's totals and rates (not seapig's slots)
from scripts.observer_format import (
    CHANGED_GUTTER, CONNECTION_COLUMNS, OBJECT_NARROW, OBJECT_WIDE, RATES, SORTABLE, STATE_STYLES,
    WORKER_COLUMNS, Col, Sort, as_cell, as_list, as_number, changed_paths, column_widths, connection_rows,
    fmt_bytes, fmt_count, fmt_duration, fmt_ms, fmt_rate, fmt_version_full, is_internal, join_ids,
    object_rows, problem_reason, render_json, same_cell, snapshot, state_name, styled, worker_rows,
)

WATCHED = (OBJECTS, CONNECTIONS, STATISTICS, WORKERS)
DEFAULT_URL = "ws://127.0.0.1:3001"

log = logging.getLogger("seasync.observer")


class LiveTable(DataTable):
    """A DataTable shown as a list of ``(key, entry)`` rows; ``show`` updates only the cells that changed.

    The first column must render the row key itself. Rows are never rebuilt on a data refresh, so the
    cursor stays on the same key and nothing flickers; the column set is picked from ``layouts``
    (``[(min_width, columns), ...]``, widest match wins) and rebuilt only on resize or a new sort marker.
    """

    def __init__(self, layouts: Sequence[tuple[int, Sequence[Col]]], **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.layouts = sorted(layouts, key=lambda layout: layout[0])
        self.cols: Sequence[Col] = self.layouts[0][1]
        self.marks: dict[str, str] = {}  # column key -> suffix for its header (sort arrows)
        self._shape: tuple | None = None
        self._rows: list[tuple[str, dict]] = []
        self._now = 0.0
        self._cells: dict[str, list[Text]] = {}

    @property
    def keys(self) -> list[str]:
        """Row keys in display order."""
        return [row.key.value for row in self.ordered_rows]  # type: ignore[misc]

    @property
    def cursor_key(self) -> str | None:
        if not self.row_count:
            return None
        try:
            return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except Exception:
            return None

    def cell_text(self, key: str, column: str) -> str:
        """The text shown in a cell ('' if the row or column is not there): for tests and the detail pane."""
        cells = self._cells.get(key)
        for col, cell in zip(self.cols, cells or ()):
            if col.key == column:
                return cell.plain
        return ""

    def on_resize(self) -> None:
        self.relayout()

    def relayout(self, force: bool = False) -> None:
        """Pick the columns for the current width; rebuild if they (or their widths) changed."""
        width = self.size.width - 1  # room for the vertical scrollbar
        if width <= 0:
            return
        cols = self.layouts[0][1]
        for min_width, candidate in self.layouts:
            if width >= min_width:
                cols = candidate
        widths = column_widths(cols, width, self.cell_padding)
        shape = (tuple(c.key for c in cols), tuple(widths), tuple(sorted(self.marks.items())))
        if shape == self._shape and not force:
            return
        self._shape = shape
        keep = self.cursor_key
        self.cols = cols
        self.clear(columns=True)
        self._cells.clear()
        for col, col_width in zip(cols, widths):
            label = styled(col.label + self.marks.get(col.key, ""), "bold", col.right)
            self.add_column(label, width=col_width, key=col.key)
        self.show(self._rows, self._now, keep=keep)

    def show(self, rows: list[tuple[str, dict]], now: float, keep: str | None = None) -> None:
        """Make the table equal to ``rows`` (in that order), keeping the cursor on the same key."""
        self._rows, self._now = rows, now
        if not self.columns:
            return
        keep = keep or self.cursor_key
        wanted: dict[str, list[Text]] = {}
        for key, entry in rows:
            try:
                wanted[key] = [as_cell(col.render(entry, now), col) for col in self.cols]
            except Exception:  # a malformed entry must not take the observer down
                log.exception("cannot render row %r", key)
                wanted[key] = [styled(key)] + [styled("?") for _ in self.cols[1:]]
            if wanted[key][0].plain != key:  # the order below relies on the first cell being the key
                wanted[key][0] = styled(key, str(wanted[key][0].style))
        for key in [k for k in self._cells if k not in wanted]:
            self.remove_row(key)
            del self._cells[key]
        for key, cells in wanted.items():
            old = self._cells.get(key)
            if old is None:
                self.add_row(*cells, key=key)
            else:
                for col, before, after in zip(self.cols, old, cells):
                    if not same_cell(before, after):
                        self.update_cell(key, col.key, after)
            self._cells[key] = cells
        order = [key for key, _ in rows]
        if self.keys != order:
            rank = {key: i for i, key in enumerate(order)}
            self.sort(self.cols[0].key, key=lambda cell: rank.get(cell.plain, len(rank)))
        if keep in self._cells:
            index = self.get_row_index(keep)
            if index != self.cursor_row:
                self.move_cursor(row=index)


# ==== widgets ===========================================================================================

class ObjectDetail(Vertical):
    """One object's live JSON (the app consumes it while open), its version and its last change."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.object_id: str | None = None
        self.value: Any = None
        self.version: Any = None
        self.updates = 0
        self.received_at: float | None = None
        self.changed: frozenset[str] = frozenset()
        self.removed: tuple[str, ...] = ()
        self.change_note = ""
        self.first_changed_line: int | None = None
        self.entry: dict | None = None
        self.valid = False
        self.json_text = Text()

    def compose(self) -> ComposeResult:
        yield Static(id="detail-head")
        with VerticalScroll(id="detail-scroll"):
            yield Static(id="detail-json")

    def open(self, object_id: str) -> None:
        self.object_id = object_id
        self.value = self.version = self.received_at = None
        self.updates, self.changed, self.removed, self.change_note = 0, frozenset(), (), ""
        self.first_changed_line = None
        self.json_text = Text("waiting for data…", style="italic dim")
        self.query_one("#detail-json", Static).update(self.json_text)
        self.query_one("#detail-scroll", VerticalScroll).scroll_home(animate=False)

    def show_data(self, version: Any, value: Any, changed: frozenset[str], removed: tuple[str, ...],
                  note: str, received_at: float | None) -> None:
        self.value, self.version, self.received_at = value, version, received_at
        self.changed, self.removed, self.change_note = changed, removed, note
        self.updates += 1
        self.json_text, self.first_changed_line = render_json(value, changed)
        self.query_one("#detail-json", Static).update(self.json_text)

    def show_gone(self) -> None:
        self.query_one("#detail-json", Static).update(Text("the object is gone", style="italic red"))

    def refresh_head(self, entry: dict | None, valid: bool, now: float) -> None:
        """The lines above the JSON: version, freshness, router-side state, the last change."""
        self.entry, self.valid = entry, valid
        head = Text(no_wrap=True, overflow="ellipsis")
        head.append(self.object_id or "", style="bold")
        if self.version is not None:
            head.append("  v ", style="dim").append(fmt_version_full(self.version))
        if self.received_at is not None:
            head.append(f"  #{self.updates} {fmt_duration(now - self.received_at)} ago", style="dim")
        if not valid:
            head.append("  stale", style="bold red")
        head.append("\n")
        if entry:
            name = state_name(entry.get("state"))
            head.append(name, style=STATE_STYLES.get(name, ""))
            head.append(f" · consumers {join_ids(entry.get('consumers'))} · producers {join_ids(entry.get('producers'))}"
                        f" · runs {fmt_count(entry.get('productions'))} · {fmt_ms(entry.get('production_ms'))} ms"
                        f" · {fmt_bytes(entry.get('size'))}", style="dim")
            inferred = entry.get("version_highest_inferred")
            if inferred is not None and inferred != entry.get("version_highest_known"):
                head.append(f" · wants {fmt_version_full(inferred)}", style="yellow")
            if entry.get("last_error"):
                head.append(f" · error: {entry['last_error']}", style="bold red")
        else:
            head.append("not in the router's object list", style="dim")
        head.append("\n")
        head.append(self.change_note or " ", style=CHANGED_GUTTER if self.changed else "dim")
        if self.removed:
            head.append("  removed " + ", ".join(self.removed), style="red")
        self.query_one("#detail-head", Static).update(head)


class RatesView(Vertical):
    """Per-second rates of the last minute (``SeasyncServer::Statistics`` ``rates``) as sparklines."""

    def compose(self) -> ComposeResult:
        yield Static(id="rates-summary")
        for key, label, _ in RATES:
            with Horizontal(classes="rate"):
                yield Static(label, id=f"rate-{key}-label", classes="rate-label")
                yield Sparkline([], id=f"rate-{key}")

    def show(self, stats: Any) -> None:
        if not isinstance(stats, dict):
            return
        summary = Text()
        for name in ("objects", "sessions", "queue", "peers", "productions", "errors"):
            if name in stats:
                summary.append(f"{name} ", style="dim").append(fmt_count(stats[name]),
                                                                style="bold red" if name == "errors" and stats[name]
                                                                else "bold").append("  ")
        summary.append("\n")
        for name in ("messages_in", "messages_out"):
            summary.append(f"{name.replace('_', ' ')} ", style="dim").append(fmt_count(stats.get(name))).append("  ")
        for name in ("bytes_in", "bytes_out"):
            summary.append(f"{name.replace('_', ' ')} ", style="dim").append(fmt_bytes(stats.get(name))).append("  ")
        self.query_one("#rates-summary", Static).update(summary)
        rates = stats.get("rates") if isinstance(stats.get("rates"), dict) else {}
        for key, label, fmt in RATES:
            series = [float(v) for v in as_list(rates.get(key)) if as_number(v) is not None] or [0.0]
            now_value, peak = series[-1], max(series)
            average = sum(series) / len(series)
            text = Text(no_wrap=True, overflow="ellipsis")
            text.append(label, style="bold").append(f"  {fmt(now_value)}/s\n")
            text.append(f"max {fmt(peak)} avg {fmt(average)}", style="dim")
            self.query_one(f"#rate-{key}-label", Static).update(text)
            # Sparkline scales from the smallest value: a leading 0 keeps a steady rate from drawing as nothing.
            self.query_one(f"#rate-{key}", Sparkline).data = [0.0, *series]


class ObjectTable(LiveTable):
    """The objects table: Enter watches the object under the cursor, Escape closes the watch."""

    BINDINGS: ClassVar = [Binding("enter", "select_cursor", "Watch", key_display="⏎")]


# ==== the app ===========================================================================================

class _LastProblem(logging.Handler):
    """Keeps the client's last warning (e.g. why it cannot connect) for the status line."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.message: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.message = record.getMessage()
        except Exception:
            self.message = str(record.msg)


class ObserverApp(App[int]):
    """Live tables of the cluster's objects, workers, connections and rates, through one front."""

    CSS_PATH = "observer.tcss"
    TITLE = "sync-observer"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS: ClassVar = [
        Binding("q", "quit", "Quit"),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("escape", "close", "Close", key_display="esc"),
        Binding("s", "sort", "Sort"),
        Binding("i", "toggle_internal", "Internal"),
        Binding("c", "jump_change", "Change"),
        Binding("1", "tab('objects')", "Objects", show=False),
        Binding("2", "tab('workers')", "Workers", show=False),
        Binding("3", "tab('connections')", "Connections", show=False),
        Binding("4", "tab('rates')", "Rates", show=False),
    ]

    class DataChanged(Message):
        """An introspection object changed (posted by the client callbacks)."""

        def __init__(self, object_id: str) -> None:
            super().__init__()
            self.object_id = object_id

    class DetailChanged(Message):
        """The watched object changed; ``value`` is a private copy taken when the update arrived."""

        def __init__(self, object_id: str, version: Any, value: Any, changed: frozenset[str],
                     removed: tuple[str, ...], note: str, received_at: float | None) -> None:
            super().__init__()
            self.object_id, self.version, self.value = object_id, version, value
            self.changed, self.removed, self.note, self.received_at = changed, removed, note, received_at

    class LinkChanged(Message):
        def __init__(self, connected: bool) -> None:
            super().__init__()
            self.connected = connected

    def __init__(self, url: str = DEFAULT_URL, show_internal: bool = False) -> None:
        super().__init__()
        self.url = url
        self.show_internal = show_internal
        self.pattern = ""
        self.sort_by = Sort()
        self.client: Client | None = None
        self.consumers: dict[str, Consumer] = {}
        self.connected = False
        self.ever_connected = False
        self.down_since = time.monotonic()
        self.watched: Consumer | None = None
        self._watch_off: Callable[[], None] | None = None
        self._detail_snapshot: Any = None
        self._problem = _LastProblem()
        self._client_log = logging.getLogger("seasync.client")

    # ---- layout -------------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static(id="status")
        with TabbedContent(id="tabs", initial="objects"):
            with TabPane("1 Objects", id="objects"):
                yield Static(id="objects-info", classes="info")
                yield Input(placeholder="pattern: hello, counter-*, *shout  (enter keeps it, esc clears)",
                            id="filter")
                with Container(id="objects-body"):
                    yield ObjectTable([(0, OBJECT_NARROW), (150, OBJECT_WIDE)], id="objects-table")
                    yield ObjectDetail(id="detail")
            with TabPane("2 Workers", id="workers"):
                yield Static(id="workers-info", classes="info")
                yield LiveTable([(0, WORKER_COLUMNS)], id="workers-table")
            with TabPane("3 Connections", id="connections"):
                yield Static(id="connections-info", classes="info")
                yield LiveTable([(0, CONNECTION_COLUMNS)], id="connections-table")
            with TabPane("4 Rates", id="rates"):
                yield RatesView(id="rates-view")
        yield Footer()

    async def on_mount(self) -> None:
        self._client_log.addHandler(self._problem)  # its last warning goes to the status line
        self.client = Client(self.url, name="sync-observer", reconnect_delay=0.5, max_reconnect_delay=3.0)
        self.client.on_connection(lambda up: self.post_message(self.LinkChanged(up)))
        for object_id in WATCHED:
            consumer = self.client.consume(object_id)
            assert isinstance(consumer, Consumer)
            consumer.on_change(lambda change: self.post_message(self.DataChanged(change.id)))
            self.consumers[object_id] = consumer
        await self.client.connect(wait=False)
        self.set_interval(1.0, self.tick)
        self.query_one("#objects-table").focus()
        self.refresh_status()
        self.refresh_objects()

    async def on_unmount(self) -> None:
        await self._close_client()
        self._client_log.removeHandler(self._problem)

    async def _close_client(self) -> None:
        if self.client is not None and not self.client.closed:
            try:
                async with asyncio.timeout(3):
                    await self.client.close()
            except TimeoutError:
                log.warning("closing the client timed out")

    def on_resize(self) -> None:
        self.query_one("#objects-body").set_class(self.size.width >= 140, "-wide")

    # ---- data in --------------------------------------------------------------------------------------

    def value_of(self, object_id: str) -> Any:
        consumer = self.consumers.get(object_id)
        return consumer.value if consumer is not None else None

    def on_observer_app_data_changed(self, message: DataChanged) -> None:
        if message.object_id == OBJECTS:
            self.refresh_objects()
        elif message.object_id == WORKERS:
            self.refresh_workers()
        elif message.object_id == CONNECTIONS:
            self.refresh_connections()
        elif message.object_id == STATISTICS:
            self.query_one(RatesView).show(self.value_of(STATISTICS))
            self.refresh_status()

    def on_observer_app_link_changed(self, message: LinkChanged) -> None:
        self.connected = message.connected
        if message.connected:
            self.ever_connected = True
            self._problem.message = None
        else:
            self.down_since = time.monotonic()
        self.screen.set_class(not message.connected, "-disconnected")
        self.refresh_status()
        self.refresh_detail_head()

    def tick(self) -> None:
        """Once a second: ages and durations move on even when no data arrives (only the visible tab's)."""
        self.refresh_status()
        self.refresh_tab(self.query_one(TabbedContent).active)

    def refresh_tab(self, tab: str) -> None:
        if tab == "objects":
            self.refresh_objects()
        elif tab == "workers":
            self.refresh_workers()
        elif tab == "connections":
            self.refresh_connections()

    # ---- data down --------------------------------------------------------------------------------------

    def refresh_status(self) -> None:
        status = Text(no_wrap=True, overflow="ellipsis")
        if self.connected:
            status.append("● ", style="bold green").append(self.url)
            stats = self.value_of(STATISTICS)
            if isinstance(stats, dict):
                rates = stats.get("rates") if isinstance(stats.get("rates"), dict) else {}
                last = {k: (as_list(rates.get(k)) or [0])[-1] for k in ("messages_in", "messages_out")}
                status.append(f"  {fmt_count(stats.get('objects'))} objects · {fmt_count(stats.get('sessions'))}"
                              f" sessions · queue {fmt_count(stats.get('queue'))}"
                              f" · in {fmt_rate(last['messages_in'])}/s out {fmt_rate(last['messages_out'])}/s",
                              style="dim")
                if as_number(stats.get("errors")):
                    status.append(f" · {fmt_count(stats['errors'])} errors", style="bold red")
        else:
            down = fmt_duration(time.monotonic() - self.down_since)
            what = "disconnected, reconnecting" if self.ever_connected else "connecting"
            status.append(f"✗ {what} ({down})", style="bold")
            reason = problem_reason(self._problem.message)
            if reason:
                status.append(f" · {reason}")
            status.append(f" · {self.url}")
        widget = self.query_one("#status", Static)
        widget.update(status)
        widget.set_class(not self.connected, "-down")

    def refresh_objects(self) -> None:
        objects = self.value_of(OBJECTS)
        rows = object_rows(objects, self.pattern, self.show_internal, self.sort_by)
        table = self.query_one("#objects-table", ObjectTable)
        table.show(rows, time.time())
        total = len(objects) if isinstance(objects, dict) else 0
        hidden = 0 if self.show_internal or not isinstance(objects, dict) else sum(map(is_internal, objects))
        info = Text(no_wrap=True, overflow="ellipsis")
        if objects is None:
            info.append("waiting for SeapigServer::Objects…", style="italic")
        else:
            info.append(f"{len(rows)}", style="bold").append(f"/{total} objects")
            if self.pattern:
                info.append(" · filter ").append(self.pattern, style="bold yellow")
                if not rows and "*" not in self.pattern:
                    info.append(" (exact id; use * for wildcards)", style="yellow")
            arrow = "▼" if self.sort_by.reverse else "▲"
            info.append(f" · sort {self.sort_by.column}{arrow}", style="dim")
            if hidden:
                info.append(f" · {hidden} internal hidden (i)", style="dim")
        self.query_one("#objects-info", Static).update(info)
        self.refresh_detail_head()

    def refresh_workers(self) -> None:
        workers = self.value_of(WORKERS)
        rows = worker_rows(workers)
        self.query_one("#workers-table", LiveTable).show(rows, time.time())
        info = Text(no_wrap=True, overflow="ellipsis")
        if workers is None:
            info.append("no SeasyncServer::Workers yet (a seapig server does not publish it)", style="italic")
        else:
            busy = sum(1 for _, w in rows if isinstance(w.get("producing"), dict))
            rss = sum(as_number(w.get("rss")) or 0 for _, w in rows)
            cpu = sum(as_number(w.get("cpu_percent")) or 0 for _, w in rows)
            info.append(f"{len(rows)}", style="bold").append(f" workers · {busy} producing · cpu {cpu:.0f}%"
                                                             f" · rss {fmt_bytes(rss)}")
        self.query_one("#workers-info", Static).update(info)

    def refresh_connections(self) -> None:
        connections = self.value_of(CONNECTIONS)
        rows = connection_rows(connections, self.show_internal)
        self.query_one("#connections-table", LiveTable).show(rows, time.time())
        info = Text(no_wrap=True, overflow="ellipsis")
        if connections is None:
            info.append("waiting for SeapigServer::Connections…", style="italic")
        else:
            producing = sum(1 for _, c in rows if isinstance(c.get("producing"), dict))
            info.append(f"{len(rows)}", style="bold").append(f" connections · {producing} producing")
        self.query_one("#connections-info", Static).update(info)

    def refresh_detail_head(self) -> None:
        detail = self.query_one(ObjectDetail)
        if detail.object_id is None:
            return
        objects = self.value_of(OBJECTS)
        entry = objects.get(detail.object_id) if isinstance(objects, dict) else None
        valid = self.watched.valid if self.watched is not None else False
        detail.refresh_head(entry if isinstance(entry, dict) else None, valid, time.time())

    # ---- watching one object ---------------------------------------------------------------------------

    @on(DataTable.RowSelected, "#objects-table")
    async def _row_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is not None:
            await self.watch_object(event.row_key.value)

    @on(DataTable.RowSelected, "#workers-table, #connections-table")
    async def _producer_selected(self, event: DataTable.RowSelected) -> None:
        """Enter on a worker or connection that is producing: watch what it produces."""
        rows = self.value_of(WORKERS if event.data_table.id == "workers-table" else CONNECTIONS)
        row = rows.get(event.row_key.value) if isinstance(rows, dict) else None
        producing = row.get("producing") if isinstance(row, dict) else None
        if isinstance(producing, dict) and isinstance(producing.get("id"), str):
            self.action_tab("objects")
            await self.watch_object(producing["id"])
        else:
            self.notify("not producing anything right now", timeout=2)

    async def watch_object(self, object_id: str) -> None:
        """Consume ``object_id`` and show it in the detail pane (replacing what was shown)."""
        await self.unwatch_object()
        assert self.client is not None
        detail = self.query_one(ObjectDetail)
        detail.open(object_id)
        detail.add_class("-open")
        self._detail_snapshot = None
        consumer = self.client.consume(object_id)
        assert isinstance(consumer, Consumer)
        self.watched = consumer
        self._watch_off = consumer.on_change(self._detail_change)
        if consumer.value is not None:  # already held (one of our own subscriptions)
            self._detail_change(Change(object_id, consumer.value, consumer.version))
        self.refresh_detail_head()
        self.refresh_bindings()

    async def unwatch_object(self) -> None:
        if self._watch_off is not None:
            self._watch_off()
            self._watch_off = None
        watched, self.watched = self.watched, None
        if watched is not None and watched.id not in WATCHED and self.client is not None and not self.client.closed:
            await self.client.unconsume(watched.id)

    def _detail_change(self, change: Change) -> None:
        """Client callback: work out what changed now, while ``change.value`` is still this version."""
        if self.watched is None or change.id != self.watched.id:
            return
        if change.destroyed or change.value is None:
            self.post_message(self.DetailChanged(change.id, change.version, None, frozenset(), (), "gone", None))
            return
        value = snapshot(change.value)
        if self._detail_snapshot is None:
            patch, how = None, ""  # the first value we see: nothing to compare with
        elif change.patch is not None:
            patch, how = change.patch, "patch"
        else:
            patch, how = make_patch(self._detail_snapshot, value), "new value"
        self._detail_snapshot = value
        if patch is None:
            changed, removed, note = frozenset(), (), "first value"
        else:
            changed, removed = changed_paths(patch, value)
            shown = ", ".join(sorted(changed)[:4]) + (" …" if len(changed) > 4 else "")
            note = (f"last {how}: {len(patch)} op{'s' if len(patch) != 1 else ''}"
                    + (f" · changed {shown}" if changed else "") if patch else f"last {how}: no difference")
        received = self.watched.received_at
        self.post_message(self.DetailChanged(change.id, change.version, value, changed, removed, note, received))

    def on_observer_app_detail_changed(self, message: DetailChanged) -> None:
        detail = self.query_one(ObjectDetail)
        if message.object_id != detail.object_id:
            return
        if message.value is None:
            detail.show_gone()
        else:
            detail.show_data(message.version, message.value, message.changed, message.removed,
                             message.note, message.received_at)
        self.refresh_detail_head()

    # ---- actions ------------------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Show keys in the footer only where they do something."""
        on_objects = self.query_one(TabbedContent).active == "objects"
        if action in ("close", "jump_change", "sort") and not on_objects:
            return False
        if action == "close":
            return self.query_one(ObjectDetail).has_class("-open") or bool(self.pattern) \
                or self.query_one("#filter").has_class("-open")
        if action == "jump_change":
            return self.query_one(ObjectDetail).has_class("-open")
        return True

    async def action_quit(self) -> None:
        await self._close_client()
        self.exit(0)

    @on(TabbedContent.TabActivated)
    def _tab_changed(self, event: TabbedContent.TabActivated) -> None:
        self.refresh_tab(event.pane.id or "")
        self.refresh_bindings()

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab
        table = {"objects": "#objects-table", "workers": "#workers-table",
                 "connections": "#connections-table"}.get(tab)
        if table:
            self.query_one(table).focus()

    def action_filter(self) -> None:
        self.action_tab("objects")
        field = self.query_one("#filter", Input)
        field.value = self.pattern
        field.add_class("-open")
        self.query_one("#objects-info").add_class("-hidden")
        field.focus()
        self.refresh_bindings()

    @on(Input.Changed, "#filter")
    def _filter_typed(self, event: Input.Changed) -> None:
        self.pattern = event.value.strip()
        self.refresh_objects()

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        self._close_filter()

    def _close_filter(self) -> None:
        self.query_one("#filter").remove_class("-open")
        self.query_one("#objects-info").remove_class("-hidden")
        self.query_one("#objects-table").focus()
        self.refresh_objects()
        self.refresh_bindings()

    async def action_close(self) -> None:
        """Escape: leave the filter field, else close the detail pane, else clear the filter."""
        field = self.query_one("#filter", Input)
        detail = self.query_one(ObjectDetail)
        if field.has_class("-open"):
            if self.focused is field and field.value:
                field.value = ""  # Input.Changed clears the pattern
                self.pattern = ""
            self._close_filter()
        elif detail.has_class("-open"):
            detail.remove_class("-open")
            detail.object_id = None
            await self.unwatch_object()
            self.query_one("#objects-table").focus()
        elif self.pattern:
            self.pattern = ""
            self.refresh_objects()
        self.refresh_bindings()

    def action_sort(self, column: str | None = None) -> None:
        """``s`` cycles the sort column; clicking a header sorts by it (again: reversed)."""
        if column is None:
            index = SORTABLE.index(self.sort_by.column) if self.sort_by.column in SORTABLE else -1
            self.sort_by = Sort(SORTABLE[(index + 1) % len(SORTABLE)])
        elif column == self.sort_by.column:
            self.sort_by = Sort(column, not self.sort_by.reverse)
        else:
            self.sort_by = Sort(column)
        table = self.query_one("#objects-table", ObjectTable)
        table.marks = {self.sort_by.column: "▼" if self.sort_by.reverse else "▲"}
        self.refresh_objects()
        table.relayout()

    @on(DataTable.HeaderSelected, "#objects-table")
    def _header_clicked(self, event: DataTable.HeaderSelected) -> None:
        if event.column_key.value:
            self.action_sort(event.column_key.value)

    def action_toggle_internal(self) -> None:
        self.show_internal = not self.show_internal
        self.refresh_objects()
        self.refresh_connections()
        self.notify(f"internal objects {'shown' if self.show_internal else 'hidden'}", timeout=2)

    def action_jump_change(self) -> None:
        detail = self.query_one(ObjectDetail)
        if detail.first_changed_line is not None:
            self.query_one("#detail-scroll", VerticalScroll).scroll_to(
                y=max(detail.first_changed_line - 2, 0), animate=False)


# ==== command line ======================================================================================

cli = typer.Typer(add_completion=False)


@cli.command()
def observe(
    url: str = typer.Option(DEFAULT_URL, "--url", envvar="SEASYNC_URL",
                            help="Websocket URL of any seasync front (or seapig server)."),
    internal: bool = typer.Option(False, "--internal", help="Also list the router's own SeapigServer::* objects."),
    log_file: str = typer.Option("", "--log-file", help="Write the client's log lines to this file."),
) -> None:
    """Watch a seasync cluster live: objects, workers, connections, rates, and any object's JSON."""
    if log_file:
        handler = logging.FileHandler(log_file)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
        logging.getLogger("seasync").addHandler(handler)
        logging.getLogger("seasync").setLevel(logging.INFO)
    code = ObserverApp(url, show_internal=internal).run()
    raise typer.Exit(code or 0)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()

