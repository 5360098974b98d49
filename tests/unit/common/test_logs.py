"""The one budget for repeated log lines (common/logs.py LogLimit, used by the router, the front and
the CURVE guard), and the one log setup: pure, time passed in."""

import logging

from common import logs
from common.logs import LogLimit


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


def test_one_line_per_kind_and_interval_says_how_many_were_left_out():
    limit = LogLimit(burst=1, period=10.0)  # as the CURVE guard and the front's 403s use it
    assert limit.line("wrong", "! refused a peer from a: wrong", 0.0) == "! refused a peer from a: wrong"
    assert limit.line("wrong", "! refused a peer from b: wrong", 1.0) is None   # within 10 s: counted
    assert limit.line("none", "! refused a peer from c: none", 2.0) is not None  # another kind: its own line
    assert limit.line("wrong", "! refused a peer from d: wrong", 10.5) == \
        "! refused a peer from d: wrong (1 more like this not logged)"


def test_the_router_the_front_and_the_guard_share_the_one_limit():
    import common.wire
    import router.front.server
    import router.router

    assert router.router.LogLimit is LogLimit
    assert common.wire.LogLimit is LogLimit
    assert router.front.server.LogLimit is LogLimit
    assert not hasattr(common.wire, "RefusalLog")


def test_setup_is_one_handler_in_the_common_format_however_often_it_is_called():
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logs.setup(0)
        logs.setup(1)  # a worker process set up again after its pool: still one handler
        assert len(root.handlers) == 1 and root.level == logging.DEBUG
        assert root.handlers[0].formatter._fmt == logs.FORMAT
        assert "%(process)d" in logs.FORMAT
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
