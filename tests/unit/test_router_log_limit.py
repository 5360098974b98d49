"""The router's budget for refusal log lines (router/router.py LogLimit): pure, time passed in."""

from router.router import LogLimit


def test_a_flood_of_one_kind_is_cut_to_the_burst_and_the_next_line_says_how_many_were_left_out():
    limit = LogLimit(burst=3, period=10.0)
    assert [limit.allow("reset", 0.0 + i / 100) for i in range(1000)][:4] == [0, 0, 0, None]
    assert sum(limit.allow("reset", 5.0) is not None for _ in range(100)) == 0
    assert limit.allow("reset", 10.5) == 997 + 100  # a new period: the count of what was left out
    assert limit.allow("reset", 10.6) == 0


def test_kinds_have_their_own_budget():
    limit = LogLimit(burst=1, period=10.0)
    assert limit.allow("reset", 0.0) == 0 and limit.allow("reset", 0.1) is None
    assert limit.allow("gone", 0.1) == 0  # another kind is not silenced by the flood


def test_the_table_of_kinds_stays_small():
    limit = LogLimit(burst=1, period=10.0)
    for i in range(5000):
        limit.allow(f"kind-{i}", 0.0)
    assert len(limit._windows) <= 1001
