"""How one inbox's worker is doing: its snapshot for status.json, sd_notify and the service,
and its signs of life (when it last did something, and what is on the wire).

The service's watchdog (runner.py) restarts a worker that is ``wedged``: silent for far
longer than its own schedule allows (three rescans and a minute), plus the deadline of
the upload on the wire, so a large file on a slow line is never taken for a hang.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dropbox_sync.pipeline.settle import Clock


@dataclass(frozen=True)
class InboxSnapshot:
    """How one inbox is doing right now (for status.json, sd_notify, the service)."""

    name: str
    path: Path
    folder_missing: bool
    held: str | None  # why the inbox is paused, if it is
    waiting: dict[str, str]  # file -> why it has not been sent yet
    uploading: str | None  # the file on the wire now
    seconds_since_beat: float  # since the worker last finished or started something


@dataclass
class Health:
    clock: Clock
    rescan_seconds: float
    beat: float = field(init=False)  # our clock when the worker last started or finished something
    uploading: str | None = None  # the file on the wire now
    upload_deadline: float = 0.0  # seconds the upload on the wire may take in all

    def __post_init__(self) -> None:
        self.beat = self.clock()

    def alive(self) -> None:
        self.beat = self.clock()

    def upload(self, original: str | None, deadline: float = 0.0) -> None:
        """``original`` goes on the wire with ``deadline`` seconds in all (None: it is off it)."""
        self.beat, self.uploading, self.upload_deadline = self.clock(), original, deadline

    def since_beat(self) -> float:
        return self.clock() - self.beat

    def wedged(self) -> bool:
        """True if the worker has given no sign of life for far longer than it should."""
        allowed = 3 * self.rescan_seconds + 60
        if self.uploading is not None:
            allowed += self.upload_deadline
        return self.since_beat() > allowed
