"""``ObserverApp``: owns the client, turns its callbacks into messages and pushes data down into the
widgets (scripts/observer/widgets.py). Layout is in scripts/observer/observer.tcss."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable, ClassVar

from rich.text import Text
from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Container, VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Footer, Input, Static, TabbedContent, TabPane

from common.client import Change, Client, Consumer
from common.diff import make_patch
from common.protocol import CONNECTIONS, OBJECTS, WORKERS  # the introspection ids, defined once
from common.protocol import SEASYNC_STATISTICS as STATISTICS  # seasync's totals and rates (not seapig's slots)
from scripts.observer.format import (
    CONNECTION_COLUMNS, OBJECT_NARROW, OBJECT_WIDE, SORTABLE, WORKER_COLUMNS, Sort, as_list, as_number,
    changed_paths, connection_rows, fmt_bytes, fmt_count, fmt_duration, fmt_rate, is_internal,
    object_rows, problem_reason, snapshot, worker_rows,
)
from scripts.observer.widgets import LiveTable, ObjectDetail, ObjectTable, RatesView

WATCHED = (OBJECTS, CONNECTIONS, STATISTICS, WORKERS)
DEFAULT_URL = "ws://127.0.0.1:3001"

log = logging.getLogger("seasync.observer")


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
                log.warning("! closing the client timed out")

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
