"""Pure rendering for `sync-observer`: introspection data in, rich ``Text`` and table rows out.

No textual, no I/O, no clock (callers pass ``now``), so every rule here is testable on its own:
compact versions and durations, which rows the objects table shows and in which order, the column
sets of each table, and JSON pretty-printed with the paths of the last change marked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import orjson
from rich.text import Text

from common.patterns import matches
from common.protocol import INTROSPECTION_PREFIXES

INTERNAL_PREFIXES = INTROSPECTION_PREFIXES
INTERNAL_CLIENT = "SeapigInternalClient"
MAX_JSON_LINES = 3000


def is_internal(object_id: str) -> bool:
    """The router's own introspection objects (hidden from the table unless asked for)."""
    return object_id.startswith(INTERNAL_PREFIXES)


def natural_key(text: str) -> list[int | str]:
    """Sort ``counter-2`` before ``counter-10`` (digit runs compare as numbers)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def as_number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _short_scalar(value: Any) -> str:
    """A version component: session timestamps (huge ints) are cut to their last digits."""
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, int):
        return f"…{str(value)[-4:]}" if abs(value) >= 10**9 else str(value)
    if isinstance(value, float):
        return f"{value:.15g}"
    return str(value)


def fmt_version(version: Any, width: int = 0) -> str:
    """A compact one-line version: ``3``, ``…8498.15`` for ``[session, 15]``, ``hello:1 +2`` for a hash.

    With ``width``, a hash too long for it names only its first dependency (``Seconds:1 +1``).
    """
    if version is None or version == 0 and not isinstance(version, bool):
        return "-"
    if isinstance(version, list):
        return ".".join(_short_scalar(part) for part in version) or "[]"
    if isinstance(version, dict):
        if not version:
            return "{}"
        name = min(version, key=natural_key)
        more = f" +{len(version) - 1}" if len(version) > 1 else ""
        text = f"{name}:{fmt_version(version[name])}{more}"
        return f"{name}{more}" if width and len(text) > width else text
    return _short_scalar(version)


def fmt_version_full(version: Any) -> str:
    """The exact version as JSON, for the detail pane."""
    try:
        return orjson.dumps(version).decode()
    except TypeError:
        return repr(version)


def fmt_duration(seconds: float | None) -> str:
    """``2.3s``, ``42s``, ``12m``, ``5h``, ``3d``; ``-`` if unknown."""
    if seconds is None:
        return "-"
    seconds = max(seconds, 0.0)
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m"
    if seconds < 86400:
        return f"{seconds // 3600:.0f}h"
    return f"{seconds // 86400:.0f}d"


def fmt_count(value: Any) -> str:
    number = as_number(value)
    if number is None:
        return "-"
    if abs(number) < 10_000:
        return f"{number:.0f}"
    if abs(number) < 1_000_000:
        return f"{number / 1000:.0f}k"
    return f"{number / 1_000_000:.1f}M"


def fmt_rate(value: Any) -> str:
    """A per-second amount: ``0``, ``3.5``, ``120``, ``4.2k``."""
    number = as_number(value)
    if number is None:
        return "-"
    if number < 10 and number != int(number):
        return f"{number:.1f}"
    if number < 1000:
        return f"{number:.0f}"
    if number < 1_000_000:
        return f"{number / 1000:.1f}k"
    return f"{number / 1_000_000:.1f}M"


def fmt_bytes(value: Any) -> str:
    number = as_number(value)
    if number is None:
        return "-"
    for unit in ("B", "kB", "MB", "GB"):
        if abs(number) < 1000 or unit == "GB":
            return f"{number:.0f}{unit}" if unit == "B" or number >= 10 else f"{number:.1f}{unit}"
        number /= 1000
    return "-"  # unreachable


def fmt_ms(value: Any) -> str:
    number = as_number(value)
    if number is None:
        return "-"
    if number < 10:
        return f"{number:.1f}"
    if number < 100_000:
        return f"{number:.0f}"
    return f"{number / 1000:.0f}s"


STATE_STYLES = {"producing": "bold yellow", "queued": "yellow", "waiting": "magenta",
                "current": "green", "stale": "red", "error": "bold red"}


def state_name(state: Any) -> str:
    """One word for an object's ``state`` dict, the most telling flag first."""
    if not isinstance(state, dict):
        return "?"
    if state.get("producing"):
        return "producing"
    if state.get("enqueued"):
        return "queued"
    if state.get("waiting"):
        return "waiting"
    if state.get("error"):  # given up: its producers keep answering below the version ordered
        return "error"
    return "current" if state.get("current") else "stale"


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def age_of(timestamp: Any, now: float) -> float | None:
    number = as_number(timestamp)
    return None if number is None else now - number


# ---- object table rows -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Sort:
    """How the objects table is ordered: a column key and a direction."""

    column: str = "id"
    reverse: bool = False


def _sort_value(column: str, object_id: str, entry: dict[str, Any]) -> Any:
    if column == "state":
        return (list(STATE_STYLES).index(state_name(entry.get("state"))) if isinstance(entry.get("state"), dict)
                else 9, natural_key(object_id))
    if column == "age":  # most recent first
        produced = as_number(entry.get("produced_at"))
        return -produced if produced is not None else float("inf")
    numeric = {"runs": "productions", "same": "unchanged", "ms": "production_ms", "err": "errors",
               "size": "size"}.get(column)
    if numeric:  # biggest first
        number = as_number(entry.get(numeric))
        return -number if number is not None else float("inf")
    if column in ("cp", "consumers"):
        return -len(as_list(entry.get("consumers")))
    if column == "producers":
        return -len(as_list(entry.get("producers")))
    return natural_key(object_id)


SORTABLE = ("id", "state", "age", "runs", "ms", "err")
"""What ``s`` cycles through; clicking any column header with a sort order also works."""


def object_rows(objects: Any, pattern: str = "", show_internal: bool = False,
                sort: Sort = Sort()) -> list[tuple[str, dict[str, Any]]]:
    """The rows of the objects table: filtered by a ``*`` pattern (``common.patterns.matches``), sorted."""
    if not isinstance(objects, dict):
        return []
    rows = [(object_id, entry) for object_id, entry in objects.items()
            if isinstance(entry, dict) and (show_internal or not is_internal(object_id))
            and (not pattern or matches(pattern, object_id))]
    rows.sort(key=lambda row: natural_key(row[0]))
    if sort.column != "id" or sort.reverse:
        rows.sort(key=lambda row: _sort_value(sort.column, row[0], row[1]), reverse=sort.reverse)
    return rows


def worker_rows(workers: Any) -> list[tuple[str, dict[str, Any]]]:
    if not isinstance(workers, dict):
        return []
    return sorted(((k, v) for k, v in workers.items() if isinstance(v, dict)), key=lambda r: natural_key(r[0]))


def connection_rows(connections: Any, show_internal: bool = False) -> list[tuple[str, dict[str, Any]]]:
    """Rows keyed as the object is (seapig: by connection number), the router's own client hidden by its id."""
    if not isinstance(connections, dict):
        return []
    rows = [(k, v) for k, v in connections.items() if isinstance(v, dict)
            and (show_internal or not str(v.get("id", k)).startswith(INTERNAL_CLIENT + ":"))]
    return sorted(rows, key=lambda r: natural_key(r[0]))


# ---- JSON with the last change marked --------------------------------------------------------------

def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _resolve_append(value: Any, path: str) -> str:
    """``/list/-`` (append) names the element that is now last."""
    if not path.endswith("/-"):
        return path
    parent_path = path[:-2]
    node = value
    for token in parent_path.split("/")[1:]:
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict):
            node = node.get(token)
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return path
    return f"{parent_path}/{len(node) - 1}" if isinstance(node, list) and node else path


def changed_paths(patch: Any, value: Any) -> tuple[frozenset[str], tuple[str, ...]]:
    """The JSON pointers an RFC 6902 patch added or replaced (to highlight), and those it removed."""
    changed: set[str] = set()
    removed: list[str] = []
    for op in patch if isinstance(patch, list) else ():
        if not isinstance(op, dict) or not isinstance(op.get("path"), str):
            continue
        if op.get("op") == "remove":
            removed.append(op["path"])
        else:
            changed.add(_resolve_append(value, op["path"]))
    return frozenset(changed), tuple(removed)


KEY_STYLE, STRING_STYLE, NUMBER_STYLE, CONST_STYLE = "bold #81a1c1", "#a3be8c", "#d08770", "italic #b48ead"
CHANGED_LINE = "on #3b3a1a"
CHANGED_GUTTER = "bold #ebcb8b"


def _scalar(value: Any) -> tuple[str, str]:
    if isinstance(value, str):
        return orjson.dumps(value).decode(), STRING_STYLE
    if value is None or isinstance(value, bool):
        return orjson.dumps(value).decode(), CONST_STYLE
    try:
        return orjson.dumps(value).decode(), NUMBER_STYLE
    except TypeError:
        return repr(value), ""


def _json_lines(value: Any, path: str, depth: int, key: str | None, comma: bool,
                changed: frozenset[str], inside: bool) -> Iterator[tuple[bool, list[tuple[str, str]]]]:
    """Pretty-printed lines as (highlighted, [(text, style)]); a changed path marks its whole subtree."""
    hot = inside or path in changed
    head: list[tuple[str, str]] = [("  " * depth, "")]
    if key is not None:
        head += [(orjson.dumps(key).decode(), KEY_STYLE), (": ", "")]
    tail = [(",", "")] if comma else []
    if isinstance(value, dict) and value:
        yield hot, head + [("{", "")]
        items = list(value.items())
        for i, (k, v) in enumerate(items):
            yield from _json_lines(v, f"{path}/{_escape(str(k))}", depth + 1, str(k), i < len(items) - 1, changed, hot)
        yield hot, [("  " * depth + "}", "")] + tail
    elif isinstance(value, list) and value:
        yield hot, head + [("[", "")]
        for i, v in enumerate(value):
            yield from _json_lines(v, f"{path}/{i}", depth + 1, None, i < len(value) - 1, changed, hot)
        yield hot, [("  " * depth + "]", "")] + tail
    else:
        text, style = ("{}", "") if isinstance(value, dict) else ("[]", "") if isinstance(value, list) else _scalar(value)
        yield hot, head + [(text, style)] + tail


def render_json(value: Any, changed: frozenset[str] = frozenset(),
                max_lines: int = MAX_JSON_LINES) -> tuple[Text, int | None]:
    """The value as highlighted JSON, and the index of the first changed line (None if nothing changed)."""
    text = Text(no_wrap=False)
    first: int | None = None
    for index, (hot, parts) in enumerate(_json_lines(value, "", 0, None, False, changed, "" in changed)):
        if index >= max_lines:
            text.append(f"\n… cut at {max_lines} lines", style="italic")
            break
        if index:
            text.append("\n")
        start = len(text)
        text.append("▌" if hot else " ", style=CHANGED_GUTTER if hot else "")
        for part, style in parts:
            text.append(part, style=style)
        if hot:
            text.stylize(CHANGED_LINE, start + 1, len(text))
            if first is None:
                first = index
    return text, first


# ---- misc ------------------------------------------------------------------------------------------

def problem_reason(message: str | None) -> str:
    """The gist of the client's last warning: ``cannot connect to URL (REASON); retrying...`` gives REASON."""
    if not message:
        return ""
    found = re.search(r"cannot connect to \S+ \((.*)\); retrying", message)
    if found:
        return found.group(1)
    return "connection lost" if "connection to" in message and "lost" in message else message


def snapshot(value: Any) -> Any:
    """An independent copy (the client updates consumer values in place)."""
    return orjson.loads(orjson.dumps(value))


# ---- table columns ---------------------------------------------------------------------------------

Render = Callable[[dict[str, Any], float], Any]


@dataclass(frozen=True, slots=True)
class Col:
    """One table column: ``width`` 0 means it shares what is left (weighted by ``flex``, at least ``min``)."""

    key: str
    label: str
    render: Render
    width: int = 0
    flex: int = 1
    min: int = 6
    right: bool = False


def styled(value: str, style: str = "", right: bool = False) -> Text:
    return Text(value, style=style, justify="right" if right else "left", no_wrap=True, overflow="ellipsis")


def as_cell(value: Any, col: Col) -> Text:
    if isinstance(value, Text):
        if col.right:
            value.justify = "right"
        return value
    return styled(str(value), right=col.right)


def same_cell(a: Text, b: Text) -> bool:
    return a.plain == b.plain and a.style == b.style and a.spans == b.spans


def column_widths(cols: Sequence[Col], width: int, padding: int = 1) -> list[int]:
    """Widths that fill ``width``: fixed columns as given, flexible ones share the rest."""
    fixed = sum(c.width for c in cols) + 2 * padding * len(cols)
    flexes = [c for c in cols if not c.width]
    room = max(width - fixed, 0)
    total_flex = sum(c.flex for c in flexes) or 1
    widths, given = [], 0
    for c in cols:
        if c.width:
            widths.append(c.width)
            continue
        share = max(c.min, room * c.flex // total_flex)
        widths.append(share)
        given += share
    if flexes and room > given:  # rounding leftovers go to the first flexible column
        widths[cols.index(flexes[0])] += room - given
    return widths


# ---- the columns of each table ---------------------------------------------------------------------

def _id_cell(entry: dict[str, Any], now: float) -> Text:
    object_id = str(entry.get("id", "?"))
    return styled(object_id, "dim" if is_internal(object_id) else "")


def _state_cell(entry: dict[str, Any], now: float) -> Text:
    name = state_name(entry.get("state"))
    return styled(name, STATE_STYLES.get(name, ""))


def _version_cell(entry: dict[str, Any], now: float) -> Text:
    known, inferred = entry.get("version_highest_known"), entry.get("version_highest_inferred")
    if inferred is not None and inferred != known:  # the router wants a newer version than it has
        return styled(f"{fmt_version(known, 5)}→{fmt_version(inferred, 5)}", "yellow")
    return styled(fmt_version(known, 12))


def _age_cell(entry: dict[str, Any], now: float) -> Text:
    age = age_of(entry.get("produced_at"), now)
    return styled(fmt_duration(age), "bold green" if age is not None and age < 2 else "", right=True)


def _errors_cell(entry: dict[str, Any], now: float) -> Text:
    errors = entry.get("errors")
    return styled(fmt_count(errors), "bold red" if as_number(errors) else "dim", right=True)


def join_ids(value: Any) -> str:
    return ", ".join(str(v) for v in as_list(value)) or "-"


def _counts_cell(entry: dict[str, Any], now: float) -> str:
    return f"{len(as_list(entry.get('consumers')))}/{len(as_list(entry.get('producers')))}"


OBJECT_NARROW = [
    Col("id", "id", _id_cell, min=12),
    Col("state", "state", _state_cell, 9),
    Col("version", "version", _version_cell, 12),
    Col("cp", "c/p", _counts_cell, 5, right=True),
    Col("runs", "runs", lambda e, n: fmt_count(e.get("productions")), 4, right=True),
    Col("ms", "ms", lambda e, n: fmt_ms(e.get("production_ms")), 5, right=True),
    Col("age", "age", _age_cell, 4, right=True),
    Col("err", "err", _errors_cell, 3, right=True),
]
OBJECT_WIDE = [
    Col("id", "id", _id_cell, flex=3, min=16),
    Col("state", "state", _state_cell, 9),
    Col("known", "known", lambda e, n: fmt_version(e.get("version_highest_known"), 14), 14),
    Col("inferred", "inferred", lambda e, n: styled(fmt_version(e.get("version_highest_inferred"), 14),
                                                   "" if e.get("version_highest_inferred") == e.get(
                                                       "version_highest_known") else "yellow"), 14),
    Col("consumers", "consumers", lambda e, n: join_ids(e.get("consumers")), flex=2, min=10),
    Col("producers", "producers", lambda e, n: join_ids(e.get("producers")), flex=2, min=10),
    Col("runs", "runs", lambda e, n: fmt_count(e.get("productions")), 5, right=True),
    # productions whose data equalled the data held (only the version moved): wasted work
    Col("same", "unchanged", lambda e, n: fmt_count(e.get("unchanged")), 9, right=True),
    Col("ms", "last ms", lambda e, n: fmt_ms(e.get("production_ms")), 7, right=True),
    Col("age", "age", _age_cell, 5, right=True),
    Col("size", "size", lambda e, n: fmt_bytes(e.get("size")), 7, right=True),
    Col("err", "errors", _errors_cell, 6, right=True),
    Col("last_error", "last error", lambda e, n: styled(str(e.get("last_error") or ""), "red"), flex=2, min=10),
]


def _producing_cell(entry: dict[str, Any], now: float) -> Text:
    producing = entry.get("producing")
    if not isinstance(producing, dict):
        return styled("idle", "dim")
    orders = entry.get("orders")  # with --prefetch a worker holds more orders than the one it runs
    more = f" +{orders - 1}" if type(orders) is int and orders > 1 else ""
    return styled(f"{producing.get('id', '?')}{more}", "bold yellow")


def _producing_for_cell(entry: dict[str, Any], now: float) -> Text:
    producing = entry.get("producing")
    if not isinstance(producing, dict):
        return styled("")
    age = age_of(producing.get("since"), now)
    return styled(fmt_duration(age), "bold red" if age is not None and age > 10 else "yellow", right=True)


def _cpu_cell(entry: dict[str, Any], now: float) -> Text:
    cpu = as_number(entry.get("cpu_percent"))
    style = "" if cpu is None or cpu < 50 else "yellow" if cpu < 90 else "bold red"
    return styled("-" if cpu is None else f"{cpu:.0f}%", style, right=True)


WORKER_COLUMNS = [
    Col("id", "worker", lambda e, n: styled(str(e.get("id", "?"))), 10),
    Col("pid", "pid", lambda e, n: str(e.get("pid") or "-"), 7, right=True),
    Col("host", "host", lambda e, n: str(e.get("host") or "-"), flex=1, min=6),
    Col("cpu", "cpu", _cpu_cell, 4, right=True),
    Col("rss", "rss", lambda e, n: fmt_bytes(e.get("rss")), 6, right=True),
    Col("producing", "producing", _producing_cell, flex=2, min=8),
    Col("for", "for", _producing_for_cell, 5, right=True),
    Col("runs", "runs", lambda e, n: fmt_count(e.get("productions")), 5, right=True),
    Col("same", "same", lambda e, n: fmt_count(e.get("unchanged")), 5, right=True),  # unchanged productions
    Col("err", "err", _errors_cell, 3, right=True),
]


def _conn_producing(entry: dict[str, Any], now: float) -> Text:
    producing = entry.get("producing")
    if not isinstance(producing, dict):
        return styled("-", "dim")
    age = fmt_duration(age_of(producing.get("since"), now))
    return styled(f"{producing.get('id', '?')} {age}", "yellow")


CONNECTION_COLUMNS = [
    Col("id", "client", lambda e, n: styled(str(e.get("id", "?"))), flex=2, min=10),
    Col("peer", "peer", lambda e, n: str(e.get("peer") or "-"), flex=2, min=8),
    Col("consumes", "consumes", lambda e, n: join_ids(e.get("consumes")), flex=3, min=8),
    Col("produces", "produces", lambda e, n: join_ids(e.get("produces")), flex=3, min=8),
    Col("producing", "producing", _conn_producing, flex=2, min=8),
]

RATES = (("messages_in", "messages in", fmt_rate), ("messages_out", "messages out", fmt_rate),
         ("bytes_in", "bytes in", fmt_bytes), ("bytes_out", "bytes out", fmt_bytes),
         ("productions", "productions", fmt_rate), ("unchanged", "unchanged", fmt_rate))


