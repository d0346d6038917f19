"""One file's transaction: claim, prepare, upload, record, archive.

``FileTransaction`` takes one settled file from the inbox into ``sending/``,
prepares it, uploads it, judges the reply and writes the one result;
``filing.py`` then journals it and files both away (while the server imports the
next file) and finishes what a crash or another program left in ``sending/``. When to take
the next file, and what a retry or a hold means for the inbox, is the
scheduler's job (``worker.py``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loguru import logger

from dropbox_sync.errors import FileNotReady, HoldError, TransientError
from dropbox_sync.pipeline import (
    archive,
    archive_names,
    claim,
    failed_rows,
    mapper,
    preflight,
    recovery,
    result,
    workdirs,
    workfiles,
)
from dropbox_sync.pipeline.client import ImportClient, Reply, request_deadline
from dropbox_sync.pipeline.filing import Filing, Verdict
from dropbox_sync.pipeline.lessons import WINDOW_BYTES, Lesson, RosterLessons
from dropbox_sync.pipeline.outcome import Outcome, is_foreign, judge
from dropbox_sync.pipeline.prepare import prepare
from dropbox_sync.pipeline.prepared import Rejection, Upload
from dropbox_sync.pipeline.scheduler import Scheduler
from dropbox_sync.pipeline.settle import Observation
from dropbox_sync.pipeline.watcher import Candidate, observe

NOT_READY_RECHECK = 1.0  # seconds before looking again at a file held open by its writer


class FileTransaction:
    """One file's way through the pipeline, for one inbox's ``Scheduler``: it owns the HTTP
    client, the roster lessons, the verdicts not saved yet and the filing of recorded files;
    the scheduler owns the order, the retry and hold state, history and reports."""

    def __init__(self, worker: Scheduler) -> None:
        self.worker = worker
        self.inbox = worker.inbox
        self.name = worker.inbox.name
        self.clock, self.wall = worker.clock, worker.wall
        self.settler, self.gate, self.aftercare = worker.settler, worker.gate, worker.aftercare
        self.lessons = RosterLessons(worker.inbox, worker.roster, worker.wall)
        self.filing = Filing(worker, self.lessons)  # moving recorded files into their folders
        self.unrecorded: dict[str, Verdict] = {}  # claimed name -> a verdict not yet on disk
        self.not_ready_until = 0.0  # a file held open by its writer: look again then
        self._client: ImportClient | None = None
        self.result_ahead: workfiles.Temporary | None = None  # made during the upload (``_post``)

    def close(self) -> None:
        self.filing.finish()
        # No lessons to learn here: every pass learns its own before it ends, through the
        # folders it checked (worker._cycle); read by name after that, one could be planted.
        if self._client is not None:
            self._client.close()
            self._client = None

    def reunite_orphan_results(self) -> None:
        """A result left in sending/ after its file moved (a crash, or a held result file)."""
        for orphan in recovery.orphan_results(self.inbox.path):
            try:
                archived = recovery.reunite_orphan_result(orphan)
            except OSError as exc:
                if not claim.is_busy(exc):
                    raise
                continue  # held by another program: next pass
            if archived is not None:
                logger.info('inbox "{}": put the result of {} beside it', self.name, archived.name)

    def take(self, candidate: Candidate) -> Outcome:
        """Claim a settled file and send it, unless it changed since the scan."""
        if self.clock() < self.not_ready_until:
            return Outcome.NOT_READY
        current = observe(self.inbox.path / candidate.name)
        if current is None or not self.worker.settled(candidate.name, self.inbox.path / candidate.name, current):
            return Outcome.NOT_READY
        try:
            claimed = claim.claim(self.inbox.path, candidate.name, self.wall(), done_marker=self.inbox.done_marker)
        except FileNotReady as exc:
            logger.debug('inbox "{}": {}; will look again', self.name, exc)
            self.worker.waiting[candidate.name] = str(exc)
            self.not_ready_until = self.clock() + NOT_READY_RECHECK
            return Outcome.NOT_READY
        except OSError as exc:  # not "busy": permissions, a full disk, a broken share
            self.worker.waiting[candidate.name] = f"cannot be claimed ({exc.strerror or exc})"
            return self.worker.local_hold(
                f"cannot move {archive_names.display_name(candidate.name)} into "
                f"{archive.folder(self.inbox.path, workdirs.SENDING)}: {exc.strerror or exc}"
            )
        self.worker.waiting.pop(candidate.name, None)
        self.settler.forget(candidate.name)
        # What settled before the claim must be what we upload (DESIGN §5, Claim):
        # seed the claimed key so only a change after the claim restarts settling.
        self.settler.adopt(("claimed", claimed.name), current)
        after = workfiles.observe_claimed(claimed)
        if after is None and workfiles.exists_claimed(claimed):
            return self.send(claimed)  # swapped for a link between scan and claim: prepare rejects it
        if after != current:
            self.worker.waiting[claimed.name] = "changed while being claimed; waiting for it to settle"
            return Outcome.NOT_READY
        return self.send(claimed, seen=after)

    def send(self, claimed: Path, *, seen: Observation | None = None) -> Outcome:
        """``seen``: the claimed file as just observed (``take``), else looked at here."""
        name = claim.original_of(claimed)  # routes match the name as dropped, never a shortened one
        original = archive_names.display_name(name)
        started = self.wall()
        before = seen if seen is not None else workfiles.observe_claimed(claimed)
        prepared = prepare(
            self.inbox,
            claimed,
            name,
            last_rows=self._last_rows,
            approved=archive.is_approved(claimed),
            roster=self.worker.roster,
            now=started,
            compare_later=before is not None and before.size <= WINDOW_BYTES,  # then in RosterLessons.post
            before_comparing=self._learn_everything_before,
        )
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
            if self.result_ahead is not None:  # no result written (a retry, a hold, a change)
                self._take_result_ahead().discard()

    def _nothing_to_send(self, claimed: Path, original: str, started: dt.datetime, upload: Upload) -> Outcome:
        """Delta found no change: filed in processed/ with a result of our own, not uploaded."""
        assert upload.changes is not None
        body = {"success": True, "summary": upload.changes.no_changes_summary()}
        facts = {**upload.facts, "sha256": preflight.file_sha256(claimed, max_file_size=self.inbox.max_file_size)}
        return self._conclude(
            claimed,
            original,
            started,
            body,
            None,
            facts,
            result.NO_CHANGES,
            Outcome.PROCESSED,
            lesson=Lesson.of(upload, body, None, claimed),
        )

    def _learn_everything_before(self) -> None:
        """Before a comparison made ahead of the upload: every earlier file filed (a small
        file's lesson is queued only then: filing.py) and every lesson learnt, in order."""
        self.filing.finish()
        self.lessons.learn_now()

    def _last_rows(self, endpoint: str) -> int | None:
        """Rows of the last import on a route, for the shrink guard (every file before this one
        filed first: its journal row goes in then)."""
        self.filing.finish()
        return self.worker.journal.last_rows(self.name, endpoint) if self.worker.journal is not None else None

    def _upload(
        self, claimed: Path, original: str, started: dt.datetime, upload: Upload, before: Observation | None
    ) -> Outcome:
        facts = upload.facts
        if upload.size > WINDOW_BYTES:  # its body may take minutes to go out: not after that
            self.filing.finish()
        self.worker.retry.attempts += 1
        self.worker.health.upload(original, request_deadline(self.inbox, upload.size))
        try:
            send = functools.partial(self._post, upload, original, claimed)
            reply, upload = self.lessons.post(send, upload, claimed, started)
            facts = upload.facts  # the comparison's, made during the upload
        except HoldError as exc:
            return self.worker.hold(claimed, original, started, str(exc), exc.status, facts)
        except TransientError as exc:
            return self.worker.transient(
                claimed,
                original,
                started,
                str(exc),
                exc.status,
                exc.retry_after,
                exc.read_timeout,
                facts,
                foreign=exc.foreign,
            )
        finally:
            self.worker.health.upload(None)
        verdict, reason = judge(reply)
        if verdict is Outcome.HELD:
            return self.worker.hold(claimed, original, started, reason, reply.status, facts)
        if verdict is Outcome.RETRY:
            return self.worker.transient(
                claimed,
                original,
                started,
                reason,
                reply.status,
                reply.retry_after,
                False,
                facts,
                foreign=is_foreign(reply),
            )
        if workfiles.observe_claimed(claimed) != before or self.gate.still_written(claimed):
            # The writer was still at it: what arrived may be partial. Settle and send again.
            logger.warning(
                'inbox "{}": {} changed during the upload; it will be sent again once it settles', self.name, original
            )
            return Outcome.NOT_READY
        facts["sha256"] = reply.sha256
        facts.update(reply.notes())
        facts.update(self._keep_sent(claimed, upload, reply))
        kept = archive_names.sent_path(claimed)
        sent = kept if upload.rewritten and kept.exists() else upload.path
        body = reply.body or {}
        return self._conclude(
            claimed,
            original,
            started,
            reply.body or {},
            reply,
            facts,
            result.UPLOAD,
            lesson=Lesson.of(upload, body, sent, claimed),
        )

    def _post(self, upload: Upload, original: str, claimed: Path, on_sent: Callable[[], None]) -> Reply:
        def while_the_server_works() -> None:
            try:
                self.filing.finish()  # the file before this one
            except Exception:  # noqa: BLE001 - never break the request; its result is on disk
                logger.exception('inbox "{}": filing the previous file failed; the next pass does it', self.name)
            # The result's temporary next: making a file is most of a small durable write.
            self.result_ahead = workfiles.Temporary.ahead(archive_names.result_path(claimed))
            on_sent()

        try:
            return self._http().upload(
                upload.path, filename=original, url=upload.route.url, on_sent=while_the_server_works
            )
        finally:
            self.filing.finish()  # the hook never ran (no request out): before anything is said of this one

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
            logger.warning(
                'inbox "{}": cannot keep the CSV sent for {}: {}', self.name, claimed.name, exc.strerror or exc
            )
            return {}
        except Exception:  # noqa: BLE001 - the reply is in hand: a nicety must never make us send again
            logger.exception('inbox "{}": cannot trace the reported rows of {} to the export', self.name, claimed.name)
            return {}

    def _take_result_ahead(self) -> workfiles.Temporary | None:
        ahead, self.result_ahead = self.result_ahead, None
        return ahead

    def _http(self) -> ImportClient:
        if self._client is None:
            self._client = self.worker.client_factory(self.inbox)
        return self._client

    def warm_up(self) -> None:
        """Build the HTTP client now, while files settle: httpx imports its transport (httpcore,
        h11) with the first client, tens of milliseconds that would otherwise come before the
        first upload. A failure is left for the upload to meet and report as it always has."""
        try:
            self._http()
        except Exception:  # noqa: BLE001 - the first upload builds it again and says why
            logger.opt(exception=True).debug('inbox "{}": the HTTP client could not be built yet', self.name)

    def _conclude(
        self,
        claimed: Path,
        original: str,
        started: dt.datetime,
        body: dict[str, Any],
        reply: Reply | None,
        facts: dict[str, Any],
        stage: str,
        outcome: Outcome | None = None,
        lesson: Lesson | None = None,
    ) -> Outcome:
        """Every final outcome: write the one result, journal it, file the claimed file away.
        ``lesson``: what the roster memory takes from it, once the result is written."""
        if outcome is None:
            success = reply.success if reply else body.get("success") is True  # "true" as text too
            outcome = Outcome.PROCESSED if success else Outcome.FAILED
        finished = self.wall()
        status = reply.status if reply else None
        data = result.build(
            body,
            inbox=self.name,
            file=original,
            archived_as=archive_names.display_name(claimed.name),
            outcome=outcome.value,
            stage=stage,
            endpoint=self.inbox.safe_url,
            http_status=status,
            facts=facts,
            attempts=self.worker.retry.attempts,
            started=started,
            finished=finished,
        )
        summary = reply.summary if reply else str(body.get("summary", ""))  # one line, however odd
        if outcome is Outcome.FAILED and reply is not None:
            summary_line = summary + failed_rows.for_log(claimed, body.get("details"), facts, self.name)
        else:
            summary_line = summary
        # Its journal row goes in when the file is filed (filing.py), in the server's time of
        # the next file; at once only if the result cannot be saved (``record``).
        attempt = result.attempt(
            self.name, claimed.name, original, started, finished, status, outcome.value, summary, facts
        )
        return self.record(claimed, Verdict(original, outcome, summary, data, summary_line, lesson, attempt))

    def record(self, claimed: Path, verdict: Verdict) -> Outcome:
        """Save the result beside the claimed file, then file both away.

        A local error (disk full, permissions) keeps the verdict in memory and
        holds the inbox with the OS's reason: the reply is never thrown away,
        so the file is not sent again; saving is retried until it works."""
        self.filing.finish()  # the file before this one first
        seen = workfiles.observe_claimed(claimed)  # what was sent, for the aftercare watch
        try:
            workfiles.write_json_atomically(
                archive_names.result_path(claimed), verdict.result, ahead=self._take_result_ahead()
            )
        except OSError as exc:
            if verdict.attempt is not None and not verdict.journalled:
                # The history keeps the import even if the result is never saved (a full disk
                # through a restart); the journal usually lives on another disk than the inbox.
                # If it shares this one, the row is tried again when the file is filed.
                self.worker.journal_attempt(verdict.attempt)
                verdict = dataclasses.replace(verdict, journalled=True)
            self.unrecorded[claimed.name] = verdict
            self.worker.waiting[claimed.name] = f"sent; its result cannot be saved ({exc.strerror or exc})"
            return self.worker.local_hold(
                f"cannot save the result of {verdict.original} in "
                f"{archive.folder(self.inbox.path, workdirs.SENDING)}: {exc.strerror or exc}. "
                "It was imported and will not be sent again; saving is retried"
            )
        self.unrecorded.pop(claimed.name, None)
        self.lessons.before_filing(verdict.lesson)  # never ahead of the result
        self.worker.waiting.pop(claimed.name, None)
        self.worker.clear_retry()  # before filing away, which may hold for a local fault of its own
        self.filing.later(claimed, verdict, seen)  # while the server imports the next file
        return verdict.outcome
