"""The inbox scheduler: which file goes next, retry and hold state, health, next wake-up.

``InboxWorker.cycle`` does one pass over one inbox and says how long to wait
before the next. Order is strict within an inbox: files already claimed go
first, and a claimed file waiting for a retry holds back every later one.
Each file goes through the one-file transaction (claim -> prepare -> upload ->
record -> archive) of ``transaction.py``.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loguru import logger

from dropbox_sync.config import InboxConfig
from dropbox_sync.errors import UnsafeFolder
from dropbox_sync.pipeline import archive, workdirs, writers
from dropbox_sync.pipeline.backoff import Backoff
from dropbox_sync.pipeline.client import ImportClient
from dropbox_sync.pipeline.discover import discover
from dropbox_sync.pipeline.outcome import (
    FOREIGN_REPLIES_BEFORE_HOLD,
    FileReport,
    Outcome,
    foreign_hold_reason,
)
from dropbox_sync.pipeline.settle import Clock, Observation, Settler
from dropbox_sync.pipeline.transaction import FileTransaction, _Unrecorded
from dropbox_sync.pipeline.watcher import Candidate, is_network_path, observe
from dropbox_sync.roster.memory import Roster
from dropbox_sync.state.journal import Journal

READ_TIMEOUTS_BEFORE_HOLD = 3
MISSING_FOLDER_RECHECK = 5.0
PRUNE_EVERY = 3600.0  # retention of processed/ is checked hourly
QUEUE_STATES = (
    ("retrying", "retrying"),
    ("held", "inbox held"),
    ("claimed", "settling"),
    ("changed", "settling"),
    (writers.WRITING, "still being written"),
)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


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
class _RetryState:
    due: float = 0.0  # monotonic time of the next attempt
    attempts: int = 0
    read_timeouts: int = 0
    foreign_replies: int = 0  # in a row; see outcome.is_foreign
    since: float | None = None  # first failure of the current streak


@dataclass
class InboxWorker(FileTransaction):
    inbox: InboxConfig
    journal: Journal | None = None
    clock: Clock = time.monotonic
    wall: Callable[[], dt.datetime] = utc_now
    rand: Callable[[], float] = random.random
    client_factory: Callable[[InboxConfig], ImportClient] = ImportClient
    # Asks the OS whether a writer still has a file open (writers.py); a seam for tests.
    write_probe: Callable[[Path], bool | None] = writers.open_for_writing
    wake: threading.Event = field(default_factory=threading.Event)
    reports: list[FileReport] = field(default_factory=list)
    # Called with every report as it happens (notifications, status); must be quick.
    listeners: list[Callable[[FileReport], None]] = field(default_factory=list)
    hold_reason: str | None = None
    roster: Roster | None = None  # the roster memory (None: every file is compared with nothing)

    def __post_init__(self) -> None:
        self.settler = Settler(self.inbox.settle_seconds, self.clock)
        self.backoff = Backoff(first=self.inbox.retry_first_seconds, cap=self.inbox.retry_max_seconds, rand=self.rand)
        self.retry = _RetryState()
        self.waiting: dict[str, str] = {}  # file name -> why it is not sent yet
        self._client: ImportClient | None = None
        self._folder_missing = False
        self._reported_ignored: set[str] = set()
        self._not_ready_until = 0.0
        self._beat = self.clock()
        self._uploading: str | None = None
        self._upload_deadline = 0.0  # seconds the upload on the wire may take in all
        self._recovered = False
        self._next_prune = 0.0
        self._filing: set[str] = set()  # sent and reported, the move still blocked
        self._refile_at = 0.0
        self.aftercare = writers.Aftercare(self.clock)
        self._unrecorded: dict[str, _Unrecorded] = {}  # claimed name -> a verdict not yet on disk
        self._held_locally = False  # hold_reason is a fault of this machine, not the server's
        self._archived_at: dict[str, float] = {}  # processed/ name -> our clock when it went there
        try:
            local = not is_network_path(self.inbox.path)  # a lease says nothing of other machines
        except OSError:
            local = False
        self.gate = writers.WriterGate(
            self.name, self.inbox.path, self.settler, self.clock, self.write_probe, probe_enabled=local
        )
        self.writes = self.gate.writes  # Pipeline.run feeds it the inotify events
        self._unsafe_folder = False  # held because a work folder is a link, a file, or not ours
        self._unlearned: list[Callable[[], None]] = []  # roster learning left to the next upload

    @property
    def name(self) -> str:
        return self.inbox.name

    def snapshot(self) -> InboxSnapshot:
        return InboxSnapshot(
            self.name,
            self.inbox.path,
            self._folder_missing,
            self.hold_reason,
            dict(self.waiting),
            self._uploading,
            self.clock() - self._beat,
        )

    def wedged(self) -> bool:
        """True if the worker has given no sign of life for far longer than it should."""
        allowed = 3 * self.inbox.rescan_seconds + 60
        if self._uploading is not None:
            allowed += self._upload_deadline
        return self.clock() - self._beat > allowed

    # -- one pass -----------------------------------------------------------------

    def cycle(self, stop: threading.Event) -> float:
        """Do what can be done now; return seconds until the next pass is worth it."""
        self._beat = self.clock()
        try:
            return self._cycle(stop)
        except UnsafeFolder as exc:
            return self._hold_unsafe_folder(str(exc))
        finally:
            self._beat = self.clock()
            if self.roster is not None:
                self.learn_now()  # what the pass's last files taught it (see _post)
                self.roster.release()  # kept open through the pass: see Roster

    def _hold_unsafe_folder(self, reason: str) -> float:
        """A work folder cannot be trusted (workdirs.py): nothing moves until a person fixes it."""
        if self.hold_reason != reason:
            logger.error('inbox "{}": HELD: {}', self.name, reason)
        self.hold_reason = reason
        self._unsafe_folder = True
        return MISSING_FOLDER_RECHECK

    def _cycle(self, stop: threading.Event) -> float:
        if not self._folder_present():
            return MISSING_FOLDER_RECHECK
        with workdirs.kept_open(self.inbox.path):  # one opening of the work folders per pass
            return self._pass(stop)

    def _pass(self, stop: threading.Event) -> float:
        archive.ensure_folders(self.inbox.path)  # UnsafeFolder: see cycle
        if self._unsafe_folder:
            logger.info('inbox "{}": its work folders are real folders of ours again; resuming', self.name)
            self.hold_reason, self._unsafe_folder = None, False
        if not self._recovered:
            archive.remove_stale_temporaries(self.inbox.path)  # only at start: none are ours yet
            self._recovered = True
        self._reunite_orphan_results()
        self._prune_if_due()
        self.aftercare.reclaim_moved_on(self.name, observe)
        blocked = self._send_claimed(stop)
        if blocked is not None:
            self._queue_behind_claimed()
            return blocked
        candidates = self._scan()
        for candidate in candidates:
            if stop.is_set():
                return 0.0
            outcome = self._take(candidate)
            if outcome in (Outcome.HELD, Outcome.RETRY):
                self._queue_behind_claimed()
                return self._seconds_until_retry()
            if outcome is Outcome.NOT_READY and self._claim_unfinished():
                # Claimed, then changed (during the claim or the upload): it settles
                # again and goes first; nothing newer may overtake it (order).
                self._queue_behind_claimed()
                return self._next_pass_delay()
        return self._next_pass_delay()

    def _queue_behind_claimed(self) -> None:
        """Say truly why inbox files wait while a claimed file goes first (status: not "settling")."""
        claimed = archive.claimed_files(self.inbox.path)
        if not claimed:
            return
        reason = self.waiting.get(claimed[0].name, "")
        state = next((label for prefix, label in QUEUE_STATES if reason.startswith(prefix)), "being sent")
        behind = f"queued behind {archive.display_name(archive.original_of(claimed[0]))} ({state})"
        try:
            waiting = discover(self.inbox).waiting
        except OSError:
            return
        for candidate in waiting:
            self.waiting[candidate.name] = behind

    def _claim_unfinished(self) -> bool:
        """A claimed file still to be sent (not one sent and only waiting to be moved)."""
        return any(p.name not in self._filing for p in archive.claimed_files(self.inbox.path))

    def _folder_present(self) -> bool:
        present = self.inbox.path.is_dir()
        if not present and not self._folder_missing:
            logger.error(
                'inbox "{}": folder {} is missing (share unmounted or folder deleted); waiting for it to come back',
                self.name,
                self.inbox.path,
            )
        elif present and self._folder_missing:
            logger.info('inbox "{}": folder {} is back', self.name, self.inbox.path)
        self._folder_missing = not present
        return present

    def _prune_if_due(self) -> None:
        if self.inbox.keep_days <= 0 or self.clock() < self._next_prune:
            return
        self._next_prune = self.clock() + PRUNE_EVERY
        # Young by our own monotonic clock, whatever the wall clock said or says.
        keep = self.inbox.keep_days * 86400
        self._archived_at = {n: t for n, t in self._archived_at.items() if self.clock() - t < keep}
        removed = archive.prune_processed(
            self.inbox.path, self.inbox.keep_days, self.wall(), spare=frozenset(self._archived_at)
        )
        if removed:
            logger.info(
                'inbox "{}": removed {} file(s) older than {:g} days from processed/ (keep_days)',
                self.name,
                len(removed),
                self.inbox.keep_days,
            )

    def _send_claimed(self, stop: threading.Event) -> float | None:
        """Finish files already in sending/ first; a delay if one must wait."""
        for claimed in archive.claimed_files(self.inbox.path):
            if stop.is_set():
                return 0.0
            saved = archive.read_result(claimed)
            if saved is not None:
                self._archive_recovered(claimed, saved)
                continue
            if self.clock() < self.retry.due:
                return self._seconds_until_retry()
            verdict = self._unrecorded.get(claimed.name)
            if verdict is not None:
                if self._record(claimed, verdict) is Outcome.HELD:
                    return self._seconds_until_retry()
                continue
            current = archive.observe_claimed(claimed)
            if current is None and archive.exists_claimed(claimed):
                self._send(claimed)  # a link or special file: prepare rejects it, never read
                continue
            self.waiting.pop(claimed.name, None)
            if current is None or not self._settled(("claimed", claimed.name), claimed, current):
                self.waiting.setdefault(claimed.name, "claimed; sent once unchanged for settle_seconds")
                return self._next_pass_delay()
            outcome = self._send(claimed)
            if outcome in (Outcome.HELD, Outcome.RETRY):
                return self._seconds_until_retry()
            if outcome is Outcome.NOT_READY:
                return self._next_pass_delay()
        return None

    def _scan(self) -> list[Candidate]:
        try:
            found = discover(self.inbox)
        except OSError as exc:
            logger.warning('inbox "{}": cannot list the folder ({})', self.name, exc.strerror or exc)
            return []
        for item in found.skipped:
            if item.name not in self._reported_ignored:
                logger.warning('inbox "{}": ignoring {}: it {}', self.name, item.name, item.reason)
                self._reported_ignored.add(item.name)
        candidates = found.waiting
        present = {c.name for c in candidates}
        self._reported_ignored &= {i.name for i in found.skipped}
        claimed = {p.name for p in found.claimed}
        self.settler.forget_all_but(present | {("claimed", name) for name in claimed})
        self.waiting = {k: v for k, v in self.waiting.items() if k in present or k in claimed}
        ready = []
        for candidate in candidates:
            self.waiting.pop(candidate.name, None)
            if self._settled(candidate.name, self.inbox.path / candidate.name, candidate.observation):
                ready.append(candidate)
            else:
                self.waiting.setdefault(candidate.name, "settling (still changing, or seen too recently)")
        return ready

    def _settled(self, key: Any, path: Path, observation: Observation) -> bool:
        settled, why = self.gate.settled(key, path, observation)
        if why is not None:
            self.waiting[path.name] = why
        return settled

    def _local_hold(self, reason: str) -> Outcome:
        """A fault on this machine (disk full, permissions): the inbox waits, saying why."""
        if self.hold_reason != reason:
            logger.error('inbox "{}": HELD: {}', self.name, reason)
        self.hold_reason = reason
        self._held_locally = True
        self.retry.due = self.clock() + self.backoff.next_delay(None)
        return Outcome.HELD

    def _hold(
        self, claimed: Path, original: str, started: dt.datetime, reason: str, status: int | None, facts: dict[str, Any]
    ) -> Outcome:
        if self.hold_reason != reason:
            logger.error(
                'inbox "{}": HELD: {}. {} and later files wait until this is fixed '
                "(url, username, password, ca_bundle in the config, or the server).",
                self.name,
                reason,
                original,
            )
        self.hold_reason = reason
        self.retry.due = self.clock() + self.inbox.hold_retry_seconds
        self.waiting[claimed.name] = f"held: {reason}"
        self._journal(claimed.name, original, started, self.wall(), status, "held", reason, facts)
        self._report(FileReport(self.name, original, Outcome.HELD, reason))
        return Outcome.HELD

    def _transient(
        self,
        claimed: Path,
        original: str,
        started: dt.datetime,
        reason: str,
        status: int | None,
        retry_after: float | None,
        read_timeout: bool,
        facts: dict[str, Any],
        *,
        foreign: bool = False,
    ) -> Outcome:
        self.retry.read_timeouts = self.retry.read_timeouts + 1 if read_timeout else 0
        self.retry.foreign_replies = self.retry.foreign_replies + 1 if foreign else 0
        if self.retry.foreign_replies >= FOREIGN_REPLIES_BEFORE_HOLD:
            return self._hold(claimed, original, started, foreign_hold_reason(reason), status, facts)
        if self.retry.read_timeouts >= READ_TIMEOUTS_BEFORE_HOLD:
            reason = (
                f"{reason}, {self.retry.read_timeouts} times in a row: the server may need longer "
                f"to import this file; raise 'timeout' (now {self.inbox.timeout:g} s)"
            )
            return self._hold(claimed, original, started, reason, status, facts)
        delay = self.backoff.next_delay(retry_after)
        now = self.clock()
        self.retry.due = now + delay
        if self.retry.since is None:
            self.retry.since = now
        logger.warning('inbox "{}": {} not sent: {}; retrying in {:.1f} s', self.name, original, reason, delay)
        self.waiting[claimed.name] = f"retrying: {reason}"
        self._journal(claimed.name, original, started, self.wall(), status, "retry", reason, facts)
        self._report(FileReport(self.name, original, Outcome.RETRY, reason))
        return Outcome.RETRY

    def _clear_retry(self) -> None:
        if self._held_locally:
            logger.info('inbox "{}": the local fault is gone; resuming', self.name)
        elif self.hold_reason is not None:
            logger.info('inbox "{}": the server accepts uploads again; resuming', self.name)
        self.hold_reason = None
        self._held_locally = False
        self.retry = _RetryState()
        self.backoff.reset()

    # -- timing -------------------------------------------------------------------

    def _seconds_until_retry(self) -> float:
        return max(0.0, self.retry.due - self.clock())

    def _next_pass_delay(self) -> float:
        delays = [self.inbox.rescan_seconds]
        settle = self.settler.seconds_until_next_check()
        if settle is not None:
            # A hair past the moment it could settle, so that pass sees it settled.
            delays.append(settle + 0.01)
        for due in (self._not_ready_until, self._refile_at):
            if due:
                delays.append(max(0.0, due - self.clock()))
        return max(0.0, min(delays))

    def has_work(self) -> bool:
        """Anything claimed, or anything in the inbox still to send (for ``once``)."""
        try:
            return discover(self.inbox).has_work
        except (OSError, UnsafeFolder):
            return False  # missing, unlistable or held: nothing this pass can do

    def close(self) -> None:
        self.learn_now()
        if self._client is not None:
            self._client.close()
            self._client = None
