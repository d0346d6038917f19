"""One process works an inbox at a time: a lock per inbox, in the state dir.

Without it a technician's ``once`` run while the service runs takes the file
the service has claimed for a crash leftover and posts it again (issue 11).
The lock is an OS file lock (``filelock``: ``fcntl.flock`` on POSIX,
``msvcrt.locking`` on Windows), so the OS lets go of it when its process ends
in any way, kill -9 included: there is never a stale lock to clean up. It lives
in the state dir, never in the inbox, which other people and programs write.
Beside it, ``<lock>.json`` says who holds it (pid, command line, since when),
so a second process can tell the technician which one to stop. The notifier
takes one the same way for ``notify.json``, so only one process mails what is
queued there.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from dropbox_sync.errors import StateFileDamaged
from dropbox_sync.paths import LOCK_DIR
from dropbox_sync.pipeline import workfiles
from dropbox_sync.redact import scrub
from dropbox_sync.state import statefiles
from dropbox_sync.when import iso_utc


@dataclass(frozen=True)
class Holder:
    pid: int | None
    command: str
    since: str
    host: str

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}, '{self.command}', since {self.since}"


class InboxLock:
    """The lock of one inbox folder (keyed by its path: two configs sharing a folder share it)."""

    def __init__(self, state_dir: Path, name: str, folder: Path) -> None:
        key = hashlib.sha256(os.path.normcase(str(folder)).encode("utf-8", "surrogateescape")).hexdigest()[:16]
        readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:40]
        self.path = state_dir / LOCK_DIR / f"{readable}-{key}.lock"
        self.info_path = self.path.with_name(self.path.name + ".json")
        # thread_local=False: the pipeline takes it in one thread and may release it in another.
        self._lock = FileLock(str(self.path), thread_local=False)

    @property
    def held(self) -> bool:
        """Held by this process."""
        return self._lock.is_locked

    def _take(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            return False
        return True

    def acquire(self) -> bool:
        """Take the lock if no other process holds it, and say who we are; never waits."""
        if self._lock.is_locked:
            return True
        if not self._take():
            return False
        try:
            workfiles.write_json_atomically(
                self.info_path,
                {
                    "pid": os.getpid(),
                    "command": _command_line(),
                    "host": socket.gethostname(),
                    "since": iso_utc(dt.datetime.now(dt.UTC)),
                },
            )
        except OSError:
            pass  # only the "who holds it" note is missing; the lock itself is held
        return True

    def release(self) -> None:
        if not self._lock.is_locked:
            return
        self.info_path.unlink(missing_ok=True)
        self._lock.release()

    def holder(self) -> Holder | None:
        """Who holds it, as that process wrote it down (None if it did not, or it is unreadable)."""
        try:
            data = statefiles.load_json_object(self.info_path)
        except StateFileDamaged:
            return None
        if data is None:
            return None
        pid = data.get("pid")
        return Holder(
            pid if type(pid) is int else None,
            _text(data.get("command")),
            _text(data.get("since")),
            _text(data.get("host")),
        )

    def held_elsewhere(self) -> Holder | None:
        """Who else holds it now, for ``status``; None if nobody does (probed by taking it for an instant)."""
        if self._lock.is_locked:
            return None
        try:
            free = self._take()
        except OSError:  # a state dir this user may not write: the note is all we have
            return self.holder()
        if free:
            self.release()  # also removes a note left by a process that was killed
            return None
        return self.holder() or Holder(None, "unknown", "unknown", "unknown")


def _text(value: object) -> str:
    return value if isinstance(value, str) else "unknown"


def _command_line() -> str:
    words = [Path(sys.argv[0]).name if sys.argv else "python", *sys.argv[1:]]
    if words[0] in ("__main__.py", "-m", "-c"):
        words[0] = "dropbox-sync"
    return scrub(" ".join(words))[:300]
