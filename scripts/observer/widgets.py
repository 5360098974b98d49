"""The observer's widgets: ``LiveTable`` (a DataTable kept equal to a list of keyed rows by updating
only the cells that changed, so the cursor and scroll position survive every refresh), the object
detail and the rates view. They render with the pure rules of scripts/observer/format.py."""

from __future__ import annotations

import logging
from typing import Any, ClassVar, Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import DataTable, Sparkline, Static

from scripts.observer.format import (
    CHANGED_GUTTER, RATES, STATE_STYLES, Col, as_cell, as_list, as_number, column_widths, fmt_bytes,
    fmt_count, fmt_duration, fmt_ms, fmt_version_full, join_ids, render_json, same_cell, state_name,
    styled,
)

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
                log.exception("! cannot render row %r", key)
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
                        f" · runs {fmt_count(entry.get('productions'))} · unchanged {fmt_count(entry.get('unchanged'))}"
                        f" · {fmt_ms(entry.get('production_ms'))} ms"
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
        for name in ("objects", "sessions", "queue", "peers", "productions", "unchanged", "errors"):
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
