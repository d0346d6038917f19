"""A one-line upload progress bar for ``send`` at a terminal."""

from __future__ import annotations

import time
from typing import TextIO

WIDTH = 30
MIN_BYTES = 1_000_000  # smaller files are done before a bar would help
REDRAW_SECONDS = 0.1


class ProgressBar:
    def __init__(self, total: int, stream: TextIO, clock=time.monotonic) -> None:
        self.total = max(total, 1)
        self.stream = stream
        self.clock = clock
        self.sent = 0
        self.started = clock()
        self._drawn_at = 0.0

    def __call__(self, chunk: int) -> None:
        self.sent += chunk
        now = self.clock()
        if now - self._drawn_at >= REDRAW_SECONDS or self.sent >= self.total:
            self._drawn_at = now
            self.stream.write("\r" + self.render(now))
            self.stream.flush()

    def render(self, now: float) -> str:
        share = min(1.0, self.sent / self.total)
        filled = int(share * WIDTH)
        rate = self.sent / max(now - self.started, 1e-6)
        return (
            f"[{'#' * filled}{'.' * (WIDTH - filled)}] {share:4.0%} "
            f"{self.sent / 1e6:,.1f}/{self.total / 1e6:,.1f} MB {rate / 1e6:,.1f} MB/s"
        )

    def finish(self) -> None:
        self.stream.write("\n")
        self.stream.flush()
