"""Issue 12 items 4 and 5, written from the issue text, over a real router + front (seapig's frames).

Item 4: "object-patch with a patch that is not a list (or whose version-old is a base the router does not
hold) from the session the object was ordered from [...] seapig treats any such upload as a cancelled
production: the object is queued and ordered again (object-produce with the same version-inferred). Keep
the error frame (an additive extension), and requeue."

Item 5: "an object is current at {a: 1, b: 1}; the dependency b is uploaded at 10; the producer then
uploads the object at {a: 5, b: 5} [...] The original asks for {a: 5, b: 10} [...] An order must never ask
for a version older in any dependency than the current one."

The scenario machinery (barriers, exact frame lists) is test_seapig_scenarios.py's.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.integration.test_seapig_scenarios import (  # noqa: F401  (seapig is a fixture)
    T1,
    T2,
    AnyText,
    Scenario,
    consumer_register,
    error,
    full,
    produce,
    producer_register,
    replace,
    seapig,
    upload,
    upload_patch,
)

pytestmark = pytest.mark.timeout(90)

BACKOFF_PASSES = 1.5  # s: more than the router's first failure backoff (0.5 s), so a wrong order would be out


async def _ordered_at_a_dependency_hash(s: Scenario):
    """T1 built at {T2: 10}, then T2 uploaded at 20: the producer holds an order at {T2: 20}."""
    c = await s.client()
    p = await s.client()
    await c.send(consumer_register(T1, 0))
    await p.send(producer_register(T1))
    await p.expect([produce(T1)])
    await p.send(upload(T1, {T2: 10}, {"v": 1}))
    await c.expect([full(T1, {T2: 10}, {"v": 1})])
    await p.send(upload(T2, 20, {"v": 1}))
    await p.expect([produce(T1, {T2: 20})])
    return c, p


@pytest.mark.parametrize("ops, code", [
    pytest.param({"v": 1}, "patch-invalid", id="patch-not-a-list"),
    pytest.param([{"op": "remove", "path": "/missing"}], "patch-failed", id="operations-fail"),
])
async def test_an_unapplicable_upload_from_the_producer_is_an_error_and_a_new_order(
        seapig: Scenario, ops, code) -> None:
    c, p = await _ordered_at_a_dependency_hash(seapig)
    await p.send(upload_patch(T1, {T2: 10}, {T2: 20}, ops))
    await p.expect([error("object-patch", id=T1, code=code), produce(T1, {T2: 20})])  # at once
    await c.expect([])  # a cancel: consumers are not told of a failure
    await p.send(upload(T1, {T2: 20}, {"v": 2}))
    await c.expect([{"action": "object-update", "id": T1, "version-old": {T2: 10}, "version-new": {T2: 20},
                     "patch": [replace("/v", 2)]}])


async def test_the_rspec_patch_on_an_inaccessible_base_requeues_with_an_error_frame(seapig: Scenario) -> None:
    """basic_spec: "requeues object production if producer submits patch with inaccessible old_version",
    as the spec sends it (`"patch": {"v": 1}`, an object): the new order comes, behind the error frame."""
    c = await seapig.client()
    await c.send(consumer_register(T1, 0))
    await c.send(producer_register(T1))
    await c.expect([produce(T1)])
    await c.send(upload_patch(T1, 1, 2, {"v": 1}))
    await c.expect([error("object-patch", AnyText("list"), id=T1, code="patch-invalid"), produce(T1)])


async def test_a_patch_on_a_base_not_held_is_a_silent_cancel_and_a_new_order(seapig: Scenario) -> None:
    c, p = await _ordered_at_a_dependency_hash(seapig)
    await p.send(upload_patch(T1, {T2: 15}, {T2: 20}, [replace("/v", 2)]))
    await p.expect([produce(T1, {T2: 20})])


async def test_a_producer_that_keeps_sending_unapplicable_uploads_is_slowed_down(seapig: Scenario) -> None:
    """No full-speed loop: the first cancel is ordered again at once, the next ones only after the backoff
    (the order still comes, with the same version-inferred)."""
    c, p = await _ordered_at_a_dependency_hash(seapig)
    await p.send(upload_patch(T1, {T2: 10}, {T2: 20}, {"v": 1}))
    await p.expect([error("object-patch", id=T1, code="patch-invalid"), produce(T1, {T2: 20})])
    await p.send(upload_patch(T1, {T2: 10}, {T2: 20}, {"v": 1}))
    await p.expect([error("object-patch", id=T1, code="patch-invalid")])  # not at once any more...
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15.0
    while not p.inbox and loop.time() < deadline:
        await asyncio.sleep(0.05)
    await p.expect([produce(T1, {T2: 20})])  # ...but after the backoff


async def test_an_order_never_asks_below_the_version_held(seapig: Scenario) -> None:
    """The issue's scenario: T1 current at {a: 1, b: 1}, "a" known at 2, "b" uploaded at 10, the producer
    answers {a: 5, b: 5}. The next order is {a: 5, b: 10}, never {a: 2, b: 10}; like seapig it waits for
    the router to know "a" at 5 (a dependency required above its known version)."""
    a, b = "dep-a", "dep-b"
    c = await seapig.client()
    p = await seapig.client()
    d = await seapig.client()
    await c.send(consumer_register(T1, 0))
    await p.send(producer_register(T1))
    await d.send(producer_register(a))
    await d.send(producer_register(b))
    await p.expect([produce(T1)])
    await p.send(upload(T1, {a: 1, b: 1}, {"v": 1}))
    await c.expect([full(T1, {a: 1, b: 1}, {"v": 1})])
    await d.send(upload(a, 2, {}))
    await d.send(upload(b, 10, {}))
    await p.expect([produce(T1, {a: 2, b: 10})])
    await p.send(upload(T1, {a: 5, b: 5}, {"v": 2}))
    await asyncio.sleep(BACKOFF_PASSES)  # a wrong re-order, once its backoff is over, would be here now
    await p.expect([])
    await d.send(upload(a, 5, {}))
    await p.expect([produce(T1, {a: 5, b: 10})])
    await p.send(upload(T1, {a: 5, b: 10}, {"v": 3}))
    await p.expect([])
