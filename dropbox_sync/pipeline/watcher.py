"""Finding files: a full scan is the truth, watchdog events only wake us early.

Events get lost (Windows buffer overflow, inotify queue overflow, SMB and NFS
mounts that deliver none at all, DESIGN §8.3), so every decision comes from
``scan``; an event merely shortens the wait before the next scan. Observers
are supervised: a dead observer or emitter thread, or a watch on a folder that
went away, is rebuilt by ``Watcher.supervise`` (watchdog #427, #793, #1065).
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re
import stat
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from loguru import logger
from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirModifiedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)

from dropbox_sync.config import InboxConfig
from dropbox_sync.pipeline.settle import Observation

if TYPE_CHECKING:
    from watchdog.observers.api import BaseObserver, ObservedWatch

NETWORK_FILESYSTEMS = {
    "cifs",
    "smb3",
    "smbfs",
    "nfs",
    "nfs4",
    "ncpfs",
    "afs",
    "9p",
    "ceph",
    "glusterfs",
    "fuse.sshfs",
    "fuse.glusterfs",
    "fuse.s3fs",
    "fuse.rclone",
    "davfs",
    "fuse.davfs2",
}
# Names office systems leave beside real files; never worth a warning.
SYSTEM_LITTER = {"thumbs.db", "desktop.ini", ".ds_store"}


@dataclass(frozen=True)
class Candidate:
    """A regular file directly in the inbox that matches the inbox's patterns."""

    name: str
    observation: Observation

    @property
    def order_key(self) -> tuple[int, str]:
        # Oldest first: an old export must never overwrite a newer one.
        return (self.observation.mtime_ns, self.name)


@dataclass(frozen=True)
class Ignored:
    """An entry that matched the patterns but will not be uploaded, and why."""

    name: str
    reason: str


def matches(name: str, include: Iterable[str], exclude: Iterable[str]) -> bool:
    """Case-insensitive name matching of our own: watchdog 7's full_match
    changed what ``*.csv`` means, and STUDENTS.CSV must match on Linux too."""
    lowered = name.lower()
    if _any_of(tuple(include)).match(lowered) is None:
        return False
    return _any_of(tuple(exclude)).match(lowered) is None


@functools.lru_cache(maxsize=256)
def _any_of(patterns: tuple[str, ...]) -> re.Pattern[str]:
    """One regex for "``fnmatchcase`` of the lowered name with any lowered pattern": a scan
    matches every name of the inbox, then routes each (``discover`` on 1,000 files: 19 ms with
    a ``fnmatchcase`` call per pattern, 12.5 ms with this). An empty set matches no name."""
    if not patterns:
        return re.compile(r"(?!)")
    return re.compile("|".join(fnmatch.translate(pattern.lower()) for pattern in patterns))


def scan(inbox: InboxConfig) -> tuple[list[Candidate], list[Ignored], list[Candidate]]:
    """The listing step of ``discover.discover`` (call that: it also applies routes and
    our own names): files directly in the inbox matching the patterns, oldest first;
    what was skipped; and, in done-marker mode, the files whose marker is not there yet."""
    candidates: list[Candidate] = []
    ignored: list[Ignored] = []
    unfinished: list[Candidate] = []
    marker = inbox.done_marker
    with os.scandir(inbox.path) as entries:
        entries = list(entries)
    names = {e.name for e in entries}
    for entry in entries:
        if entry.name.lower() in SYSTEM_LITTER:
            continue
        if not matches(entry.name, inbox.include, inbox.exclude):
            continue
        if marker and entry.name.endswith(marker):
            continue
        found = _classify(entry)
        if isinstance(found, Ignored):
            ignored.append(found)
        elif not marker or entry.name + marker in names:
            candidates.append(found)
        else:
            unfinished.append(found)
    candidates.sort(key=lambda c: c.order_key)
    return candidates, ignored, unfinished


def _classify(entry: os.DirEntry) -> Candidate | Ignored:
    try:
        info = entry.stat(follow_symlinks=False)
    except FileNotFoundError:
        return Ignored(entry.name, "vanished while being looked at")
    except OSError as exc:
        return Ignored(entry.name, f"cannot be examined ({exc.strerror})")
    if stat.S_ISLNK(info.st_mode) or _is_junction(entry):
        return Ignored(entry.name, "is a link: links are never followed or uploaded")
    if stat.S_ISDIR(info.st_mode):
        return Ignored(entry.name, "is a folder, not a file")
    if not stat.S_ISREG(info.st_mode):
        return Ignored(entry.name, "is not a regular file")
    return Candidate(entry.name, Observation(info.st_size, info.st_mtime_ns))


def _is_junction(entry: os.DirEntry) -> bool:
    is_junction = getattr(entry, "is_junction", None)  # Python 3.12+
    return bool(is_junction and is_junction())


def observe(path: Path) -> Observation | None:
    """Size and mtime of a regular file (not following links), None if it is gone."""
    try:
        info = os.lstat(path)
    except OSError:
        return None
    return Observation.of(info)


# -- network paths ---------------------------------------------------------------


def is_network_path(path: Path) -> bool:
    """True for SMB/NFS mounts and Windows network drives, where events are unreliable."""
    if sys.platform == "win32":
        return _windows_is_network(path)
    return _mount_fstype(path, _read_mounts()) in NETWORK_FILESYSTEMS


_EXTENDED = "\\\\?\\"  # Windows' extended-length prefix; Path.resolve() adds it beyond MAX_PATH


def _windows_is_network(path: Path) -> bool:
    text = str(path)
    if text.startswith(_EXTENDED):  # \\?\C:\... (beyond MAX_PATH) or \\?\UNC\server\share
        if text[len(_EXTENDED) :].upper().startswith("UNC\\"):
            return True
        text = text[len(_EXTENDED) :]
    elif text.startswith(("\\\\", "//")):
        return True  # UNC path: \\server\share\...
    import ctypes  # Windows only

    drive = os.path.splitdrive(text)[0] + "\\"
    drive_remote = 4  # GetDriveTypeW's DRIVE_REMOTE
    return ctypes.windll.kernel32.GetDriveTypeW(drive) == drive_remote


def _read_mounts() -> list[tuple[str, str]]:
    """(mount point, fs type) pairs from /proc/self/mounts."""
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return []
    mounts = []
    for line in lines:
        fields = line.split()
        if len(fields) >= 3:
            # The mount table escapes spaces and tabs as octal (\040).
            point = fields[1].encode().decode("unicode_escape")
            mounts.append((point, fields[2]))
    return mounts


def _mount_fstype(path: Path, mounts: list[tuple[str, str]]) -> str:
    """The fs type of the longest mount point containing ``path``."""
    text = str(path)
    best, fstype = "", ""
    for point, kind in mounts:
        inside = text == point or text.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, fstype = point, kind
    return fstype


# -- observers -------------------------------------------------------------------


# What we ask observers for. Not opens, reads or attribute changes: our own
# reads (the lease probe, the upload) would wake the worker in a loop.
WATCHED_EVENTS = [
    FileCreatedEvent,
    FileModifiedEvent,
    FileClosedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    DirCreatedEvent,
    DirDeletedEvent,
    DirModifiedEvent,
    DirMovedEvent,
]


class _WakeHandler(FileSystemEventHandler):
    """Tells the inbox's worker of each event and wakes it; never raises (an
    exception here would kill the observer thread, watchdog #427)."""

    def __init__(self, wake: Callable[[], None], notice: Callable[[FileSystemEvent], None] | None) -> None:
        self._wake = wake
        self._notice = notice

    def on_any_event(self, event: FileSystemEvent) -> None:
        try:
            if self._notice is not None:
                self._notice(event)
            self._wake()
        except Exception:  # noqa: BLE001 - must not reach watchdog's thread
            logger.exception("wake-up handler failed")


class Watcher:
    """Keeps one watch per inbox alive on a native or a polling observer."""

    def __init__(
        self,
        inboxes: Iterable[InboxConfig],
        wake: Callable[[str], None],
        notice: Callable[[str, FileSystemEvent], None] | None = None,
    ) -> None:
        """``notice(inbox name, event)`` gets the events of observers that report
        close-writes (inotify), for writers.WriteTracker; ``wake`` gets every one."""
        self._inboxes = list(inboxes)
        self._wake = wake
        self._notice = notice
        self._lock = threading.Lock()
        self._polling = {i.name: _wants_polling(i) for i in self._inboxes}
        poll_seconds = min((i.poll_seconds for i in self._inboxes if self._polling[i.name]), default=2.0)
        # Observers are imported here, by `run` alone: watchdog.observers loads the platform's
        # emitter (inotify via ctypes), which `once`, `status` and `check` (scan, observe) never use.
        from watchdog.observers.polling import PollingObserver

        self._factories: dict[bool, Callable[[], BaseObserver]] = {
            False: _native_observer,
            True: lambda: PollingObserver(timeout=poll_seconds),
        }
        self._observers: dict[bool, BaseObserver] = {}
        self._watches: dict[str, ObservedWatch] = {}

    def start(self) -> None:
        self.supervise()

    def kind(self, inbox_name: str) -> str:
        return "polling" if self._polling[inbox_name] else "native"

    def supervise(self) -> None:
        """Start what is missing, rebuild what died. Call it now and then."""
        with self._lock:
            for polling in sorted(set(self._polling.values())):
                self._ensure_observer(polling)
            for inbox in self._inboxes:
                self._ensure_watch(inbox)

    def _ensure_observer(self, polling: bool) -> BaseObserver:
        observer = self._observers.get(polling)
        if observer is not None and observer.is_alive():
            return observer
        if observer is not None:
            logger.warning("the {} file observer stopped; starting a new one", "polling" if polling else "native")
            for name, is_polling in self._polling.items():
                if is_polling == polling:
                    self._watches.pop(name, None)
            _stop_observer(observer)
        observer = self._factories[polling]()
        observer.daemon = True
        observer.start()
        self._observers[polling] = observer
        return observer

    def _ensure_watch(self, inbox: InboxConfig) -> None:
        observer = self._observers[self._polling[inbox.name]]
        watch = self._watches.get(inbox.name)
        if watch is not None and _emitter_alive(observer, watch):
            return
        if watch is not None:
            logger.warning('inbox "{}": its folder watch stopped; rebuilding it', inbox.name)
            try:
                observer.unschedule(watch)
            except (KeyError, OSError):
                pass
            del self._watches[inbox.name]
        if not inbox.path.is_dir():
            return  # the worker logs the missing folder; the next supervise retries
        try:
            notice = None
            if self._notice is not None and reports_close_writes(observer):
                notice = functools.partial(self._notice, inbox.name)
            handler = _WakeHandler(lambda name=inbox.name: self._wake(name), notice)
            self._watches[inbox.name] = observer.schedule(
                handler, str(inbox.path), recursive=False, event_filter=WATCHED_EVENTS
            )
        except OSError as exc:
            logger.warning('inbox "{}": cannot watch the folder ({}); relying on rescans', inbox.name, exc)

    def stop(self) -> None:
        with self._lock:
            for observer in self._observers.values():
                _stop_observer(observer)
            self._observers.clear()
            self._watches.clear()


def _native_observer() -> BaseObserver:
    from watchdog.observers import Observer  # late: see Watcher.__init__

    if sys.platform == "win32":
        # watchdog's Windows emitter hands events over only after the folder
        # has been quiet for its timeout (1 s by default): during a slow copy
        # nothing arrives at all. 0.1 s keeps wake-ups flowing (proven under
        # Wine in tests/windows/test_watchdog_events.py).
        return Observer(timeout=0.1)
    return Observer()


def reports_close_writes(observer: BaseObserver) -> bool:
    """Only inotify says when a writer closes a file (FileClosedEvent)."""
    if not sys.platform.startswith("linux"):
        return False  # importing watchdog's inotify module elsewhere raises (ctypes.CDLL(None))
    from watchdog.utils import UnsupportedLibcError

    try:
        from watchdog.observers.inotify import InotifyObserver
    except (ImportError, OSError, UnsupportedLibcError):  # a libc without inotify
        return False
    return isinstance(observer, InotifyObserver)


def _wants_polling(inbox: InboxConfig) -> bool:
    if inbox.observer != "auto":
        return inbox.observer == "polling"
    try:
        network = is_network_path(inbox.path)
    except OSError:
        network = False
    if network:
        logger.info('inbox "{}" is on a network share: watching it by polling', inbox.name)
    return network


def _emitter_alive(observer: BaseObserver, watch: ObservedWatch) -> bool:
    return any(e.watch == watch and e.is_alive() for e in observer.emitters)


def _stop_observer(observer: BaseObserver) -> None:
    try:
        observer.stop()
        if observer.is_alive():
            observer.join(timeout=5)
    except (RuntimeError, OSError):
        pass
