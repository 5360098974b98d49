"""Wasted productions (issue 17 item 3): an upload whose data equals the data held (only the version moved)
is counted per object, per producer session and in all; ``skip_unchanged`` (``sync-router
--skip-unchanged``) does not push it, and a client then still holding the older version gets the next real
change as a patch from what it holds. Pure: the store alone, driven in-process."""

from __future__ import annotations

import copy

import orjson
from hypothesis import settings, strategies as st
from hypothesis.stateful import invariant, precondition, rule

from common.diff import apply_patch
from common.versioning import same
from router.store import MAX_ALIASES, ObjectStore, Session
from tests.unit.router import harness, test_store_stateful


class Harness(harness.Harness):
    """A store with a producer of ``doc-*`` and clients that apply what they receive (as a real client)."""

    def __init__(self, **options) -> None:
        options.setdefault("retain", 2)
        super().__init__(**options)
        self.producer = self.client("producer")
        self.send(self.producer, "object-producer-register", pattern="doc-*")
        self.held: dict[Session, tuple[object, dict | None]] = {}  # what each client holds of doc-1

    def upload(self, version: object, value: dict, object_id: str = "doc-1") -> None:
        self.send(self.producer, "object-patch", id=object_id, version_new=version, value=value)

    def watch(self, name: str, known: object = 0, object_id: str = "doc-1", holding: dict | None = None) -> Session:
        """A client registering with ``version-known`` ``known``, whose data then is ``holding``."""
        s = self.client(name)
        self.held[s] = (known, holding)
        self.send(s, "object-consumer-register", pattern=object_id, version_known=known)
        return s

    def updates(self, session: Session) -> list[dict]:
        """The object-update frames the session received since the last call, applied to what it holds:
        a patch whose version-old is not the version it holds fails the test (a real client would break)."""
        frames = [f for f in self.take(session) if f["action"] == "object-update"]
        for f in frames:
            version, value = self.held.get(session, (0, None))
            if "patch" in f:
                assert f["version-old"] == version, f"a patch from {f['version-old']} to a client holding {version}"
                value = apply_patch(copy.deepcopy(value), f["patch"])
            else:
                value = f["value"]
            self.held[session] = (f["version-new"], value)
        return frames


def orders(h: Harness) -> list[dict]:
    return [f for f in h.take(h.producer) if f["action"] == "object-produce"]


def test_an_unchanged_production_is_counted_per_object_session_and_in_all_and_sent_as_seapig_does():
    h = Harness()
    tab = h.watch("tab")
    assert [o["id"] for o in orders(h)] == ["doc-1"]
    h.upload(1, {"a": 1, "b": [1, 2]})
    h.upload(2, {"a": 1, "b": [1, 2]})  # only the version moved
    obj = h.store.objects["doc-1"]
    assert (obj.unchanged, h.producer.unchanged, h.store.unchanged_total) == (1, 1, 1)
    assert obj.known == 2
    [first, second] = h.updates(tab)
    assert first["value"] == {"a": 1, "b": [1, 2]}
    assert (second["version-old"], second["version-new"], second["patch"]) == (1, 2, [])  # seapig: patch []
    h.upload(3, {"a": 2, "b": [1, 2]})  # a real change is not counted
    h.upload(4, {"b": [1, 2], "a": 2})  # equal, keys in another order: counted as changed (no sorting)
    assert h.store.unchanged_total == 1
    h.updates(tab)
    assert h.held[tab] == (4, {"a": 2, "b": [1, 2]})


def test_a_stall_then_the_same_data_counts_as_unchanged_and_a_version_not_newer_does_not_count():
    h = Harness()
    h.watch("tab")
    h.upload(1, {"a": 1})
    h.upload(1, {"a": 1})  # not newer: ignored, not a production of anything
    h.send(h.producer, "object-patch", id="doc-1", version_new=2, value=False)  # a stall
    h.upload(3, {"a": 1})
    assert h.store.unchanged_total == 1


def test_skip_unchanged_sends_nothing_and_the_next_change_is_a_patch_from_what_the_client_holds():
    h = Harness(skip_unchanged=True)  # retain 2: without aliases, version 1 would be gone by version 4
    tab = h.watch("tab")
    h.upload(1, {"rows": list(range(50))})
    assert [f["version-new"] for f in h.updates(tab)] == [1]
    h.upload(2, {"rows": list(range(50))})
    h.upload(3, {"rows": list(range(50))})
    assert h.updates(tab) == []  # nothing for an unchanged production
    obj = h.store.objects["doc-1"]
    assert obj.known == 3 and obj.state == "current" and h.store.unchanged_total == 2
    h.upload(4, {"rows": list(range(51))})
    [update] = h.updates(tab)
    assert (update["version-old"], update["version-new"]) == (1, 4) and "patch" in update
    assert h.held[tab] == (4, {"rows": list(range(51))})


def test_skip_unchanged_a_resync_from_the_skipped_version_or_the_new_one_ends_at_the_right_version():
    h = Harness(skip_unchanged=True)
    h.watch("tab")
    h.upload(1, {"n": 1})
    h.upload(2, {"n": 1})  # skipped
    again = h.watch("tab-reconnected", known=1, holding={"n": 1})  # a reconnect holding what it was last sent
    [update] = h.updates(again)
    assert (update["version-old"], update["version-new"], update["patch"]) == (1, 2, [])
    fresh = h.watch("new-tab")
    [update] = h.updates(fresh)
    assert (update["version-new"], update["value"]) == (2, {"n": 1})
    current = h.watch("current-tab", known=2, holding={"n": 1})
    assert h.updates(current) == []
    h.upload(3, {"n": 1})  # skipped again: new-tab holds 2, an alias now
    h.upload(4, {"n": 2})
    for tab in (again, fresh, current):
        [update] = h.updates(tab)
        assert update["version-old"] == 2 and "patch" in update
        assert h.held[tab] == (4, {"n": 2})


def test_skip_unchanged_dependents_still_see_the_new_version_and_are_produced():
    h = Harness(skip_unchanged=True)
    h.send(h.producer, "object-producer-register", pattern="dep-a")
    tab = h.watch("tab")
    assert [o["id"] for o in orders(h)] == ["doc-1"]
    h.upload({"dep-a": 1}, {"n": 1})  # declares its dependency: dep-a is spawned and ordered
    assert [o["id"] for o in orders(h)] == ["dep-a"]
    h.upload(1, {"x": 1}, "dep-a")
    assert orders(h) == []
    h.upload(2, {"x": 1}, "dep-a")  # an unchanged dependency still moved its version
    assert h.store.unchanged_total == 1
    [order] = orders(h)
    assert (order["id"], order["version-inferred"]) == ("doc-1", {"dep-a": 2})
    h.upload({"dep-a": 2}, {"n": 1})  # and the dependent is unchanged too: skipped as well
    assert h.store.objects["doc-1"].known == {"dep-a": 2}
    assert [f["version-new"] for f in h.updates(tab)] == [{"dep-a": 1}]


def test_skip_unchanged_in_batch_mode_a_change_then_an_unchanged_one_is_one_patch_to_the_latest():
    h = Harness(skip_unchanged=True)
    tab = h.watch("tab")
    h.upload(1, {"n": 1})
    h.updates(tab)
    for version, value in ((2, {"n": 2}), (3, {"n": 2})):
        h.store.handle_raw(h.producer, orjson.dumps({"action": "object-patch", "id": "doc-1", "version-new": version,
                                                     "value": value}), h.store.now, coalesce=True)
    h.route()
    [update] = h.updates(tab)
    assert (update["version-old"], update["version-new"]) == (1, 3)
    assert h.held[tab] == (3, {"n": 2})


def test_skip_unchanged_a_paused_client_resumes_with_a_patch_from_what_it_holds():
    h = Harness(skip_unchanged=True)
    tab = h.watch("tab")
    h.upload(1, {"n": 1})
    h.updates(tab)
    h.store.pause(tab)
    h.upload(2, {"n": 2})
    h.upload(3, {"n": 2})  # skipped
    h.store.resume(tab)
    h.route()
    [update] = h.updates(tab)
    assert (update["version-old"], update["version-new"]) == (1, 3)
    assert h.held[tab] == (3, {"n": 2})


def test_skipped_versions_are_bounded_and_the_version_pushed_before_the_run_is_kept():
    h = Harness(skip_unchanged=True)
    tab = h.watch("tab")
    h.upload(1, {"n": 1})
    h.updates(tab)
    late = None
    for version in range(2, MAX_ALIASES + 20):
        h.upload(version, {"n": 1})
        if version == MAX_ALIASES + 10:
            late = h.watch("late")  # registers during the run: holds a recent skipped version
    obj = h.store.objects["doc-1"]
    assert len(obj.aliases) <= MAX_ALIASES
    assert h.updates(tab) == []
    assert late is not None and len(h.updates(late)) == 1
    h.upload(1000, {"n": 2})
    for client in (tab, late):
        [update] = h.updates(client)
        assert "patch" in update, "the run's base and its recent versions are both still patched from"
        assert h.held[client] == (1000, {"n": 2})
    h.upload(1001, {"n": 3})
    h.upload(1002, {"n": 4})  # version 1's data is no longer retained: its aliases go with it
    assert obj.aliases == {}


def test_introspection_shows_unchanged_per_object_and_per_producer_session():
    from router.introspection import CONNECTIONS, OBJECTS, WORKERS, Introspection

    h = Harness()
    intro = Introspection(h.store, ("", "introspection"), 1, lambda s: "peer")
    worker = h.client("worker")
    h.send(worker, "object-producer-register", pattern="job-1")
    tab = h.watch("tab", object_id="job-1")
    h.take(worker)
    for version in (1, 2, 3):
        h.send(worker, "object-patch", id="job-1", version_new=version, value={"same": True})
    objects = intro.build(OBJECTS, h.store.now)
    assert (objects["job-1"]["productions"], objects["job-1"]["unchanged"]) == (1, 2)  # 1 ordered, 3 uploads
    [entry] = intro.build(WORKERS, h.store.now).values()
    assert entry["unchanged"] == 2
    connections = {c["id"]: c for c in intro.build(CONNECTIONS, h.store.now).values()}
    assert connections[worker.client_id]["unchanged"] == 2
    assert "unchanged" not in connections[tab.client_id]  # a consumer's entry does not carry the counters
    assert h.store.unchanged_total == 2



class SkipStoreMachine(test_store_stateful.StoreMachine):
    """The store's stateful property test with --skip-unchanged: random sessions, registrations, uploads
    (small random values: many are unchanged), disconnects and batch mode. A patch is still only ever sent
    against the version the client holds (the parent's model asserts it), and a consumer not brought to
    the latest version holds the latest data, at a version the store can still patch from."""

    def __init__(self) -> None:
        super().__init__()
        self.store = ObjectStore(retain=2, skip_unchanged=True)

    @precondition(lambda self: self.sessions)
    @rule(data=st.data(), oid=st.sampled_from(test_store_stateful.IDS))
    def upload_the_same_data(self, data, oid) -> None:
        """The data held again, at the next version: an unchanged production."""
        obj = self.store.objects.get(oid)
        if obj is None or obj.latest is None:
            return
        known = obj.known
        if type(known) is int:
            version: object = known + 1
        elif type(known) is list and known and all(type(v) is int for v in known):
            version = [*known[:-1], known[-1] + 1]
        elif type(known) is dict and known and all(type(v) is int for v in known.values()):
            version = {k: v + 1 for k, v in known.items()}
        else:
            return
        s = data.draw(st.sampled_from(self.sessions))
        self._send(s, {"action": "object-patch", "id": oid, "version-new": version, "value": obj.latest[1]})

    @invariant()
    def consumers_at_latest_version_hold_latest_data(self) -> None:
        for obj in self.store.objects.values():
            latest = obj.latest
            if not latest:
                continue
            for s in obj.consumers:
                version = s.held.get(obj.id)
                held = self.held.get((s, obj.id))
                assert version is not None, "a consumer was never sent the object"
                if held is None:
                    continue
                assert same(held[0], version)  # the store knows what the client holds
                assert test_store_stateful.canon(held[1]) == test_store_stateful.canon(latest[1])
                if not same(version, latest[0]):
                    base = obj.data_at(version)  # skipped: its next change is a patch from what it holds
                    assert base is not None and test_store_stateful.canon(base) == test_store_stateful.canon(latest[1])


TestSkipStoreMachine = SkipStoreMachine.TestCase
TestSkipStoreMachine.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
