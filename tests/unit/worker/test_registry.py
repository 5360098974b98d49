"""``ProducerTable``: which producer instance answers which id (exact first, then wildcards in load order)."""

from __future__ import annotations

from worker.producer import Producer
from worker.registry import ProducerTable


class Exact(Producer):
    patterns = ["cars", "bikes"]

    def produce(self, object_id):
        return {}, 1


class Wild(Producer):
    patterns = ["car*", "*"]

    def produce(self, object_id):
        return {}, 1


class Late(Producer):
    patterns = ["cars", "car*"]

    def produce(self, object_id):
        return {}, 1


def test_exact_patterns_win_over_wildcards_and_wildcards_go_in_load_order():
    exact, wild = Exact(), Wild()
    table = ProducerTable([wild, exact])
    assert table.find("cars") is exact  # exact before any wildcard, whatever the load order
    assert table.find("carpets") is wild
    assert table.find("anything") is wild
    assert table.patterns == {"cars", "bikes", "car*", "*"}
    assert len(table) == 4


def test_the_first_producer_to_claim_a_pattern_keeps_it_and_the_conflict_is_said():
    exact, late = Exact(), Late()
    table = ProducerTable([exact, late])
    assert table.find("cars") is exact
    assert table.find("carts") is late
    assert len(table.conflicts) == 1 and "'cars'" in table.conflicts[0] and "keeps it" in table.conflicts[0]


def test_nothing_answers_an_id_no_pattern_covers():
    assert ProducerTable([Exact()]).find("planes") is None
    assert ProducerTable().find("cars") is None
