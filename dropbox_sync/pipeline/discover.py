"""Which files of an inbox are ours, and in what order: the one answer for every command.

``run`` and ``once`` (the worker), ``check``, ``status`` all ask ``discover``,
so they cannot disagree: a file they list as ours is one the pipeline will
send; a file it skips is reported with the reason, never left "settling".

Ours, in sending order: first the files already claimed (``sending/``, oldest
claim first), then the inbox's regular files that match ``include`` and not
``exclude``, are finished (their done marker is there, in done-marker mode) and
match a route; by route in config order (users before groups), then oldest
first. Never ours: our own folders and files in the inbox (``sending/``,
``processed/``, ``failed/``, ``held/``, ``report.html``, our temporaries),
whatever the patterns say.
"""

from __future__ import annotations

import stat
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from dropbox_sync.config import InboxConfig
from dropbox_sync.errors import UnsafeFolder
from dropbox_sync.pipeline import routes, workdirs
from dropbox_sync.pipeline.archive_names import is_archived_file
from dropbox_sync.pipeline.folder import Folder
from dropbox_sync.pipeline.watcher import Candidate, Ignored, scan
from dropbox_sync.pipeline.workdirs import FAILED, HELD, PROCESSED, SENDING
from dropbox_sync.report.pagefile import is_page_file

NO_ROUTE = "matches no route of this inbox; left in place, not uploaded"
# Our own names in an inbox (compared ignoring case: Windows and macOS do).
REPORT = "report.html"  # the inbox's page for people (never taken for a dropped file)
RESERVED = frozenset(n.lower() for n in (SENDING, PROCESSED, FAILED, HELD, REPORT))


@dataclass(frozen=True)
class Discovery:
    """One look at an inbox."""

    claimed: list[Path] = field(default_factory=list)  # in sending/, to be finished first
    waiting: list[Candidate] = field(default_factory=list)  # in the inbox, in sending order
    skipped: list[Ignored] = field(default_factory=list)  # matched the patterns, not sent, and why
    unfinished: list[Candidate] = field(default_factory=list)  # done-marker mode: no marker yet (not work)

    @property
    def has_work(self) -> bool:
        return bool(self.claimed or self.waiting)


def discover(inbox: InboxConfig, *, strict: bool = True) -> Discovery:
    """What of ``inbox`` is ours, in sending order, and what is skipped with the reason.

    Raises OSError when the folder cannot be listed (missing, unreadable), and
    ``UnsafeFolder`` when sending/ is a link, a file or (``strict``, the service)
    not ours: see workdirs.py."""
    claimed = claimed_files(inbox.path, strict=strict)
    candidates, ignored, unfinished = scan(inbox)
    routed: list[tuple[int, Candidate]] = []
    skipped = [item for item in ignored if not is_reserved(item.name, inbox)]
    for candidate in candidates:
        if is_reserved(candidate.name, inbox):
            continue
        found = routes.route_for(inbox, candidate.name)
        if found is None:
            skipped.append(Ignored(candidate.name, NO_ROUTE))
        else:
            routed.append((found[0], candidate))
    routed.sort(key=lambda pair: (pair[0], pair[1].order_key))
    unfinished = [c for c in unfinished if not is_reserved(c.name) and routes.route_for(inbox, c.name)]
    return Discovery(claimed, [candidate for _, candidate in routed], skipped, unfinished)


class FirstLook:
    """What each inbox held as a run began. ``once`` starts it as soon as its config is read,
    so the rest of its start-up (imports, journal, locks) counts toward settling instead of
    coming before it (``InboxWorker.seen_before``). Each inbox is looked at on a thread of its
    own, waited for at most ``WAIT`` seconds: a share that does not answer delays start-up
    that long and the other inboxes not at all. An inbox whose look has not ended when its
    worker starts, or failed, simply has none (its worker's own pass says what is wrong)."""

    # The look is waited for (briefly): on a thread that runs beside the imports, it gets the
    # GIL in turns and ends late, and settling counts from its end (measured: the first
    # upload 0.47 s after start, against 0.33 s when it is waited for).
    WAIT = 0.5

    def __init__(self, inboxes: Iterable[InboxConfig], *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock  # the workers' clock
        self._lock = threading.Lock()
        self._found: dict[str, tuple[float, list[Candidate]]] = {}
        threads = [
            threading.Thread(target=self._look, args=(inbox,), name=f"first-look-{inbox.name}", daemon=True)
            for inbox in inboxes
        ]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + self.WAIT
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _look(self, inbox: InboxConfig) -> None:
        try:
            waiting = discover(inbox, strict=False).waiting  # read-only: nothing claimed, no folder made
        except (OSError, UnsafeFolder):
            return
        # After the scan: every observation was true by then, so settling never counts from too early.
        at = self._clock()
        with self._lock:
            self._found[inbox.name] = (at, waiting)

    def of(self, inbox: str) -> tuple[float, list[Candidate]] | None:
        """When the look at ``inbox`` ended (on the workers' clock) and the files it saw; None if
        it has not ended (yet) or failed."""
        with self._lock:
            return self._found.get(inbox)


def is_reserved(name: str, inbox: InboxConfig | None = None) -> bool:
    """One of our own names in an inbox, or a temporary of ours (``.x.tmp``); with ``inbox``,
    also its report page under the name the config gives it (``report = "..."``)."""
    if inbox is not None and is_page_file(name, inbox.report):
        return True
    return name.lower() in RESERVED or (name.startswith(".") and name.endswith(".tmp"))


def claimed_files(inbox: Path, *, strict: bool = True) -> list[Path]:
    """Files in sending/ (oldest claim first), not counting results or temporaries."""
    return listed_files(inbox / SENDING, strict=strict)


def listed_files(folder_path: Path, *, strict: bool = False) -> list[Path]:
    """The archived files in one of our folders (``inbox/failed`` and the like), by name:
    not results, not companions, not folders. Links are listed (never followed) so they
    can be filed away. Through the folder's own handle (workdirs.py): a folder that is a
    link raises ``UnsafeFolder``; ``strict`` (the service) also wants it ours."""
    try:
        with workdirs.inbox_folders(folder_path.parent, strict=strict) as folders:
            directory = folders.optional(folder_path.name)
            names = directory.names() if directory is not None else []
            return sorted(folder_path / name for name in _listed(directory, names))
    except FileNotFoundError:
        return []  # no inbox folder (an unmounted share), or no such work folder yet


def _listed(directory: Folder | None, names: list[str]) -> list[str]:
    if directory is None:
        return []
    siblings = set(names)
    found = []
    for name in names:
        if not is_archived_file(name, siblings):
            continue
        try:
            if stat.S_ISDIR(directory.lstat(name).st_mode):
                continue
        except FileNotFoundError:
            continue
        found.append(name)
    return found
