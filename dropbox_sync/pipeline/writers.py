"""Is another program still writing this file? The signals the OS gives, on top of settling.

Settling (settle.py) only sees size and mtime: a writer that pauses longer than
``settle_seconds`` with the file still open looks finished. On Linux two
signals say more, and each is only a hint combined with settling, never a
replacement for it (writers close and reopen):

* inotify close-write (watchdog's ``FileClosedEvent``): a file modified since
  its last close-write is still being written (``WriteTracker``). Only the
  native Linux observer delivers it; events can be lost on a queue overflow,
  so a mark without news for ``SILENT_WRITER_SECONDS`` is dropped.
* a read lease (``fcntl(F_SETLEASE, F_RDLCK)``): the kernel refuses it with
  EAGAIN while any process has the file open for writing (fcntl(2), "Leases").
  It needs ownership of the file or CAP_LEASE (granted in the systemd unit),
  and is asked only on local file systems: on CIFS/NFS it says nothing about
  writers on other machines (``open_for_writing``).

After the upload and after archiving, the file's size and mtime are compared
again (``Aftercare``), so a writer that no signal caught is still noticed.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path

from loguru import logger
from watchdog.events import (
    FileClosedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
)

from dropbox_sync.pipeline import archive, archive_names
from dropbox_sync.pipeline.settle import Clock, Observation, Settler

# A modify without its close-write for this long: the close event was lost
# (inotify overflow) or the writer hung; stop waiting for it, and say so.
SILENT_WRITER_SECONDS = 600.0
# How long an archived file is watched for a writer that was still at it.
AFTERCARE_SECONDS = 3600.0
AFTERCARE_MAX_FILES = 1000


def open_for_writing(path: Path) -> bool | None:
    """True if some process has ``path`` open for writing, False if none has,
    None if this system cannot tell (not Linux, no CAP_LEASE, a network mount)."""
    if not sys.platform.startswith("linux"):
        return None
    import fcntl  # POSIX only

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        # If a writer opens the file in the instant we hold the lease, the kernel
        # signals us (SIGIO by default, whose default action ends the process).
        # SIGURG is ignored by default, so a lease break can never kill us.
        fcntl.fcntl(fd, fcntl.F_SETSIG, signal.SIGURG)
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    except OSError as exc:
        # EAGAIN: open for writing somewhere. EACCES/EPERM: neither owner nor
        # CAP_LEASE. EINVAL: the file system has no leases.
        return True if exc.errno == errno.EAGAIN else None
    else:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
        return False
    finally:
        os.close(fd)


class WriteTracker:
    """Files of one inbox modified and not closed since (fed by the inotify observer)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._modified: dict[str, float] = {}  # name -> our clock at its last modification

    def notice(self, event: FileSystemEvent) -> None:
        """Called from watchdog's thread for every event of the inbox folder."""
        if event.is_directory:
            return
        name = os.path.basename(os.fsdecode(event.src_path))
        with self._lock:
            if isinstance(event, FileModifiedEvent):
                self._modified[name] = self._clock()
            elif isinstance(event, (FileClosedEvent, FileDeletedEvent, FileMovedEvent)):
                self._modified.pop(name, None)
                if isinstance(event, FileMovedEvent):  # renamed over: written under another name
                    self._modified.pop(os.path.basename(os.fsdecode(event.dest_path)), None)

    def writing(self, name: str) -> bool | None:
        """True if modified since its last close-write; None if that mark went stale."""
        with self._lock:
            since = self._modified.get(name)
            if since is None:
                return False
            if self._clock() - since < SILENT_WRITER_SECONDS:
                return True
            del self._modified[name]
            return None

    def forget(self, name: str) -> None:
        with self._lock:
            self._modified.pop(name, None)


WRITING = "open for writing in another program (still being written)"


class WriterGate:
    """Settling, plus what the OS says about writers, for the files of one inbox."""

    def __init__(
        self,
        inbox: str,
        folder: Path,
        settler: Settler,
        clock: Clock,
        probe: Callable[[Path], bool | None],
        *,
        probe_enabled: bool,
    ) -> None:
        self._inbox, self._folder, self._settler = inbox, folder, settler
        self._probe = probe if probe_enabled else None
        self.writes = WriteTracker(clock)  # fed by the inotify observer (Pipeline.run)

    def settled(
        self, key: Hashable, path: Path, observation: Observation, *, probe: bool = True
    ) -> tuple[bool, str | None]:
        """Unchanged for settle_seconds and no writer known to have it open; else why not.
        ``probe=False`` (a scan): the OS is asked only about a file inotify marks as written;
        the others are asked once, right before their claim, where the answer counts."""
        marked = self.writes.writing(path.name) if path.parent == self._folder else False
        if marked is None:
            logger.warning(
                'inbox "{}": {} was modified but its writer has not closed it for {:g} s; going by settling alone',
                self._inbox,
                archive_names.display_name(path.name),
                SILENT_WRITER_SECONDS,
            )
        if not (self._settler.observe(key, observation, writing=bool(marked)) or marked):
            return False, None
        # The lease is asked only at the last step (it opens the file), and while a mark stands.
        held_open = self._probe(path) if self._probe is not None and (probe or marked) else None
        if held_open is False and marked:
            self.writes.forget(path.name)  # its close event was lost, or is on its way
        elif held_open or (held_open is None and marked):
            self._settler.observe(key, observation, writing=True)
            return False, WRITING
        return self._settler.observe(key, observation), None

    def still_written(self, path: Path) -> bool:
        """After an upload: does a writer have it open right now (as far as the OS can say)?"""
        return bool(self._probe(path)) if self._probe is not None else False


@dataclass(frozen=True)
class Watched:
    path: Path
    observation: Observation
    until: float


class Aftercare:
    """Archived files, watched for a while in case their writer was still at it."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._watched: dict[Path, Watched] = {}

    def watch(self, path: Path, observation: Observation | None) -> None:
        if observation is None:
            return
        if len(self._watched) >= AFTERCARE_MAX_FILES:
            del self._watched[min(self._watched, key=lambda p: self._watched[p].until)]
        self._watched[path] = Watched(path, observation, self._clock() + AFTERCARE_SECONDS)

    def moved_on(self, observe: Callable[[Path], Observation | None]) -> list[tuple[Watched, Observation]]:
        """Archived files whose size or mtime changed since they were archived."""
        now, changed = self._clock(), []
        for path, watched in list(self._watched.items()):
            current = observe(path)
            if current is None or now >= watched.until:
                del self._watched[path]  # pruned, moved by a person, or watched long enough
            elif current != watched.observation:
                del self._watched[path]
                changed.append((watched, current))
        return changed

    def reclaim_moved_on(self, inbox: str, observe: Callable[[Path], Observation | None]) -> None:
        """An archived file that changed after it was sent: its writer was still at it.
        Say so loudly and take it back into ``sending/``, where it settles and goes first."""
        for watched, current in self.moved_on(observe):
            path = watched.path
            where = f"{path.parent.name}/{archive_names.display_name(path.name)}"
            try:
                archive.take_back(path)
            except OSError as exc:
                logger.error(
                    'inbox "{}": {} changed after it was imported ({} -> {} bytes), and cannot be '
                    "sent again ({}); import it by hand once complete",
                    inbox,
                    where,
                    watched.observation.size,
                    current.size,
                    exc.strerror or exc,
                )
                continue
            logger.error(
                'inbox "{}": {} CHANGED AFTER IT WAS IMPORTED ({} -> {} bytes): its writer was '
                "still writing, so only part of it was imported. The complete file is sent again "
                "once it settles; the first result stays beside where it was.",
                inbox,
                where,
                watched.observation.size,
                current.size,
            )
