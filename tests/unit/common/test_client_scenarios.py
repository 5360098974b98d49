"""The shared client scenario table (tests/fixtures/client_scenarios.json) run against ClientState.

tests/e2e/js/scenarios.test.mjs runs the same table against seasync.js: a behaviour the two clients must
share is written there once, and both must pass it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from common.client.state import ClientState, backoff, next_version, same_version
from common.protocol import production_answer

TABLE = json.loads((Path(__file__).resolve().parents[2] / "fixtures" / "client_scenarios.json").read_text())


class Runner:
    """Drives one ClientState through a scenario's steps, the way the shell does (frames dropped offline)."""

    def __init__(self) -> None:
        self.state = ClientState("scenario")
        self.sent: list[dict] = []
        self.changes: dict[str, int] = {}
        self.errors = 0
        self.destroyed: set[str] = set()

    def out(self, result: Any) -> None:
        frames, events = result if isinstance(result, tuple) else (result, [])
        if self.state.connected:
            self.sent.extend(frames)
        for event in events:
            if event.kind == "changed":
                self.changes[event.id] = self.changes.get(event.id, 0) + 1
            elif event.kind == "destroyed":
                self.destroyed.add(event.id)
            elif event.kind == "error":
                self.errors += 1

    def step(self, step: dict) -> None:
        state = self.state
        if "connect" in step:
            self.out(state.connect())
        elif "disconnect" in step:
            self.out(([], state.disconnect()))
        elif "consume" in step:
            self.out(state.consume(step["consume"], step.get("value"), step.get("version")))
        elif "unconsume" in step:
            self.out(state.unconsume(step["unconsume"]))
        elif "master" in step:
            self.out(state.master(step["master"], step["value"], step["version"]))
        elif "unmaster" in step:
            self.out(state.unmaster(step["unmaster"]))
        elif "bump" in step:
            self.out(state.bump(step["bump"], step["value"], step["version"]))
        elif "receive" in step:
            self.out(state.receive(step["receive"]))
        elif "sent" in step:
            sent, self.sent = self.sent, []
            if step["sent"] is not None:
                assert sent == step["sent"]
        elif "expect" in step:
            for object_id, fields in step["expect"].items():
                assert self.consumer(object_id, fields) == fields, object_id
        elif "expect_master" in step:
            for pattern, fields in step["expect_master"].items():
                master = state.masters[pattern]
                assert {k: getattr(master, k) for k in fields} == fields, pattern
        elif "expect_errors" in step:
            assert self.errors == step["expect_errors"]
        else:
            raise AssertionError(f"unknown step {step!r}")

    def consumer(self, object_id: str, fields: dict) -> dict:
        entry = self.state.entries.get(object_id)
        out: dict[str, Any] = {}
        for name in fields:
            if name == "valid":
                out[name] = self.state.valid(object_id)
            elif name == "stale":
                out[name] = self.state.stale(object_id)
            elif name == "destroyed":
                out[name] = object_id in self.destroyed and entry is None
            elif name == "changes":
                out[name] = self.changes.get(object_id, 0)
            else:
                out[name] = None if entry is None else getattr(entry, name)
        return out


@pytest.mark.parametrize("scenario", TABLE["scenarios"], ids=lambda s: s["name"][:60])
def test_scenario(scenario):
    runner = Runner()
    for number, step in enumerate(scenario["steps"]):
        try:
            runner.step(step)
        except AssertionError as exc:
            raise AssertionError(f"step {number} {step!r}: {exc}") from exc


@pytest.mark.parametrize("a, b, expected", TABLE["same_version"]["cases"])
def test_same_version(a, b, expected):
    assert same_version(a, b) is expected


@pytest.mark.parametrize("attempt, base, maximum, expected", TABLE["backoff"]["cases"])
def test_backoff(attempt, base, maximum, expected):
    assert backoff(attempt, base, maximum) == expected


@pytest.mark.parametrize("version, now, expected", TABLE["next_version"]["cases"])
def test_next_version(version, now, expected):
    assert next_version(version, now) == expected


@pytest.mark.parametrize("result, expected", TABLE["production_answers"]["cases"])
def test_production_answer(result, expected):
    if expected == "error":
        with pytest.raises(ValueError):
            production_answer("p", result)
    else:
        assert production_answer("p", result) == expected
    if expected != "error" and isinstance(result[1], list):
        assert production_answer("p", (result[0], tuple(result[1]))) == production_answer("p", result)  # tuples
