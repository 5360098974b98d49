"""``ObjectStore.handle_raw`` fuzzed in-process: random bytes, and valid frames mutated field by field, from
several sessions at once. Whatever arrives, the store answers with frames (an ``error`` frame with a stable
``code`` for what it refuses) or nothing, and never raises: an exception here would be a frame that takes
the router's loop into its ``internal`` error path, i.e. a bug of ours (DESIGN principle 3)."""

from __future__ import annotations

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router.store import ObjectStore

IDS = st.sampled_from(["a", "b", "dep:a", "a*", "*", "", "SeapigServer::Objects", "x" * 1100])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-3, 2**63 - 1), st.floats(allow_nan=False),
                    st.text(max_size=8))
VERSIONS = st.one_of(SCALARS, st.lists(st.integers(-1, 5), max_size=3),
                     st.dictionaries(IDS, st.integers(-1, 5), max_size=3))
JSONS = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                      st.dictionaries(st.text(max_size=4), inner, max_size=3)),
                     max_leaves=8)
OPS = st.fixed_dictionaries({"op": st.sampled_from(["add", "remove", "replace", "copy", "move", "test", "x"]),
                             "path": st.sampled_from(["", "/", "/s", "/a/0", "/-", "s"]),
                             "from": st.sampled_from(["/s", "/a", ""]), "value": JSONS})
FRAMES = st.fixed_dictionaries(
    {"action": st.sampled_from(["client-options-set", "object-consumer-register", "object-consumer-unregister",
                                "object-producer-register", "object-producer-unregister", "object-patch",
                                "heartbeat", "nonsense"])},
    optional={"id": IDS, "pattern": IDS, "version-known": VERSIONS, "version-new": VERSIONS,
              "version-old": VERSIONS, "value": JSONS, "patch": st.one_of(st.lists(OPS, max_size=4), JSONS),
              "error": SCALARS, "options": st.one_of(JSONS, st.fixed_dictionaries(
                  {"name": st.text(max_size=4), "prefetch": st.integers(-5, 5000)}))})
INPUTS = st.one_of(FRAMES.map(orjson.dumps), st.binary(max_size=64),
                   FRAMES.map(orjson.dumps).map(lambda raw: raw[: len(raw) // 2]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 2), INPUTS), min_size=1, max_size=30))
def test_any_input_gets_frames_or_nothing_never_an_exception(inputs: list[tuple[int, bytes]]) -> None:
    store = ObjectStore(log=lambda *args: None)
    sessions = [store.open(f"s{i}") for i in range(3)]
    now = 0.0
    for who, raw in inputs:
        now += 0.25
        store.handle_raw(sessions[who], raw, now)
        for frame, targets in store.take_outbox():
            message = orjson.loads(frame)
            assert targets, "a frame for nobody"
            if message.get("action") == "error":
                assert message.get("code") and message["code"] != "internal", message
                assert len(frame) < 16_384, "an error frame as large as its input"
        store.tick(now)
    for session in sessions:
        store.close(session)
    store.take_outbox()
    assert not store.objects, "objects outlived every session"
