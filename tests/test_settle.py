"""Settle and backoff logic on an injected clock: no real time passes."""

from __future__ import annotations

from dropbox_sync.pipeline.backoff import READ_TIMEOUTS_BEFORE_HOLD, Backoff, RetryState
from dropbox_sync.pipeline.outcome import FOREIGN_REPLIES_BEFORE_HOLD
from dropbox_sync.pipeline.settle import Observation, Settler


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_a_file_settles_only_after_settle_seconds_unchanged_on_our_clock():
    clock = FakeClock()
    settler = Settler(2.0, clock)
    first = Observation(size=10, mtime_ns=5)
    assert not settler.observe("a.csv", first)
    clock.advance(1.9)
    assert not settler.observe("a.csv", first)
    clock.advance(0.1)
    assert settler.observe("a.csv", first)


def test_any_change_restarts_the_wait():
    clock = FakeClock()
    settler = Settler(2.0, clock)
    settler.observe("a.csv", Observation(10, 5))
    clock.advance(1.5)
    assert not settler.observe("a.csv", Observation(20, 6))  # grew
    clock.advance(1.5)
    assert not settler.observe("a.csv", Observation(20, 6))
    clock.advance(0.5)
    assert settler.observe("a.csv", Observation(20, 6))


def test_an_old_mtime_does_not_make_a_copy_look_settled():
    # A copy keeps its source's mtime from last year: only our clock counts.
    clock = FakeClock()
    settler = Settler(5.0, clock)
    ancient = Observation(size=100, mtime_ns=1)
    assert not settler.observe("copy.csv", ancient)
    clock.advance(4.0)
    assert not settler.observe("copy.csv", Observation(size=200, mtime_ns=1))


def test_mtime_change_alone_restarts_the_wait():
    clock = FakeClock()
    settler = Settler(1.0, clock)
    settler.observe("a.csv", Observation(10, 5))
    clock.advance(1.0)
    assert not settler.observe("a.csv", Observation(10, 6))


def test_zero_settle_is_ready_at_once():
    settler = Settler(0.0, FakeClock())
    assert settler.observe("a.csv", Observation(1, 1))


def test_adopted_observation_is_settled_until_it_changes():
    clock = FakeClock()
    settler = Settler(3.0, clock)
    settler.adopt(("claimed", "x"), Observation(5, 5))
    assert settler.observe(("claimed", "x"), Observation(5, 5))
    assert not settler.observe(("claimed", "x"), Observation(6, 6))


def test_next_check_is_when_the_soonest_file_could_settle():
    clock = FakeClock()
    settler = Settler(2.0, clock)
    assert settler.seconds_until_next_check() is None
    settler.observe("a", Observation(1, 1))
    clock.advance(0.5)
    settler.observe("b", Observation(1, 1))
    assert settler.seconds_until_next_check() == 1.5
    settler.forget_all_but({"b"})
    assert settler.seconds_until_next_check() == 2.0


def test_backoff_grows_exponentially_with_jitter_up_to_the_cap():
    backoff = Backoff(first=1.0, cap=10.0, rand=lambda: 1.0)
    assert [backoff.next_delay() for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    low = Backoff(first=1.0, cap=10.0, rand=lambda: 0.0)
    assert [low.next_delay() for _ in range(4)] == [0.5, 1.0, 2.0, 4.0]


def test_backoff_honours_retry_after_within_the_cap():
    backoff = Backoff(first=1.0, cap=30.0, rand=lambda: 0.0)
    assert backoff.next_delay(retry_after=7) == 7
    assert backoff.next_delay(retry_after=3600) == 30
    backoff.reset()
    assert backoff.next_delay() == 0.5


def test_an_earlier_look_counts_toward_settling_by_the_same_rule():
    """``once`` looks at its inboxes before its imports (discover.FirstLook): that look is
    an observation like any other, so an unchanged file has settled sooner, and a file that
    changed since is watched from its change, never from the look."""
    clock = FakeClock()
    settler = Settler(2.0, clock)
    looked_at = clock.now
    clock.advance(2.0)
    settler.seen("a.csv", Observation(10, 5), looked_at)
    settler.seen("b.csv", Observation(10, 5), looked_at)
    assert settler.observe("a.csv", Observation(10, 5)), "unchanged since the look, settle_seconds ago"
    assert not settler.observe("b.csv", Observation(11, 6)), "changed since the look: the wait starts again"
    clock.advance(1.9)
    assert not settler.observe("b.csv", Observation(11, 6))


def test_an_earlier_look_never_replaces_a_later_observation():
    clock = FakeClock()
    settler = Settler(2.0, clock)
    settler.observe("a.csv", Observation(10, 5))
    settler.seen("a.csv", Observation(10, 5), clock.now - 60)
    assert not settler.observe("a.csv", Observation(10, 5)), "the worker's own look comes first"


def test_a_streak_of_read_timeouts_or_foreign_replies_holds_only_in_a_row():
    """Retrying stops helping after so many read timeouts (the server needs longer) or replies
    not from Infiniti (it may have imported the file) in a row; any other fault breaks the run."""
    streak = RetryState()
    for _ in range(READ_TIMEOUTS_BEFORE_HOLD - 1):
        assert streak.failed("timed out", read_timeout=True, foreign=False, timeout=60) is None
    assert streak.failed("HTTP 503", read_timeout=False, foreign=False, timeout=60) is None, "a 503 breaks the run"
    for _ in range(READ_TIMEOUTS_BEFORE_HOLD - 1):
        assert streak.failed("timed out", read_timeout=True, foreign=False, timeout=60) is None
    hold = streak.failed("timed out", read_timeout=True, foreign=False, timeout=60)
    assert hold is not None and f"{READ_TIMEOUTS_BEFORE_HOLD} times in a row" in hold and "(now 60 s)" in hold
    foreign = RetryState()
    for _ in range(FOREIGN_REPLIES_BEFORE_HOLD - 1):
        assert foreign.failed("not an Infiniti import reply", read_timeout=False, foreign=True, timeout=60) is None
    hold = foreign.failed("not an Infiniti import reply", read_timeout=False, foreign=True, timeout=60)
    assert hold is not None and "may have been imported" in hold
