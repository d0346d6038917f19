"""One inbox's work: discover -> settle -> claim -> prepare -> upload -> record -> archive.

``InboxWorker.cycle`` does one pass over one inbox and says how long to wait
before the next. Order is strict within an inbox: files already claimed go
first, and a claimed file waiting for a retry holds back every later one.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loguru import logger

from dropbox_sync import archive, changes, failed_rows, mapper, preflight, result, writers
from dropbox_sync.backoff import Backoff
from dropbox_sync.client import ImportClient, Reply, request_deadline
from dropbox_sync.config import InboxConfig
from dropbox_sync.discover import discover
from dropbox_sync.errors import FileNotReady, HoldError, TransientError
from dropbox_sync.journal import Attempt, Journal
from dropbox_sync.outcome import (
    FOREIGN_REPLIES_BEFORE_HOLD,
    FileReport,
    Outcome,
    foreign_hold_reason,
    is_foreign,
    judge,
)
from dropbox_sync.prepare import Rejection, Upload, prepare
from dropbox_sync.roster import Roster
from dropbox_sync.settle import Clock, Observation, Settler
from dropbox_sync.watcher import Candidate, is_network_path, observe

READ_TIMEOUTS_BEFORE_HOLD = 3
NOT_READY_RECHECK = 1.0  # seconds before looking again at a file held open by its writer
MISSING_FOLDER_RECHECK = 5.0
PRUNE_EVERY = 3600.0  # retention of processed/ is checked hourly
QUEUE_STATES = (("retrying", "retrying"), ("held", "inbox held"), ("claimed", "settling"), ("changed", "settling"),
                (writers.WRITING, "still being written"))  # fmt: skip


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


@dataclass(frozen=True)
class _Unrecorded:
    """A verdict whose result could not be saved yet."""

    original: str
    outcome: Outcome
    summary: str
    result: dict[str, Any]
    log_line: str  # the summary, with the first failed rows for the log
    learn: Callable[[], None] | None = None  # what the roster memory takes from it, once it is on disk


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
        self.gate = writers.WriterGate(self.name, self.inbox.path, self.settler, self.clock, self.write_probe,
                                       probe_enabled=local)  # fmt: skip
        self.writes = self.gate.writes  # Pipeline.run feeds it the inotify events

    @property
    def name(self) -> str:
        return self.inbox.name

    def snapshot(self) -> InboxSnapshot:
        return InboxSnapshot(self.name, self.inbox.path, self._folder_missing, self.hold_reason,
                             dict(self.waiting), self._uploading, self.clock() - self._beat)  # fmt: skip

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
        finally:
            self._beat = self.clock()

    def _cycle(self, stop: threading.Event) -> float:
        if not self._folder_present():
            return MISSING_FOLDER_RECHECK
        archive.ensure_folders(self.inbox.path)
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
            logger.error('inbox "{}": folder {} is missing (share unmounted or folder deleted); '
                         "waiting for it to come back", self.name, self.inbox.path)  # fmt: skip
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
        removed = archive.prune_processed(self.inbox.path, self.inbox.keep_days, self.wall(),
                                          spare=frozenset(self._archived_at))  # fmt: skip
        if removed:
            logger.info('inbox "{}": removed {} file(s) older than {:g} days from processed/ (keep_days)',
                        self.name, len(removed), self.inbox.keep_days)  # fmt: skip

    def _reunite_orphan_results(self) -> None:
        """A result left in sending/ after its file moved (a crash, or a held result file)."""
        for orphan in archive.orphan_results(self.inbox.path):
            try:
                archived = archive.reunite_orphan_result(orphan)
            except OSError as exc:
                if not archive.is_busy(exc):
                    raise
                continue  # held by another program: next pass
            if archived is not None:
                logger.info('inbox "{}": put the result of {} beside it', self.name, archived.name)

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
            current = observe(claimed)
            if current is None and os.path.lexists(claimed):
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

    def _archive_recovered(self, claimed: Path, saved: dict[str, Any]) -> None:
        """A file whose result is saved but which is still in sending/: held open by another
        program when we tried to move it, or a crash came between the two. Finish the move."""
        ours = saved.get("dropbox_sync") if isinstance(saved.get("dropbox_sync"), dict) else {}
        if ours.get("outcome") == Outcome.GUARDED.value:
            destination = archive.HELD
        else:
            # Our recorded outcome first: the server's success may be odd ("true" as text).
            recorded = ours.get("outcome")
            success = recorded == Outcome.PROCESSED.value if recorded else saved.get("success") is True
            destination = archive.PROCESSED if success else archive.FAILED
        target = self._file_away(claimed, destination)
        if target is None:
            return
        if self._held_locally:
            self._clear_retry()
        if claimed.name in self._filing:
            self._filing.discard(claimed.name)
            logger.info('inbox "{}": {} released; filed in {}/', self.name, claimed.name, destination)
            return  # reported when it was sent
        logger.info('inbox "{}": finished archiving {} into {}/ after a restart', self.name, claimed.name, destination)
        outcome = Outcome.GUARDED if destination == archive.HELD else Outcome(destination)
        self._report(FileReport(self.name, archive.display_name(archive.original_of(claimed)),
                                outcome, str(saved.get("summary", "")), target))  # fmt: skip

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

    def _take(self, candidate: Candidate) -> Outcome:
        """Claim a settled file and send it, unless it changed since the scan."""
        if self.clock() < self._not_ready_until:
            return Outcome.NOT_READY
        current = observe(self.inbox.path / candidate.name)
        if current is None or not self._settled(candidate.name, self.inbox.path / candidate.name, current):
            return Outcome.NOT_READY
        try:
            claimed = archive.claim(self.inbox.path, candidate.name, self.wall(), done_marker=self.inbox.done_marker)
        except FileNotReady as exc:
            logger.debug('inbox "{}": {}; will look again', self.name, exc)
            self.waiting[candidate.name] = str(exc)
            self._not_ready_until = self.clock() + NOT_READY_RECHECK
            return Outcome.NOT_READY
        except OSError as exc:  # not "busy": permissions, a full disk, a broken share
            self.waiting[candidate.name] = f"cannot be claimed ({exc.strerror or exc})"
            return self._local_hold(f"cannot move {archive.display_name(candidate.name)} into "
                                    f"{archive.folder(self.inbox.path, archive.SENDING)}: {exc.strerror or exc}")
        self.waiting.pop(candidate.name, None)
        self.settler.forget(candidate.name)
        # What settled before the claim must be what we upload (DESIGN §5, Claim):
        # seed the claimed key so only a change after the claim restarts settling.
        self.settler.adopt(("claimed", claimed.name), current)
        after = observe(claimed)
        if after is None and os.path.lexists(claimed):
            return self._send(claimed)  # swapped for a link between scan and claim: prepare rejects it
        if after != current:
            self.waiting[claimed.name] = "changed while being claimed; waiting for it to settle"
            return Outcome.NOT_READY
        return self._send(claimed)

    # -- one file -----------------------------------------------------------------

    def _send(self, claimed: Path) -> Outcome:
        name = archive.original_of(claimed)  # routes match the name as dropped, never a shortened one
        original = archive.display_name(name)
        started = self.wall()
        before = observe(claimed)
        prepared = prepare(self.inbox, claimed, name, last_rows=self._last_rows,
                           approved=archive.approval_marker(claimed).exists(), roster=self.roster,
                           now=started)  # fmt: skip
        if isinstance(prepared, Rejection):
            outcome = Outcome.GUARDED if prepared.held else Outcome.FAILED
            body = {"success": False, "summary": prepared.summary}
            return self._conclude(claimed, original, started, body, None, prepared.facts, prepared.stage, outcome)
        try:
            if prepared.nothing_to_send:
                return self._nothing_to_send(claimed, original, started, prepared)
            return self._upload(claimed, original, started, prepared, before)
        finally:
            prepared.discard()

    def _nothing_to_send(self, claimed: Path, original: str, started: dt.datetime, upload: Upload) -> Outcome:
        """Delta found no change: filed in processed/ with a result of our own, not uploaded."""
        assert upload.changes is not None
        body = {"success": True, "summary": upload.changes.no_changes_summary()}
        facts = {**upload.facts, "sha256": preflight.file_sha256(claimed, max_file_size=self.inbox.max_file_size)}
        return self._conclude(claimed, original, started, body, None, facts, result.NO_CHANGES, Outcome.PROCESSED,
                              learn=lambda: self._remember(upload, body, None))  # fmt: skip

    def _remember(self, upload: Upload, body: dict[str, Any], sent: Path | None) -> None:
        """The one place the roster memory learns: what the server confirmed of what was sent
        (``sent``: that CSV; None: nothing was uploaded). Called once the result is on disk, so
        the memory is never ahead of the results: a crash between the two only means those rows
        are sent again."""
        try:
            changes.remember(self.roster, self.name, upload.route.safe_url, upload.changes, sent, body, self.wall())
        except Exception:  # noqa: BLE001 - the import happened: a memory problem must never make us send again
            logger.exception('inbox "{}": cannot update the roster memory; its rows are sent again next time',
                             self.name)  # fmt: skip

    def _last_rows(self, endpoint: str) -> int | None:
        """Rows of the last import on a route, for the shrink guard."""
        return self.journal.last_rows(self.name, endpoint) if self.journal is not None else None

    def _upload(self, claimed: Path, original: str, started: dt.datetime, upload: Upload,
                before: Observation | None) -> Outcome:  # fmt: skip
        facts = upload.facts
        self.retry.attempts += 1
        self._beat, self._uploading = self.clock(), original
        self._upload_deadline = request_deadline(self.inbox, upload.size)
        try:
            reply = self._http().upload(upload.path, filename=original, url=upload.route.url)
        except HoldError as exc:
            return self._hold(claimed, original, started, str(exc), exc.status, facts)
        except TransientError as exc:
            return self._transient(claimed, original, started, str(exc), exc.status, exc.retry_after,
                                   exc.read_timeout, facts, foreign=exc.foreign)  # fmt: skip
        finally:
            self._beat, self._uploading = self.clock(), None
        verdict, reason = judge(reply)
        if verdict is Outcome.HELD:
            return self._hold(claimed, original, started, reason, reply.status, facts)
        if verdict is Outcome.RETRY:
            return self._transient(claimed, original, started, reason, reply.status, reply.retry_after, False, facts,
                                   foreign=is_foreign(reply))  # fmt: skip
        if observe(claimed) != before or self.gate.still_written(claimed):
            # The writer was still at it: what arrived may be partial. Settle and send again.
            logger.warning('inbox "{}": {} changed during the upload; it will be sent again once it settles',
                           self.name, original)  # fmt: skip
            return Outcome.NOT_READY
        facts["sha256"] = reply.sha256
        facts.update(reply.notes())
        facts.update(self._keep_sent(claimed, upload, reply))
        kept = archive.sent_path(claimed)
        sent = kept if upload.rewritten and kept.exists() else upload.path
        return self._conclude(claimed, original, started, reply.body or {}, reply, facts, result.UPLOAD,
                              learn=lambda: self._remember(upload, reply.body or {}, sent))  # fmt: skip

    def _keep_sent(self, claimed: Path, upload: Upload, reply: Reply) -> dict[str, Any]:
        """A mapped upload is kept beside the export (``<archived>.sent.csv``), and each row
        the server reported is traced back to the export: its row, line and username."""
        try:
            sent = upload.keep_sent(claimed)
            if sent is None or upload.username_column is None:
                return {}
            details = (reply.body or {}).get("details")
            return {"export_rows": mapper.reported_rows(details, upload.row_map, sent, upload.username_column)}
        except OSError as exc:  # our own file in our own folder: worth a warning, not the result
            logger.warning('inbox "{}": cannot keep the CSV sent for {}: {}', self.name, claimed.name,
                           exc.strerror or exc)  # fmt: skip
            return {}
        except Exception:  # noqa: BLE001 - the reply is in hand: a nicety must never make us send again
            logger.exception('inbox "{}": cannot trace the reported rows of {} to the export', self.name, claimed.name)
            return {}

    def _http(self) -> ImportClient:
        if self._client is None:
            self._client = self.client_factory(self.inbox)
        return self._client

    def _conclude(self, claimed: Path, original: str, started: dt.datetime, body: dict[str, Any],
                  reply: Reply | None, facts: dict[str, Any], stage: str, outcome: Outcome | None = None,
                  learn: Callable[[], None] | None = None) -> Outcome:  # fmt: skip
        """Every final outcome: write the one result, journal it, file the claimed file away.
        ``learn``: what the roster memory takes from it, once the result is written."""
        if outcome is None:
            success = reply.success if reply else body.get("success") is True  # "true" as text too
            outcome = Outcome.PROCESSED if success else Outcome.FAILED
        finished = self.wall()
        status = reply.status if reply else None
        data = result.build(body, inbox=self.name, file=original, archived_as=archive.display_name(claimed.name),
                            outcome=outcome.value, stage=stage, endpoint=self.inbox.safe_url, http_status=status,
                            facts=facts, attempts=self.retry.attempts, started=started, finished=finished)  # fmt: skip
        summary = reply.summary if reply else str(body.get("summary", ""))  # one line, however odd
        if outcome is Outcome.FAILED and reply is not None:
            summary_line = summary + failed_rows.for_log(claimed, body.get("details"), facts, self.name)
        else:
            summary_line = summary
        # The journal first: it is history, and often on another disk than the inbox.
        self._journal(claimed.name, original, started, finished, status, outcome.value, summary, facts)
        return self._record(claimed, _Unrecorded(original, outcome, summary, data, summary_line, learn))

    def _record(self, claimed: Path, verdict: _Unrecorded) -> Outcome:
        """Save the result beside the claimed file, then file both away.

        A local error (disk full, permissions) keeps the verdict in memory and
        holds the inbox with the OS's reason: the reply is never thrown away,
        so the file is not sent again; saving is retried until it works."""
        seen = observe(claimed)  # what was sent, for the aftercare watch
        try:
            archive.write_json_atomically(archive.result_path(claimed), verdict.result)
        except OSError as exc:
            self._unrecorded[claimed.name] = verdict
            self.waiting[claimed.name] = f"sent; its result cannot be saved ({exc.strerror or exc})"
            return self._local_hold(f"cannot save the result of {verdict.original} in "
                                    f"{archive.folder(self.inbox.path, archive.SENDING)}: {exc.strerror or exc}. "
                                    "It was imported and will not be sent again; saving is retried")  # fmt: skip
        self._unrecorded.pop(claimed.name, None)
        if verdict.learn is not None:
            verdict.learn()  # never ahead of the result: a crash before this only means rows sent again
        self.waiting.pop(claimed.name, None)
        outcome = verdict.outcome
        self._clear_retry()  # before filing away, which may hold for a local fault of its own
        destination = archive.HELD if outcome is Outcome.GUARDED else outcome.value
        target = self._file_away(claimed, destination)
        if target is not None:
            self.aftercare.watch(target, seen)
        log = {Outcome.PROCESSED: logger.success, Outcome.GUARDED: logger.warning}.get(outcome, logger.error)
        where = f"{destination}/{target.name}" if target else f"{destination}/ once released"
        log('inbox "{}": {} -> {} ({})', self.name, verdict.original, where, verdict.log_line)
        self._report(FileReport(self.name, verdict.original, outcome, verdict.summary, target))
        self.settler.forget(("claimed", claimed.name))
        return outcome

    def _local_hold(self, reason: str) -> Outcome:
        """A fault on this machine (disk full, permissions): the inbox waits, saying why."""
        if self.hold_reason != reason:
            logger.error('inbox "{}": HELD: {}', self.name, reason)
        self.hold_reason = reason
        self._held_locally = True
        self.retry.due = self.clock() + self.backoff.next_delay(None)
        return Outcome.HELD

    def _hold(self, claimed: Path, original: str, started: dt.datetime, reason: str,
              status: int | None, facts: dict[str, Any]) -> Outcome:  # fmt: skip
        if self.hold_reason != reason:
            logger.error('inbox "{}": HELD: {}. {} and later files wait until this is fixed '
                         "(url, username, password, ca_bundle in the config, or the server).",
                         self.name, reason, original)  # fmt: skip
        self.hold_reason = reason
        self.retry.due = self.clock() + self.inbox.hold_retry_seconds
        self.waiting[claimed.name] = f"held: {reason}"
        self._journal(claimed.name, original, started, self.wall(), status, "held", reason, facts)
        self._report(FileReport(self.name, original, Outcome.HELD, reason))
        return Outcome.HELD

    def _transient(self, claimed: Path, original: str, started: dt.datetime, reason: str, status: int | None,
                   retry_after: float | None, read_timeout: bool, facts: dict[str, Any], *,
                   foreign: bool = False) -> Outcome:  # fmt: skip
        self.retry.read_timeouts = self.retry.read_timeouts + 1 if read_timeout else 0
        self.retry.foreign_replies = self.retry.foreign_replies + 1 if foreign else 0
        if self.retry.foreign_replies >= FOREIGN_REPLIES_BEFORE_HOLD:
            return self._hold(claimed, original, started, foreign_hold_reason(reason), status, facts)
        if self.retry.read_timeouts >= READ_TIMEOUTS_BEFORE_HOLD:
            reason = (f"{reason}, {self.retry.read_timeouts} times in a row: the server may need longer "
                      f"to import this file; raise 'timeout' (now {self.inbox.timeout:g} s)")  # fmt: skip
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

    def _file_away(self, claimed: Path, destination: str) -> Path | None:
        """Move a claimed file and its result into their folder; None while another
        program (antivirus, backup, indexer) holds the file: we try again shortly,
        and files behind it go on, since its outcome is already on disk."""
        try:
            target = archive.archive(claimed, destination)
        except OSError as exc:
            if archive.is_busy(exc):
                reason = f"sent; moves to {destination}/ once another program releases it ({exc.strerror})"
                if self.waiting.get(claimed.name) != reason:
                    logger.info('inbox "{}": {}: {}', self.name, claimed.name, reason)
            else:  # permissions, a broken share: a person must look; we keep trying
                reason = f"sent; cannot be moved to {destination}/ ({exc.strerror or exc})"
                self._local_hold(f"cannot move {archive.display_name(claimed.name)} into {destination}/: "
                                 f"{exc.strerror or exc}")  # fmt: skip
            self.waiting[claimed.name] = reason
            self._filing.add(claimed.name)
            self._refile_at = self.clock() + NOT_READY_RECHECK
            return None
        self.waiting.pop(claimed.name, None)
        if destination == archive.PROCESSED and self.inbox.keep_days > 0:
            self._archived_at[target.name] = self.clock()
        return target

    def _report(self, report: FileReport) -> None:
        self.reports.append(report)
        for listener in self.listeners:
            try:
                listener(report)
            except Exception:  # noqa: BLE001 - a notifier's fault must not stop uploads
                logger.exception('inbox "{}": a report listener failed', self.name)

    def _clear_retry(self) -> None:
        if self._held_locally:
            logger.info('inbox "{}": the local fault is gone; resuming', self.name)
        elif self.hold_reason is not None:
            logger.info('inbox "{}": the server accepts uploads again; resuming', self.name)
        self.hold_reason = None
        self._held_locally = False
        self.retry = _RetryState()
        self.backoff.reset()

    def _journal(self, file: str, original: str, started: dt.datetime, finished: dt.datetime,
                 status: int | None, outcome: str, summary: str, facts: dict[str, Any]) -> None:  # fmt: skip
        if self.journal is not None:
            self.journal.record(Attempt(self.name, archive.display_name(file), original, facts.get("sha256"),
                                        facts.get("bytes"), result.iso(started), result.iso(finished), status, outcome,
                                        summary, facts.get("endpoint", ""), facts.get("rows")))  # fmt: skip

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
        except OSError:
            return False  # missing or unlistable: nothing this pass can do

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
