"""Deciding when a file has stopped changing: pure logic on an injected clock.

A file is settled when its size and mtime were the same in observations that
span ``settle_seconds`` of OUR clock. "Now minus mtime" is never used: a copy
keeps its source's old mtime, so it would look settled while still being
written (DESIGN §8.2; Camel CAMEL-19378, kopia #2227).
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

Clock = Callable[[], float]


@dataclass(frozen=True)
class Observation:
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, info: os.stat_result) -> Observation | None:
        """A regular file's size and mtime, from its ``lstat``; None for anything else."""
        return cls(info.st_size, info.st_mtime_ns) if stat.S_ISREG(info.st_mode) else None


@dataclass
class _Tracked:
    observation: Observation
    unchanged_since: float


class Settler:
    """Remembers the last observation of each file and when it last changed."""

    def __init__(self, settle_seconds: float, clock: Clock = time.monotonic) -> None:
        self.settle_seconds = settle_seconds
        self.clock = clock
        self._tracked: dict[Hashable, _Tracked] = {}

    def observe(self, key: Hashable, observation: Observation, *, writing: bool = False) -> bool:
        """Record what the file looks like now; True once it has settled.

        ``writing``: the OS says a writer still has it open (writers.py); that
        counts as a change, so settling starts again once the writer is done."""
        now = self.clock()
        tracked = self._tracked.get(key)
        if writing or tracked is None or tracked.observation != observation:
            self._tracked[key] = _Tracked(observation, now)
            return self.settle_seconds <= 0 and not writing
        return now - tracked.unchanged_since >= self.settle_seconds

    def seen(self, key: Hashable, observation: Observation, at: float) -> None:
        """An earlier look at a file not tracked yet, taken by ``at`` on this clock: settling
        counts from then (the same rule, only an earlier first observation)."""
        self._tracked.setdefault(key, _Tracked(observation, at))

    def adopt(self, key: Hashable, observation: Observation) -> None:
        """Track ``observation`` as already settled (a file renamed after settling)."""
        self._tracked[key] = _Tracked(observation, self.clock() - self.settle_seconds)

    def forget(self, key: Hashable) -> None:
        self._tracked.pop(key, None)

    def forget_all_but(self, keys: set) -> None:
        """Drop files that are gone, so the memory follows the folder."""
        for key in list(self._tracked):
            if key not in keys:
                del self._tracked[key]

    def seconds_until_next_check(self) -> float | None:
        """How long until the soonest tracked file could be settled (None: nothing tracked)."""
        if not self._tracked:
            return None
        now = self.clock()
        soonest = min(t.unchanged_since for t in self._tracked.values()) + self.settle_seconds
        return max(0.0, soonest - now)

    def unchanged_for(self, key: Hashable) -> float | None:
        tracked = self._tracked.get(key)
        return None if tracked is None else self.clock() - tracked.unchanged_since
