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
from dropbox_sync.pipeline import (
    archive,
    archive_names,
    claim,
    recovery,
    result,
    retention,
    workdirs,
    workfiles,
    writers,
)
from dropbox_sync.pipeline.backoff import Backoff, RetryState
from dropbox_sync.pipeline.client import ImportClient
from dropbox_sync.pipeline.discover import claimed_files, discover
from dropbox_sync.pipeline.health import Health, InboxSnapshot
from dropbox_sync.pipeline.outcome import FileReport, Outcome
from dropbox_sync.pipeline.settle import Clock, Observation, Settler
from dropbox_sync.pipeline.transaction import FileTransaction
from dropbox_sync.pipeline.watcher import Candidate, is_network_path, observe
from dropbox_sync.roster.memory import Roster
from dropbox_sync.state.journal import Attempt, Journal

MISSING_FOLDER_RECHECK = 5.0
QUEUE_STATES = (
    ("retrying", "retrying"),
    ("held", "inbox held"),
    ("claimed", "settling"),
    ("changed", "settling"),
    (writers.WRITING, "still being written"),
)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class InboxWorker:
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
        self.retry = RetryState()
        self.waiting: dict[str, str] = {}  # file name -> why it is not sent yet
        self._folder_missing = False
        self._reported_ignored: set[str] = set()
        self.health = Health(self.clock, self.inbox.rescan_seconds)
        self._recovered = False
        self.aftercare = writers.Aftercare(self.clock)
        self.held_locally = False  # hold_reason is a fault of this machine, not the server's
        # keep_days: what this process filed, by its own clock, and the hourly prune
        self.retention = retention.Retention(self.name, self.inbox.path, self.inbox.keep_days, self.clock, self.wall)
        try:
            local = not is_network_path(self.inbox.path)  # a lease says nothing of other machines
        except OSError:
            local = False
        self.gate = writers.WriterGate(
            self.name, self.inbox.path, self.settler, self.clock, self.write_probe, probe_enabled=local
        )
        self.writes = self.gate.writes  # Pipeline.run feeds it the inotify events
        self._unsafe_folder = False  # held because a work folder is a link, a file, or not ours
        self.transaction = FileTransaction(self)  # the one-file steps: claim to archive

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
            self.health.uploading,
            self.health.since_beat(),
        )

    def wedged(self) -> bool:
        return self.health.wedged()

    # -- one pass -----------------------------------------------------------------

    def cycle(self, stop: threading.Event) -> float:
        """Do what can be done now; return seconds until the next pass is worth it."""
        self.health.alive()
        try:
            return self._cycle(stop)
        except UnsafeFolder as exc:
            return self._hold_unsafe_folder(str(exc))
        finally:
            self.health.alive()
            if self.roster is not None:
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
            try:
                return self._pass(stop)
            finally:
                # The pass's last file filed, and what its last files taught it (lessons.py),
                # read where they were filed through the handles the pass checked: after them,
                # processed/ could be someone else's folder with a CSV of their own at that name
                # (test_attack_perf.py).
                self.transaction.filing.finish()
                self.transaction.lessons.learn_now()

    def _pass(self, stop: threading.Event) -> float:
        archive.ensure_folders(self.inbox.path)  # UnsafeFolder: see cycle
        if self._unsafe_folder:
            logger.info('inbox "{}": its work folders are real folders of ours again; resuming', self.name)
            self.hold_reason, self._unsafe_folder = None, False
        if not self._recovered:
            recovery.remove_stale_temporaries(self.inbox.path)  # only at start: none are ours yet
            self._recovered = True
        self.transaction.reunite_orphan_results()
        self.retention.prune_if_due()
        self.aftercare.reclaim_moved_on(self.name, observe)
        blocked = self._send_claimed(stop)
        if blocked is not None:
            self._queue_behind_claimed()
            return blocked
        candidates = self._scan()
        for candidate in candidates:
            if stop.is_set():
                return 0.0
            outcome = self.transaction.take(candidate)
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
        self.transaction.filing.finish()  # what sending/ holds now
        claimed = claimed_files(self.inbox.path)
        if not claimed:
            return
        reason = self.waiting.get(claimed[0].name, "")
        state = next((label for prefix, label in QUEUE_STATES if reason.startswith(prefix)), "being sent")
        behind = f"queued behind {archive_names.display_name(claim.original_of(claimed[0]))} ({state})"
        try:
            waiting = discover(self.inbox).waiting
        except OSError:
            return
        for candidate in waiting:
            self.waiting[candidate.name] = behind

    def _claim_unfinished(self) -> bool:
        """A claimed file still to be sent (not one sent and only waiting to be moved)."""
        self.transaction.filing.finish()
        return any(p.name not in self.transaction.filing.blocked for p in claimed_files(self.inbox.path))

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

    def _send_claimed(self, stop: threading.Event) -> float | None:
        """Finish files already in sending/ first; a delay if one must wait."""
        for claimed in claimed_files(self.inbox.path):
            if stop.is_set():
                return 0.0
            saved = workfiles.read_result(claimed)
            if saved is not None:
                self.transaction.filing.recovered(claimed, saved)
                continue
            if self.clock() < self.retry.due:
                return self._seconds_until_retry()
            verdict = self.transaction.unrecorded.get(claimed.name)
            if verdict is not None:
                if self.transaction.record(claimed, verdict) is Outcome.HELD:
                    return self._seconds_until_retry()
                continue
            current = workfiles.observe_claimed(claimed)
            if current is None and workfiles.exists_claimed(claimed):
                self.transaction.send(claimed)  # a link or special file: prepare rejects it, never read
                continue
            self.waiting.pop(claimed.name, None)
            if current is None or not self.settled(("claimed", claimed.name), claimed, current):
                self.waiting.setdefault(claimed.name, "claimed; sent once unchanged for settle_seconds")
                return self._next_pass_delay()
            outcome = self.transaction.send(claimed)
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
            if self.settled(candidate.name, self.inbox.path / candidate.name, candidate.observation, probe=False):
                ready.append(candidate)
            else:
                self.waiting.setdefault(candidate.name, "settling (still changing, or seen too recently)")
        return ready

    def seen_before(self, candidates: list[Candidate], at: float) -> None:
        """Files seen by ``at`` (this worker's clock) before its first pass: settling counts from then."""
        for candidate in candidates:
            self.settler.seen(candidate.name, candidate.observation, at)

    def settled(self, key: Any, path: Path, observation: Observation, *, probe: bool = True) -> bool:
        settled, why = self.gate.settled(key, path, observation, probe=probe)
        if why is not None:
            self.waiting[path.name] = why
        return settled

    def local_hold(self, reason: str) -> Outcome:
        """A fault on this machine (disk full, permissions): the inbox waits, saying why."""
        if self.hold_reason != reason:
            logger.error('inbox "{}": HELD: {}', self.name, reason)
        self.hold_reason = reason
        self.held_locally = True
        self.retry.due = self.clock() + self.backoff.next_delay(None)
        return Outcome.HELD

    def hold(
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
        self.journal_attempt(
            result.attempt(self.name, claimed.name, original, started, self.wall(), status, "held", reason, facts)
        )
        self.report(FileReport(self.name, original, Outcome.HELD, reason))
        return Outcome.HELD

    def transient(
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
        hold = self.retry.failed(reason, read_timeout=read_timeout, foreign=foreign, timeout=self.inbox.timeout)
        if hold is not None:
            return self.hold(claimed, original, started, hold, status, facts)
        delay = self.backoff.next_delay(retry_after)
        now = self.clock()
        self.retry.due = now + delay
        if self.retry.since is None:
            self.retry.since = now
        logger.warning('inbox "{}": {} not sent: {}; retrying in {:.1f} s', self.name, original, reason, delay)
        self.waiting[claimed.name] = f"retrying: {reason}"
        self.journal_attempt(
            result.attempt(self.name, claimed.name, original, started, self.wall(), status, "retry", reason, facts)
        )
        self.report(FileReport(self.name, original, Outcome.RETRY, reason))
        return Outcome.RETRY

    def clear_retry(self) -> None:
        if self.held_locally:
            logger.info('inbox "{}": the local fault is gone; resuming', self.name)
        elif self.hold_reason is not None:
            logger.info('inbox "{}": the server accepts uploads again; resuming', self.name)
        self.hold_reason = None
        self.held_locally = False
        self.retry = RetryState()
        self.backoff.reset()

    def report(self, report: FileReport) -> None:
        """Tell the listeners (notifications, status) what became of a file; they must be quick."""
        self.reports.append(report)
        for listener in self.listeners:
            try:
                listener(report)
            except Exception:  # noqa: BLE001 - a notifier's fault must not stop uploads
                logger.exception('inbox "{}": a report listener failed', self.name)

    def journal_attempt(self, attempt: Attempt, *, unless_there: bool = False) -> None:
        """One attempt in the history (the journal), whatever its outcome (``result.attempt``)."""
        if self.journal is not None:
            self.journal.record(attempt, unless_there=unless_there)

    # -- timing -------------------------------------------------------------------

    def _seconds_until_retry(self) -> float:
        return max(0.0, self.retry.due - self.clock())

    def _next_pass_delay(self) -> float:
        self.transaction.filing.finish()  # a move it cannot make yet sets when to try again
        delays = [self.inbox.rescan_seconds]
        settle = self.settler.seconds_until_next_check()
        if settle is not None:
            # A hair past the moment it could settle, so that pass sees it settled.
            delays.append(settle + 0.01)
        for due in (self.transaction.not_ready_until, self.transaction.filing.retry_at):
            if due:
                delays.append(max(0.0, due - self.clock()))
        return max(0.0, min(delays))

    def has_work(self) -> bool:
        """Anything claimed, or anything in the inbox still to send (for ``once``)."""
        try:
            return discover(self.inbox).has_work
        except (OSError, UnsafeFolder):
            return False  # missing, unlistable or held: nothing this pass can do

    def warm_up(self) -> None:
        """Ready what the next upload needs while files settle (``once``: transaction.warm_up)."""
        self.transaction.warm_up()

    def close(self) -> None:
        self.transaction.close()
