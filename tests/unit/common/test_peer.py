"""The peer state machine (common/peer.py) in-process: every restart and silence case, time passed in."""

from __future__ import annotations

import logging

import pytest

from common import codec
from common.peer import (
    HELLO_RETRY_MAX,
    HELLO_RETRY_MIN,
    NO_ANSWER_WARN,
    Dropped,
    Frame,
    Lost,
    OneSession,
    Peer,
    Ready,
    Send,
    Sends,
    Welcomed,
    backoff,
)
from common.wire import (
    CLOSE,
    DROP,
    HEARTBEAT_INTERVAL,
    HELLO,
    MSG,
    OPEN,
    PACKED,
    PEER_TIMEOUT,
    PING,
    PONG,
    RESET,
    SENDS,
    WELCOME,
    pack_pairs,
)

URL = "tcp://127.0.0.1:5556"
INFO = {"role": "worker", "name": "w", "pid": 1, "host": "h"}


def sent(events: list) -> list[list[bytes]]:
    return [e.frames for e in events if isinstance(e, Send)]


def kinds(events: list) -> list[bytes]:
    return [e.frames[0] for e in events if isinstance(e, Send)]


def others(events: list) -> list:
    return [e for e in events if not isinstance(e, Send)]


def joined(now: float = 0.0, epoch: bytes = b"e1") -> Peer:
    peer = Peer(INFO, URL)
    assert kinds(peer.start(now)) == [HELLO]
    assert peer.on_message([WELCOME, epoch], now) == [Welcomed(epoch)]
    return peer


# ---- backoff


def test_backoff_doubles_up_to_the_cap_with_jitter_from_the_injected_value():
    assert backoff(0, 0.0) == HELLO_RETRY_MIN / 2
    assert [backoff(n, 0.999999) for n in range(3)] == pytest.approx([0.1, 0.2, 0.4], rel=1e-4)
    assert backoff(50, 0.5) == pytest.approx(HELLO_RETRY_MAX * 0.75)
    assert backoff(10**6, 1.0) <= HELLO_RETRY_MAX  # no overflow, never past the cap
    assert backoff(3, 0.2) == backoff(3, 0.2)  # pure
    assert backoff(3, -5) == backoff(3, 0.0) and backoff(3, 7) == backoff(3, 1.0)


# ---- joining


def test_hello_carries_the_info_and_is_retried_with_backoff_while_no_answer():
    peer = Peer(INFO, URL, rand=lambda: 0.0)
    (hello,) = sent(peer.start(0.0))
    assert hello[0] == HELLO and codec.loads(hello[1]) == {**INFO, "packed": True}  # it reads packed SENDS
    times, now = [], 0.0
    while now < 10:
        now = peer.deadline()
        if kinds(peer.tick(now)) == [HELLO]:
            times.append(now)
    gaps = [b - a for a, b in zip([0.0, *times], times)]
    assert gaps[:4] == pytest.approx([0.05, 0.1, 0.2, 0.4])  # doubling from HELLO_RETRY_MIN (jitter 0.5)
    assert max(gaps) <= HELLO_RETRY_MAX and gaps[-1] == pytest.approx(HELLO_RETRY_MAX / 2)
    assert not peer.welcomed


def test_nothing_but_hello_is_sent_before_the_welcome_and_router_traffic_is_ignored():
    peer = Peer(INFO, URL)
    peer.start(0.0)
    for frames in ([PONG, b"e1"], [RESET], [SENDS, b"x", b"1"], [DROP, b"1", b"why"]):
        assert peer.on_message(frames, 0.5) == []
    assert kinds(peer.tick(peer.deadline())) == [HELLO]


def test_no_welcome_for_a_while_is_logged_clearly_and_not_at_every_retry(caplog):
    peer = Peer(INFO, URL, log=logging.getLogger("test.peer"))
    with caplog.at_level(logging.WARNING, "test.peer"):
        peer.start(0.0)
        now = 0.0
        while now < 100:
            now = peer.deadline()
            peer.tick(now)
    lines = [r.getMessage() for r in caplog.records if "no answer" in r.getMessage()]
    assert lines[0] == (f"! no answer from the router at {URL} after {NO_ANSWER_WARN:.0f} s: is it running, "
                        "and does it hold the same cluster secret?")
    assert 2 <= len(lines) <= 5  # 10, 20, 40, 80 s: not one per HELLO
    caplog.clear()
    with caplog.at_level(logging.INFO, "test.peer"):
        assert peer.on_message([WELCOME, b"e1"], now) == [Welcomed(b"e1")]
    assert f"welcomed by the router at {URL}" in caplog.text


def test_welcomed_peer_pings_every_interval():
    peer = joined(0.0)
    assert peer.deadline() == pytest.approx(HEARTBEAT_INTERVAL)
    assert kinds(peer.tick(HEARTBEAT_INTERVAL)) == [PING]
    assert peer.tick(HEARTBEAT_INTERVAL + 0.1) == []
    peer.on_message([PONG, b"e1"], HEARTBEAT_INTERVAL + 0.1)
    assert kinds(peer.tick(2 * HEARTBEAT_INTERVAL)) == [PING]


# ---- every way of losing the router


def test_router_restart_seen_in_a_pong_with_a_new_epoch():
    peer = joined()
    events = peer.on_message([PONG, b"e2"], 1.0)
    assert isinstance(events[0], Lost) and "epoch changed (e1 -> e2)" in events[0].reason
    assert kinds(events) == [HELLO] and not peer.welcomed
    assert peer.on_message([WELCOME, b"e2"], 1.1) == [Welcomed(b"e2")] and peer.epoch == b"e2"


def test_a_welcome_of_another_epoch_while_welcomed_starts_over():
    peer = joined()
    events = peer.on_message([WELCOME, b"e2"], 1.0)
    assert isinstance(events[0], Lost) and kinds(events) == [HELLO]
    assert peer.on_message([WELCOME, b"e2"], 1.1) == [Welcomed(b"e2")]


def test_repeated_welcome_of_the_same_epoch_is_the_answer_to_a_repeated_hello():
    peer = joined()
    assert peer.on_message([WELCOME, b"e1"], 1.0) == []
    assert peer.welcomed and peer.epoch == b"e1"


def test_reset_means_the_router_does_not_know_us():
    peer = joined()
    events = peer.on_message([RESET], 1.0)
    assert others(events) == [Lost("the router does not know us (RESET)")] and kinds(events) == [HELLO]
    assert peer.on_message([RESET], 1.1) == []  # already saying HELLO: no second loss
    assert peer.on_message([WELCOME, b"e1"], 1.2) == [Welcomed(b"e1")]  # the same router, welcomed again


def test_silence_past_the_timeout_is_a_lost_router():
    peer = joined(0.0)
    now, pings = 0.0, 0
    while True:
        now = peer.deadline()
        events = peer.tick(now)
        if any(isinstance(e, Lost) for e in events):
            break
        pings += kinds(events).count(PING)  # unanswered
    assert now == pytest.approx(PEER_TIMEOUT) and pings == PEER_TIMEOUT / HEARTBEAT_INTERVAL - 1
    assert isinstance(events[0], Lost) and "no traffic from the router" in events[0].reason
    assert kinds(events) == [HELLO]


def test_any_router_traffic_keeps_the_link_alive():
    peer = joined(0.0)
    for t in range(1, 10):  # SENDS only, no PONG: still alive
        assert peer.on_message([SENDS, b"f", b"1"], float(t)) == [Sends([(b"f", b"1")])]
        assert not [e for e in peer.tick(t + 0.5) if isinstance(e, Lost)]


def test_pause_then_resume_of_the_router_rejoins_the_same_incarnation():
    """SIGSTOP of the router: silence, HELLO retries (with the warning), then its queued answers arrive."""
    peer = joined(0.0)
    now, losses, hellos = 0.0, 0, 0
    while now < 30.0:  # a 30 s pause
        now = peer.deadline()
        events = peer.tick(now)
        losses += sum(isinstance(e, Lost) for e in events)
        hellos += kinds(events).count(HELLO)
    assert losses == 1 and hellos > 10
    # SIGCONT: the router answers the PINGs it had queued, then the HELLOs, all with its epoch
    assert peer.on_message([PONG, b"e1"], now) == []
    assert peer.on_message([WELCOME, b"e1"], now) == [Welcomed(b"e1")]
    assert peer.on_message([WELCOME, b"e1"], now) == []  # the other queued HELLOs' answers
    assert peer.welcomed and kinds(peer.tick(peer.deadline())) == [PING]


def test_pause_of_the_peer_itself_recovers_through_reset():
    """This process was stopped: the router dropped it; stale messages arrive, then its PING gets RESET."""
    peer = joined(0.0)
    assert peer.on_message([PONG, b"e1"], 40.0) == []  # queued while we were stopped
    assert kinds(peer.tick(40.0)) in ([], [PING])
    events = peer.on_message([RESET], 40.1)
    assert isinstance(events[0], Lost) and kinds(events) == [HELLO]


def test_drop_of_a_session_is_reported_and_malformed_messages_are_ignored(caplog):
    peer = joined()
    assert peer.on_message([DROP, b"7", b"too big"], 1.0) == [Dropped(b"7", b"too big")]
    assert peer.on_message([DROP, b"8"], 1.0) == [Dropped(b"8", b"")]
    with caplog.at_level(logging.WARNING):
        for junk in ([], [b"bogus"], [b"send", b"x", b"1"], [SENDS], [SENDS, b"x"], [SENDS, b"x", b"1", b"y"],
                     [DROP], [WELCOME], [WELCOME, b"a", b"b"], [PONG], [RESET, b"extra"], [DROP, b"1", b"r", b"x"]):
            assert peer.on_message(junk, 1.0) == []
    assert caplog.text.count("malformed message from the router") == 12
    assert peer.welcomed and peer.epoch == b"e1"


# ---- one session (a worker, the notifier)


def one_session(now: float = 0.0) -> OneSession:
    link = OneSession(Peer(INFO, URL))
    assert kinds(link.start(now)) == [HELLO]
    events = link.on_message([WELCOME, b"e1"], now)
    assert sent(events) == [[OPEN, b"1"]] and others(events) == [Ready(b"1")]
    return link


def test_one_session_opens_after_welcome_and_gets_the_frames_that_name_it():
    link = OneSession(Peer(INFO, URL))
    link.start(0.0)
    assert link.messages([b"x"]) is None and not link.is_open  # nothing sent before the session is open
    link.on_message([WELCOME, b"e1"], 0.0)
    events = link.on_message([SENDS, b"a", b"1", b"b", b"2", b"c", b"3,1", b"d", b"11"], 0.1)
    assert events == [Frame(b"a"), Frame(b"c")]
    assert link.messages([b"x", b"y"]) == [MSG, b"1", b"x", b"1", b"y"]
    assert link.close() == [CLOSE, b"1"] and link.close() is None


def test_a_session_packs_its_frames_once_its_router_packed_a_sends_until_it_joins_again():
    """An older router reads no packed MSG: a peer packs only after a packed SENDS showed that this router
    knows the format, and forgets it when it joins again (maybe another router)."""
    link = OneSession(Peer(INFO, URL))
    link.start(0.0)
    link.on_message([WELCOME, b"e1"], 0.0)
    assert link.messages([b"x", b"y"]) == [MSG, b"1", b"x", b"1", b"y"]  # nothing known yet: plain pairs
    events = link.on_message([SENDS, PACKED, pack_pairs([(b"a", b"1"), (b"b", b"2"), (b"c", b"1")])], 0.1)
    assert events == [Frame(b"a"), Frame(b"c")]
    assert link.messages([b"x", b"y"]) == [MSG, PACKED, pack_pairs([(b"1", b"x"), (b"1", b"y")])]
    assert link.messages([b"z"]) == [MSG, b"1", b"z"]  # one frame: nothing to gain
    link.on_message([RESET], 0.2)  # joins again
    link.on_message([WELCOME, b"e2"], 0.3)
    assert link.messages([b"x", b"y"]) == [MSG, link.sid, b"x", link.sid, b"y"]


def test_a_damaged_packed_sends_is_logged_and_still_counts_as_a_sends(caplog):
    peer = joined()
    with caplog.at_level(logging.WARNING):
        assert peer.on_message([SENDS, PACKED, b"\x00\x00\x00\x09abc"], 0.1) == [Sends([])]
    assert "ignoring the frames of a SENDS" in caplog.text


@pytest.mark.parametrize("how", ["reset", "pong-epoch", "welcome-epoch", "silence"])
def test_one_session_is_lost_then_opened_again_on_every_restart(how):
    link = one_session(0.0)
    if how == "reset":
        events = link.on_message([RESET], 1.0)
    elif how == "pong-epoch":
        events = link.on_message([PONG, b"e2"], 1.0)
    elif how == "welcome-epoch":
        events = link.on_message([WELCOME, b"e2"], 1.0)
    else:
        events, now = [], 0.0
        while not any(isinstance(e, Lost) for e in events):
            now = link.deadline()
            events = link.tick(now)
    assert [type(e) for e in others(events)] == [Lost] and kinds(events) == [HELLO]
    assert not link.is_open and link.messages([b"x"]) is None
    assert link.on_message([SENDS, b"stale", b"1"], 1.1) == []  # frames of the void session are not ours
    events = link.on_message([WELCOME, b"e2"], 50.0)
    assert sent(events) == [[OPEN, b"1"]] and others(events) == [Ready(b"1")]  # the new router knows no session


def test_one_session_dropped_is_reopened_later_under_a_new_sid():
    link = one_session(0.0)
    assert link.on_message([DROP, b"9", b"not ours"], 1.0) == []  # another sid: ignored
    events = link.on_message([DROP, b"1", b"testing"], 1.0)
    assert events == [Lost("dropped by the router: testing")] and not link.is_open
    assert link.on_message([SENDS, b"late", b"1"], 1.1) == []
    assert link.deadline() <= 2.0
    link.on_message([PONG, b"e1"], 1.9)
    assert [e for e in link.tick(1.9) if not isinstance(e, Send)] == []
    assert link.deadline() == pytest.approx(2.0)  # the reopen is due before the next PING
    events = link.tick(2.0)
    assert [OPEN, b"2"] in sent(events) and Ready(b"2") in events
    assert link.on_message([SENDS, b"new", b"2", b"old", b"1"], 2.1) == [Frame(b"new")]
    assert kinds(link.start(3.0)) == [HELLO]  # (start again is a HELLO, nothing else)


def test_one_session_dropped_then_router_lost_waits_for_the_welcome():
    link = one_session(0.0)
    link.on_message([DROP, b"1", b"x"], 1.0)
    events = link.on_message([RESET], 1.2)
    assert others(events) == [] and kinds(events) == [HELLO]  # the loss was already reported
    assert link.deadline() < 10  # the HELLO retries, not a reopen in the past: no busy loop
    assert not [e for e in link.tick(2.5) if isinstance(e, Ready)]  # not welcomed: no OPEN
    events = link.on_message([WELCOME, b"e1"], 3.0)
    assert sent(events) == [[OPEN, b"2"]] and others(events) == [Ready(b"2")]
