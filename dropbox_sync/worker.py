"""One inbox's work: discover -> settle -> claim -> pre-flight -> upload -> record -> archive.

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

from dropbox_sync import __version__, archive, preflight, routes, transcode
from dropbox_sync.backoff import Backoff
from dropbox_sync.client import ImportClient, Reply
from dropbox_sync.config import InboxConfig, Route
from dropbox_sync.errors import FileNotReady, HoldError, TransientError
from dropbox_sync.journal import Attempt, Journal
from dropbox_sync.outcome import FileReport, Outcome, judge
from dropbox_sync.settle import Clock, Observation, Settler
from dropbox_sync.watcher import Candidate, observe, scan

READ_TIMEOUTS_BEFORE_HOLD = 3
NOT_READY_RECHECK = 1.0  # seconds before looking again at a file held open by its writer
MISSING_FOLDER_RECHECK = 5.0
PRUNE_EVERY = 3600.0  # retention of processed/ is checked hourly


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _iso(moment: dt.datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
    since: float | None = None  # first failure of the current streak


@dataclass
class InboxWorker:
    inbox: InboxConfig
    journal: Journal | None = None
    clock: Clock = time.monotonic
    wall: Callable[[], dt.datetime] = utc_now
    rand: Callable[[], float] = random.random
    client_factory: Callable[[InboxConfig], ImportClient] = ImportClient
    wake: threading.Event = field(default_factory=threading.Event)
    reports: list[FileReport] = field(default_factory=list)
    # Called with every report as it happens (notifications, status); must be quick.
    listeners: list[Callable[[FileReport], None]] = field(default_factory=list)
    hold_reason: str | None = None

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
        self._recovered = False
        self._next_prune = 0.0
        self._filing: set[str] = set()  # sent and reported, the move still blocked
        self._refile_at = 0.0

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
            allowed += self.inbox.timeout + self.inbox.connect_timeout
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
        blocked = self._send_claimed(stop)
        if blocked is not None:
            return blocked
        candidates = self._scan()
        for candidate in candidates:
            if stop.is_set():
                return 0.0
            outcome = self._take(candidate)
            if outcome in (Outcome.HELD, Outcome.RETRY):
                return self._seconds_until_retry()
        return self._next_pass_delay()

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
        removed = archive.prune_processed(self.inbox.path, self.inbox.keep_days, self.wall())
        if removed:
            logger.info('inbox "{}": removed {} file(s) older than {:g} days from processed/ (keep_days)',
                        self.name, len(removed), self.inbox.keep_days)  # fmt: skip

    def _reunite_orphan_results(self) -> None:
        """A result left in sending/ after its file moved (a crash, or a held result file)."""
        for result in archive.orphan_results(self.inbox.path):
            try:
                archived = archive.reunite_orphan_result(result)
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
            current = observe(claimed)
            if current is None and os.path.lexists(claimed):
                self._reject_irregular(claimed)
                continue
            if current is None or not self.settler.observe(("claimed", claimed.name), current):
                self.waiting[claimed.name] = "claimed; sent once unchanged for settle_seconds"
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
            destination = archive.PROCESSED if saved.get("success") is True else archive.FAILED
        target = self._file_away(claimed, destination)
        if target is None:
            return
        if claimed.name in self._filing:
            self._filing.discard(claimed.name)
            logger.info('inbox "{}": {} released; filed in {}/', self.name, claimed.name, destination)
            return  # reported when it was sent
        logger.info('inbox "{}": finished archiving {} into {}/ after a restart', self.name, claimed.name, destination)
        outcome = Outcome.GUARDED if destination == archive.HELD else Outcome(destination)
        self._report(FileReport(self.name, archive.display_name(archive.original_name(claimed.name)),
                                outcome, str(saved.get("summary", "")), target))  # fmt: skip

    def _scan(self) -> list[Candidate]:
        try:
            candidates, ignored = scan(self.inbox)
        except OSError as exc:
            logger.warning('inbox "{}": cannot list the folder ({})', self.name, exc.strerror or exc)
            return []
        for item in ignored:
            if item.name not in self._reported_ignored:
                logger.warning('inbox "{}": ignoring {}: it {}', self.name, item.name, item.reason)
                self._reported_ignored.add(item.name)
        candidates, unrouted = routes.in_sending_order(self.inbox, candidates)
        for name in unrouted:
            if name not in self._reported_ignored:
                logger.warning('inbox "{}": {} matches no route; left in place, not uploaded', self.name, name)
                self._reported_ignored.add(name)
        present = {c.name for c in candidates}
        self._reported_ignored &= {i.name for i in ignored} | set(unrouted)
        claimed = {p.name for p in archive.claimed_files(self.inbox.path)}
        self.settler.forget_all_but(present | {("claimed", name) for name in claimed})
        self.waiting = {k: v for k, v in self.waiting.items() if k in present or k in claimed}
        ready = []
        for candidate in candidates:
            if self.settler.observe(candidate.name, candidate.observation):
                ready.append(candidate)
            else:
                self.waiting[candidate.name] = "settling (still changing, or seen too recently)"
        return ready

    def _take(self, candidate: Candidate) -> Outcome:
        """Claim a settled file and send it, unless it changed since the scan."""
        if self.clock() < self._not_ready_until:
            return Outcome.NOT_READY
        current = observe(self.inbox.path / candidate.name)
        if current is None or not self.settler.observe(candidate.name, current):
            return Outcome.NOT_READY
        try:
            claimed = archive.claim(self.inbox.path, candidate.name, self.wall(), done_marker=self.inbox.done_marker)
        except FileNotReady as exc:
            logger.debug('inbox "{}": {}; will look again', self.name, exc)
            self.waiting[candidate.name] = str(exc)
            self._not_ready_until = self.clock() + NOT_READY_RECHECK
            return Outcome.NOT_READY
        self.waiting.pop(candidate.name, None)
        self.settler.forget(candidate.name)
        # What settled before the claim must be what we upload (DESIGN §5, Claim):
        # seed the claimed key so only a change after the claim restarts settling.
        self.settler.adopt(("claimed", claimed.name), current)
        after = observe(claimed)
        if after is None and os.path.lexists(claimed):
            return self._reject_irregular(claimed)  # swapped for a link between scan and claim
        if after != current:
            self.waiting[claimed.name] = "changed while being claimed; waiting for it to settle"
            return Outcome.NOT_READY
        return self._send(claimed)

    # -- one file -----------------------------------------------------------------

    def _reject_irregular(self, claimed: Path) -> Outcome:
        """A link or special file got into sending/: never follow it; file it in failed/."""
        original = archive.display_name(archive.original_name(claimed.name))
        body = {"success": False, "summary": f"Not uploaded: {original} is a link or not a regular file; "
                                             "links are never followed or uploaded."}  # fmt: skip
        return self._finish(claimed, original, self.wall(), body, None, {"sha256": None, "bytes": None},
                            stage="preflight")  # fmt: skip

    def _send(self, claimed: Path) -> Outcome:
        original = archive.display_name(archive.original_name(claimed.name))
        started = self.wall()
        found = routes.route_for(self.inbox, archive.original_name(claimed.name))
        if found is None:
            body = {"success": False, "summary": f"Not uploaded: {original} matches no route of this inbox."}
            return self._finish(claimed, original, started, body, None, {}, stage="preflight")
        route = found[1]
        before = observe(claimed)
        try:
            upload_path = self._utf8_source(claimed)
        except transcode.TranscodeError as exc:
            facts = {"endpoint": route.safe_url, "bytes": before.size if before else None}
            body = {"success": False, "summary": str(exc)}
            return self._finish(claimed, original, started, body, None, facts, stage="preflight")
        try:
            return self._inspect_and_upload(claimed, upload_path, original, started, route, before)
        finally:
            if upload_path != claimed:
                upload_path.unlink(missing_ok=True)

    def _utf8_source(self, claimed: Path) -> Path:
        """What to upload: the file itself, or its UTF-8 copy when source_encoding is set."""
        if not self.inbox.source_encoding:
            return claimed
        return transcode.to_utf8(claimed, self.inbox.source_encoding)

    def _inspect_and_upload(self, claimed: Path, upload_path: Path, original: str, started: dt.datetime,
                            route: Route, before: Observation | None) -> Outcome:  # fmt: skip
        try:
            # No digest here: the upload hashes the bytes as they go out,
            # which saves a whole pass over a large file.
            inspection = preflight.inspect(upload_path, max_file_size=self.inbox.max_file_size, digest=False)
        except OSError as exc:
            inspection = preflight.Inspection(before.size if before else 0, None,
                                              f"File cannot be read: {exc.strerror or exc}.")  # fmt: skip
        facts = {"endpoint": route.safe_url, "sha256": inspection.sha256, "bytes": inspection.size,
                 "rows": inspection.rows}  # fmt: skip
        if self.inbox.source_encoding:
            facts["transcoded_from"] = self.inbox.source_encoding
        if inspection.problem is not None:
            facts["sha256"] = preflight.file_sha256(upload_path, max_file_size=self.inbox.max_file_size)
            body = {"success": False, "summary": inspection.problem}
            return self._finish(claimed, original, started, body, None, facts, stage="preflight")
        guard = self._shrink_guard(claimed, route, inspection.rows)
        if guard is not None:
            return self._guarded(claimed, original, started, guard, facts)
        self.retry.attempts += 1
        self._beat, self._uploading = self.clock(), original
        try:
            reply = self._http().upload(upload_path, filename=original, url=route.url)
        except HoldError as exc:
            return self._hold(claimed, original, started, str(exc), exc.status, facts)
        except TransientError as exc:
            return self._transient(claimed, original, started, str(exc), exc.status, exc.retry_after,
                                   exc.read_timeout, facts)  # fmt: skip
        finally:
            self._beat, self._uploading = self.clock(), None
        verdict, reason = judge(reply)
        if verdict is Outcome.HELD:
            return self._hold(claimed, original, started, reason, reply.status, facts)
        if verdict is Outcome.RETRY:
            return self._transient(claimed, original, started, reason, reply.status, reply.retry_after, False, facts)
        if observe(claimed) != before:
            # The writer was still at it: what arrived may be partial. Settle and send again.
            logger.warning('inbox "{}": {} changed during the upload; it will be sent again once it settles',
                           self.name, original)  # fmt: skip
            return Outcome.NOT_READY
        facts["sha256"] = reply.sha256
        if archive.approval_marker(claimed).exists():
            facts["approved"] = True
        return self._finish(claimed, original, started, reply.body or {}, reply, facts, stage="upload")

    def _shrink_guard(self, claimed: Path, route: Route, rows: int) -> str | None:
        """Why this file must wait for a person, if it is suspiciously small."""
        if self.inbox.shrink_guard <= 0 or self.journal is None or archive.approval_marker(claimed).exists():
            return None
        last = self.journal.last_rows(self.name, route.safe_url)
        if last is None or rows >= self.inbox.shrink_guard * last:
            return None
        return (f"Held for approval: {rows} rows, but the last file imported on this route had {last} "
                f"(shrink_guard = {self.inbox.shrink_guard:g}). If the export is right, run: "
                f"dropbox-sync approve {claimed.name}")  # fmt: skip

    def _guarded(self, claimed: Path, original: str, started: dt.datetime, reason: str,
                 facts: dict[str, Any]) -> Outcome:  # fmt: skip
        body = {"success": False, "summary": reason}
        archive.write_json_atomically(archive.result_path(claimed), {**body, "dropbox_sync": {
            "version": __version__, "inbox": self.name, "file": original, "archived_as": claimed.name,
            "outcome": Outcome.GUARDED.value, "stage": "shrink guard", **facts}})  # fmt: skip
        self._journal(claimed.name, original, started, self.wall(), None, Outcome.GUARDED.value, reason, facts)
        self.waiting.pop(claimed.name, None)
        target = self._file_away(claimed, archive.HELD)
        logger.warning('inbox "{}": {} -> held/{}: {}', self.name, original, target.name if target else "", reason)
        self._report(FileReport(self.name, original, Outcome.GUARDED, reason, target))
        self.settler.forget(("claimed", claimed.name))
        return Outcome.GUARDED

    def _http(self) -> ImportClient:
        if self._client is None:
            self._client = self.client_factory(self.inbox)
        return self._client

    def _finish(self, claimed: Path, original: str, started: dt.datetime, body: dict[str, Any],
                reply: Reply | None, facts: dict[str, Any], *, stage: str) -> Outcome:  # fmt: skip
        outcome = Outcome.PROCESSED if body.get("success") is True else Outcome.FAILED
        finished = self.wall()
        ours = {
            "version": __version__,
            "inbox": self.name,
            "file": original,
            "archived_as": archive.display_name(claimed.name),
            "outcome": outcome.value,
            "stage": stage,
            "endpoint": self.inbox.safe_url,
            "http_status": reply.status if reply else None,
            **facts,  # its endpoint, when known, is the route's
            "attempts": self.retry.attempts,
            "started": _iso(started),
            "finished": _iso(finished),
        }
        archive.write_json_atomically(archive.result_path(claimed), {**body, "dropbox_sync": ours})
        summary = str(body.get("summary", ""))
        self._journal(claimed.name, original, started, finished, reply.status if reply else None,
                      outcome.value, summary, facts)  # fmt: skip
        self.waiting.pop(claimed.name, None)
        target = self._file_away(claimed, outcome.value)
        log = logger.success if outcome is Outcome.PROCESSED else logger.error
        where = f"{outcome.value}/{target.name}" if target else f"{outcome.value}/ once released"
        log('inbox "{}": {} -> {} ({})', self.name, original, where, summary)
        self._report(FileReport(self.name, original, outcome, summary, target))
        self._clear_retry()
        self.settler.forget(("claimed", claimed.name))
        return outcome

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
                   retry_after: float | None, read_timeout: bool, facts: dict[str, Any]) -> Outcome:  # fmt: skip
        self.retry.read_timeouts = self.retry.read_timeouts + 1 if read_timeout else 0
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
            if not archive.is_busy(exc):
                raise
            reason = f"sent; moves to {destination}/ once another program releases it ({exc.strerror})"
            if self.waiting.get(claimed.name) != reason:
                logger.info('inbox "{}": {}: {}', self.name, claimed.name, reason)
            self.waiting[claimed.name] = reason
            self._filing.add(claimed.name)
            self._refile_at = self.clock() + NOT_READY_RECHECK
            return None
        self.waiting.pop(claimed.name, None)
        return target

    def _report(self, report: FileReport) -> None:
        self.reports.append(report)
        for listener in self.listeners:
            try:
                listener(report)
            except Exception:  # noqa: BLE001 - a notifier's fault must not stop uploads
                logger.exception('inbox "{}": a report listener failed', self.name)

    def _clear_retry(self) -> None:
        if self.hold_reason is not None:
            logger.info('inbox "{}": the server accepts uploads again; resuming', self.name)
        self.hold_reason = None
        self.retry = _RetryState()
        self.backoff.reset()

    def _journal(self, file: str, original: str, started: dt.datetime, finished: dt.datetime,
                 status: int | None, outcome: str, summary: str, facts: dict[str, Any]) -> None:  # fmt: skip
        if self.journal is not None:
            self.journal.record(Attempt(self.name, archive.display_name(file), original, facts.get("sha256"),
                                        facts.get("bytes"), _iso(started), _iso(finished), status, outcome,
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
        if not self.inbox.path.is_dir():
            return False
        if archive.claimed_files(self.inbox.path):
            return True
        try:
            candidates, _ = scan(self.inbox)
        except OSError:
            return False
        return bool(candidates)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
