"""How long to wait before trying an upload again (pure logic, injectable randomness), and
the state of a streak of failed attempts: when a streak stops being worth retrying.

Exponential backoff with "full jitter" spreads the retries of many schools
hitting one recovering server; a server's ``Retry-After`` wins when it asks for
longer (it knows its own load).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from dropbox_sync.pipeline.outcome import FOREIGN_REPLIES_BEFORE_HOLD, foreign_hold_reason

READ_TIMEOUTS_BEFORE_HOLD = 3


@dataclass
class RetryState:
    """The current streak of failed attempts of an inbox's first file (all zero: none)."""

    due: float = 0.0  # monotonic time of the next attempt
    attempts: int = 0
    read_timeouts: int = 0
    foreign_replies: int = 0  # in a row; see outcome.is_foreign
    since: float | None = None  # first failure of the current streak

    def failed(self, reason: str, *, read_timeout: bool, foreign: bool, timeout: float) -> str | None:
        """One more passing fault in the streak; the reason to hold the inbox instead of trying
        again, when the streak says retrying will not help: a reply not from Infiniti (it may
        have imported the file) or read timeouts (the server needs longer), each in a row."""
        self.read_timeouts = self.read_timeouts + 1 if read_timeout else 0
        self.foreign_replies = self.foreign_replies + 1 if foreign else 0
        if self.foreign_replies >= FOREIGN_REPLIES_BEFORE_HOLD:
            return foreign_hold_reason(reason)
        if self.read_timeouts >= READ_TIMEOUTS_BEFORE_HOLD:
            return (
                f"{reason}, {self.read_timeouts} times in a row: the server may need longer "
                f"to import this file; raise 'timeout' (now {timeout:g} s)"
            )
        return None


class Backoff:
    def __init__(
        self,
        *,
        first: float = 1.0,
        cap: float = 300.0,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.first = first
        self.cap = cap
        self.rand = rand
        self.failures = 0

    def next_delay(self, retry_after: float | None = None) -> float:
        """The wait before the next attempt, after one more failure."""
        ceiling = min(self.cap, self.first * 2**self.failures)
        self.failures += 1
        # Half fixed, half random: never hammer at once, never wait much less
        # than the exponential step.
        delay = ceiling / 2 + self.rand() * ceiling / 2
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.cap))
        return delay

    def reset(self) -> None:
        self.failures = 0
