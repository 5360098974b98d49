"""seapig's statistics time slots and histograms (router/timeslots.py), stepped with explicit times."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, strategies as st

from router.timeslots import ENTITIES, Statistics, bucket

T0 = 1_700_000_000  # unix seconds; each scale's slots start at multiples of its length
DIST = ("message-incoming-size", "message-outgoing-size", "message-incoming-processing-time")


def test_bucket_is_floor_log10_times_ten_and_below_one_is_zero():
    assert [bucket(v) for v in (0, 0.5, 1, 9, 10, 99, 100, 1000, 4500)] == [0, 0, 0, 9, 10, 19, 20, 30, 36]
    assert bucket(10 ** 6) == 60 and bucket(2.0) == 3 and bucket(1e9) == 90


@given(st.one_of(st.integers(min_value=1, max_value=10 ** 7), st.floats(min_value=1, max_value=1e9)))
def test_bucket_matches_the_formula(value):
    assert bucket(value) == math.floor(math.log10(value) * 10)


def test_first_value_has_four_scales_six_entities_and_metrics():
    snap = Statistics(T0 + 0.4).snapshot()
    assert list(snap) == ["seconds", "minutes", "hours", "days"]
    assert [(snap[s]["seconds"], snap[s]["keep"]) for s in snap] == [(1, 300), (60, 300), (3600, 240), (86400, 365)]
    for _name, scale in snap.items():
        assert scale["timestamp"] == T0 // scale["seconds"] * scale["seconds"]
        assert set(scale["entities"]) == set(ENTITIES)
        entities = scale["entities"]
        assert entities["connections-count"] == {"last": [], "metrics": {"last": {"show": True, "retain": True}}}
        for e in ("message-incoming-count", "message-outgoing-count"):
            assert entities[e] == {"count": [], "metrics": {"count": {"show": True}}}
        for e in DIST:
            assert entities[e]["metrics"] == {
                "count": {"show": False}, "sum": {"show": True}, "average": {"show": True},
                "maximum": {"show": True}, "histogram": {"show": True, "multiplier": 10}}
            assert all(entities[e][f] == [] for f in ("count", "sum", "average", "maximum", "histogram"))


def test_a_closed_second_holds_counts_sums_averages_maxima_and_histograms():
    stats = Statistics(T0, connections=3)
    stats.incoming(100, 5.0)
    stats.incoming(4500, 50.0)
    stats.outgoing(1000, 3)  # one frame to three sessions: three messages
    stats.roll(T0 + 0.9)  # still in progress: nothing closed
    assert stats.snapshot()["seconds"]["entities"]["message-incoming-count"]["count"] == []
    stats.roll(T0 + 1.2)
    seconds = stats.snapshot()["seconds"]
    assert seconds["timestamp"] == T0 + 1
    e = seconds["entities"]
    assert e["connections-count"]["last"] == [3]
    assert e["message-incoming-count"]["count"] == [2]
    size = e["message-incoming-size"]
    assert (size["count"], size["sum"], size["average"], size["maximum"]) == ([2], [4600], [2300.0], [4500])
    histogram = size["histogram"][0]
    assert len(histogram) == 37 and histogram[20] == 1 and histogram[36] == 1 and sum(histogram) == 2
    assert e["message-outgoing-count"]["count"] == [3]
    out = e["message-outgoing-size"]
    assert (out["count"], out["sum"], out["maximum"]) == ([3], [3000], [1000]) and out["histogram"][0][30] == 3
    times = e["message-incoming-processing-time"]
    assert times["maximum"] == [50.0] and times["histogram"][0][6] == 1 and times["histogram"][0][16] == 1


def test_quiet_slots_are_empty_and_connections_are_retained():
    stats = Statistics(T0, connections=2)
    stats.roll(T0 + 1)
    stats.connections(5)
    stats.roll(T0 + 4.5)  # slot T0+1 closed with 5, then two quiet ones
    e = stats.snapshot()["seconds"]["entities"]
    assert e["connections-count"]["last"] == [2, 5, 5, 5]
    assert e["message-incoming-count"]["count"] == [0, 0, 0, 0]
    size = e["message-incoming-size"]
    assert size["average"] == [None] * 4 and size["maximum"] == [None] * 4 and size["histogram"] == [[]] * 4
    assert stats.snapshot()["seconds"]["timestamp"] == T0 + 4


def test_arrays_keep_at_most_keep_slots_oldest_first():
    stats = Statistics(T0)
    for i in range(310):
        stats.incoming(1, float(i))
        stats.roll(T0 + i + 1)
    times = stats.snapshot()["seconds"]["entities"]["message-incoming-processing-time"]["maximum"]
    assert len(times) == 300 and times[0] == 10.0 and times[-1] == 309.0
    # a very long silence closes at most `keep` slots, and lands on the slot in progress
    stats.roll(T0 + 10 ** 6 + 0.5)
    seconds = stats.snapshot()["seconds"]
    assert seconds["timestamp"] == T0 + 10 ** 6
    assert seconds["entities"]["message-incoming-count"]["count"] == [0] * 300


def test_closed_seconds_fold_into_minutes_hours_and_days():
    start = 1_699_999_200  # a multiple of 3600
    stats = Statistics(start)
    for s in range(120):
        stats.incoming(10, 2.0)
        stats.outgoing(200, 2)
        stats.connections(s)
        stats.roll(start + s + 1)
    minutes = stats.snapshot()["minutes"]
    assert minutes["timestamp"] == start + 120
    e = minutes["entities"]
    assert e["message-incoming-count"]["count"] == [60, 60]
    assert e["message-outgoing-count"]["count"] == [120, 120]
    assert e["message-incoming-size"]["sum"] == [600, 600] and e["message-incoming-size"]["histogram"][0][10] == 60
    assert e["connections-count"]["last"] == [59, 119]
    stats.roll(start + 3600)
    hours = stats.snapshot()["hours"]["entities"]
    assert hours["message-incoming-count"]["count"] == [120]
    assert hours["message-outgoing-size"]["maximum"] == [200]
    assert stats.snapshot()["days"]["entities"]["message-incoming-count"]["count"] == []  # the day is in progress


def test_snapshots_do_not_change_when_counting_goes_on():
    """The store keeps each uploaded value as history: later counting must not reach into it."""
    stats = Statistics(T0)
    stats.incoming(10, 1.0)
    stats.roll(T0 + 1)
    snap = stats.snapshot()
    before = repr(snap)
    stats.incoming(20, 1.0)
    stats.roll(T0 + 2)
    assert repr(snap) == before


@given(st.lists(st.integers(min_value=0, max_value=10 ** 6)), st.lists(st.floats(min_value=0, max_value=1e7)))
def test_a_batch_counts_like_one_event_at_a_time(sizes, times):
    """The router appends raw values and roll() folds them in bulk: the same as adding each one."""
    from router.timeslots import Distribution
    for values in (sizes, times):
        one, bulk = Distribution(), Distribution()
        for v in values:
            one.add(v)
        bulk.add_many(list(values))
        assert (bulk.count, bulk.maximum, bulk.histogram) == (one.count, one.maximum, one.histogram)
        assert bulk.sum == pytest.approx(one.sum)


@given(st.lists(st.integers(min_value=0, max_value=10 ** 9)))
def test_durations_in_ns_count_in_microseconds(durations):
    """The router measures ns (integers, a table lookup each): the buckets are those of the µs values."""
    from router.timeslots import Distribution
    one, bulk = Distribution(), Distribution()
    for ns in durations:
        one.add(ns / 1000)
    bulk.add_ns_many(list(durations))
    assert (bulk.count, bulk.histogram) == (one.count, one.histogram)
    assert bulk.maximum == one.maximum and bulk.sum == pytest.approx(one.sum)
