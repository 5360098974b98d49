"""One set of rules for a producer's answer, from one table shared with seasync.js
(production_answers.json): the worker (worker/production.py) and the Python client both call
common.protocol.production_answer, and the JS client runs the same table under node."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from common import codec, protocol
from worker import production

TABLE = json.loads((Path(__file__).with_name("production_answers.json")).read_text())["cases"]


def tuples(value):
    """The same value with every list a tuple (Python producers often return tuples)."""
    if isinstance(value, list):
        return tuple(tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: tuples(v) for k, v in value.items()}
    return value


@pytest.mark.parametrize("case", TABLE, ids=[c["name"] for c in TABLE])
def test_production_answer_follows_the_shared_table(case):
    if case["answer"] is None:
        with pytest.raises(protocol.AnswerError):
            protocol.production_answer("o", case["result"])
    else:
        assert protocol.production_answer("o", case["result"]) == case["answer"]


@pytest.mark.parametrize("case", [c for c in TABLE if isinstance(c["result"], list) and len(c["result"]) == 2
                                  and not isinstance(c["result"][0], list)], ids=lambda c: c["name"])
def test_a_tuple_is_a_list_for_the_pair_and_for_list_versions(case):
    data, version = case["result"]
    result = (data, tuples(version) if isinstance(version, list) else version)
    if case["answer"] is None:
        with pytest.raises(protocol.AnswerError):
            protocol.production_answer("o", result)
    else:
        assert codec.loads(codec.dumps(protocol.production_answer("o", result))) == case["answer"]


class Fixed:
    """A producer returning one fixed result."""

    def __init__(self, result):
        self.result = result

    def produce(self, object_id):
        return self.result


@pytest.mark.parametrize("case", TABLE, ids=[c["name"] for c in TABLE])
def test_the_worker_answers_by_the_same_table(case):
    answer = production.produce(Fixed(case["result"]), "o")
    sent = codec.loads(answer.frame)
    if case["answer"] is None:
        assert answer.error and set(sent) == {"action", "id", "error"}, sent
    else:
        assert answer.error is None and sent == case["answer"]


def test_the_python_client_uses_the_same_rules():
    """No second validator left in the client: its production path calls production_answer."""
    source = (Path(protocol.__file__).parent / "client.py")
    text = source.read_text() if source.exists() else "".join(
        p.read_text() for p in (Path(protocol.__file__).parent / "client").glob("*.py"))
    assert "protocol.production_answer(" in text and "def _production_message" not in text


def test_the_browser_client_names_the_introspection_objects_as_the_router_does():
    """One definition per artefact: seasync.js's INTROSPECTION (which the viewer reads) holds exactly the ids
    of common/protocol.py, so a renamed object cannot leave the browser side behind."""
    import re

    source = (Path(protocol.__file__).parents[1] / "router" / "static" / "seasync.js").read_text()
    block = source[source.index("export const INTROSPECTION"):]
    block = block[:block.index("});")]
    js = dict(re.findall(r'(\w+): "([^"]+)"', block))
    py = {name: getattr(protocol, name) for name in js}
    assert js == py and set(js.values()) == {protocol.OBJECTS, protocol.CONSUMERS, protocol.PRODUCERS,
                                              protocol.CONNECTIONS, protocol.STATISTICS, protocol.WORKERS,
                                              protocol.SEASYNC_STATISTICS}
