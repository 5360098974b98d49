"""The pure rendering rules of sync-observer (scripts/observer/format.py)."""

from __future__ import annotations

from scripts.observer.format import (
    OBJECT_NARROW, Sort, changed_paths, column_widths, connection_rows, fmt_bytes, fmt_duration, fmt_version,
    WORKER_COLUMNS, object_rows, problem_reason, render_json, state_name,
)

SESSION = 1795796108498


def entry(object_id: str, **fields) -> dict:
    return {"id": object_id, "state": {"current": True}, "consumers": [], "producers": [], **fields}


def marked(text) -> list[str]:
    return [line[1:].strip() for line in text.plain.splitlines() if line.startswith("▌")]


def test_versions_render_compactly():
    assert fmt_version(3) == "3"
    assert fmt_version(None) == fmt_version(0) == "-"
    assert fmt_version([SESSION, 15]) == "…8498.15"  # seapig's [session, counter]: the counter matters
    assert fmt_version({"hello": 1}) == "hello:1"
    assert fmt_version({"b": 2, "a": [SESSION, 3]}) == "a:…8498.3 +1"
    assert fmt_version({"Seconds:1": SESSION}, width=12) == "Seconds:1"  # too long: the dependency only


def test_durations_and_sizes_are_short():
    assert [fmt_duration(s) for s in (2.34, 42, 125, 7200, 3 * 86400)] == ["2.3s", "42s", "2m", "2h", "3d"]
    assert fmt_duration(None) == "-" and fmt_duration(-1) == "0.0s"  # clock skew never shows negative ages
    assert [fmt_bytes(n) for n in (56, 2900, 23_695_360)] == ["56B", "2.9kB", "24MB"]


def test_state_names_the_most_telling_flag():
    assert state_name({"current": False, "producing": True, "enqueued": True}) == "producing"
    assert state_name({"current": False, "enqueued": True}) == "queued"
    assert state_name({"current": True}) == "current"
    assert state_name({"current": False}) == "stale"
    assert state_name("junk") == "?"


def test_filter_uses_anchored_wildcards_and_hides_internal_objects():
    objects = {oid: entry(oid) for oid in ("thing-10", "thing-2", "xthing-1", "SeapigServer::Statistics")}
    objects["broken"] = "not an entry"
    assert [k for k, _ in object_rows(objects)] == ["thing-2", "thing-10", "xthing-1"]  # natural order
    assert [k for k, _ in object_rows(objects, "thing-*")] == ["thing-2", "thing-10"]
    assert [k for k, _ in object_rows(objects, "thing")] == []  # no * means an exact id
    assert [k for k, _ in object_rows(objects, "*Statistics", show_internal=True)] == ["SeapigServer::Statistics"]
    assert object_rows(None) == [] and object_rows([1, 2]) == []


def test_sorting_by_age_puts_the_latest_production_first():
    objects = {"a": entry("a", produced_at=100.0), "b": entry("b", produced_at=300.0), "c": entry("c")}
    assert [k for k, _ in object_rows(objects, sort=Sort("age"))] == ["b", "a", "c"]
    assert [k for k, _ in object_rows(objects, sort=Sort("age", reverse=True))] == ["c", "a", "b"]


def test_connection_rows_hide_the_routers_own_session():
    # keyed by connection number, as seapig writes SeapigServer::Connections; the client id is inside
    connections = {"1": {"id": "SeapigInternalClient:1"}, "2": {"id": "app:2"}, "10": {"id": "app:10"}}
    assert [k for k, _ in connection_rows(connections)] == ["2", "10"]
    assert len(connection_rows(connections, show_internal=True)) == 3


def test_changed_paths_come_from_the_patch():
    value = {"a": 1, "list": [1, 2, 3]}
    patch = [{"op": "replace", "path": "/a", "value": 1}, {"op": "add", "path": "/list/-", "value": 3},
             {"op": "remove", "path": "/gone"}, "junk"]
    assert changed_paths(patch, value) == (frozenset({"/a", "/list/2"}), ("/gone",))
    assert changed_paths(None, value) == (frozenset(), ())


def test_json_marks_changed_lines_and_their_subtree():
    value = {"count": 1, "nested": {"x": 1, "y": [1, 2]}, "a/b": True}
    text, first = render_json(value, frozenset({"/count", "/nested/y", "/a~1b"}))
    assert marked(text) == ['"count": 1,', '"y": [', "1,", "2", "]", '"a/b": true']
    assert first == 1
    assert render_json(value)[1] is None
    cut, _ = render_json({"list": list(range(100))}, max_lines=10)
    assert len(cut.plain.splitlines()) == 11 and "cut at 10 lines" in cut.plain


def test_problem_reason_keeps_the_gist_of_the_client_warning():
    message = "cannot connect to ws://127.0.0.1:1 ([Errno 111] Connect call failed); retrying in 1.0 s"
    assert problem_reason(message) == "[Errno 111] Connect call failed"
    assert problem_reason("connection to ws://x lost; reconnecting in 1.0 s") == "connection lost"
    assert problem_reason(None) == ""


def test_columns_fill_the_width_of_an_80_column_terminal():
    widths = column_widths(OBJECT_NARROW, 79)
    assert sum(widths) + 2 * len(widths) == 79
    assert widths[0] >= 16  # the id column keeps room for ids like "hello-shout"


def test_worker_cell_shows_orders_held_beyond_the_running_one():
    producing = next(c for c in WORKER_COLUMNS if c.key == "producing")
    worker = {"id": "worker:3", "producing": {"id": "tp-7", "since": 0.0}}
    assert producing.render({**worker, "orders": 1}, 0.0).plain == "tp-7"
    assert producing.render({**worker, "orders": 5}, 0.0).plain == "tp-7 +4"  # sync-worker --prefetch
    assert producing.render({"id": "worker:4", "producing": None, "orders": 0}, 0.0).plain == "idle"


def test_an_object_in_error_shows_as_error():
    from scripts.observer.format import state_name
    assert state_name({"current": False, "error": True}) == "error"


def test_the_observer_shows_an_unchanged_column_next_to_runs():
    """Issue 17 item 3: productions whose data equalled the data held, beside the productions."""
    from scripts.observer.format import OBJECT_WIDE

    for columns in (OBJECT_WIDE, WORKER_COLUMNS):
        keys = [c.key for c in columns]
        assert keys[keys.index("runs") + 1] == "same"
        same = columns[keys.index("same")]
        assert str(same.render({"id": "x", "unchanged": 7}, 0.0)).strip() == "7"
    widths = column_widths(WORKER_COLUMNS, 79)
    assert sum(widths) + 2 * len(widths) <= 80  # still fits an 80-column terminal
