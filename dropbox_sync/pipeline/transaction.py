"""One file's transaction: claim, prepare, upload, record, archive.

``FileTransaction`` takes one settled file from the inbox into ``sending/``,
prepares it, uploads it, judges the reply, writes the one result, journals it
and files both away; it also finishes what a crash or another program left
behind in ``sending/`` (a saved result whose file was not moved yet, a result
whose file already was). When to take the next file, and what a retry or a
hold means for the inbox, is the scheduler's job (``worker.py``).
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loguru import logger

from dropbox_sync.errors import FileNotReady, HoldError, TransientError
from dropbox_sync.pipeline import archive, failed_rows, mapper, preflight, result
from dropbox_sync.pipeline.client import ImportClient, Reply, request_deadline
from dropbox_sync.pipeline.outcome import FileReport, Outcome, is_foreign, judge
from dropbox_sync.pipeline.prepare import Rejection, Upload, compare, prepare
from dropbox_sync.pipeline.settle import Observation
from dropbox_sync.pipeline.watcher import Candidate, observe
from dropbox_sync.roster import changes
from dropbox_sync.state.journal import Attempt

NOT_READY_RECHECK = 1.0  # seconds before looking again at a file held open by its writer
# Bookkeeping done while the server imports a file (_post) is only that of files up to this
# size: milliseconds of work, next to a request deadline of at least 2 s.
WINDOW_BYTES = 1 << 20


@dataclass(frozen=True)
class _Unrecorded:
    """A verdict whose result could not be saved yet."""

    original: str
    outcome: Outcome
    summary: str
    result: dict[str, Any]
    log_line: str  # the summary, with the first failed rows for the log
    lesson: _Lesson | None = None  # what the roster memory takes from it, once it is on disk


@dataclass(frozen=True)
class _Lesson:
    """What the roster memory learns from one result, once the result is on disk (``_record``)."""

    upload: Upload
    body: dict[str, Any]
    sent: Path | None  # the CSV as sent; None: nothing was uploaded
    # ``sent`` is the claimed export itself (or nothing): it can still be read where it is
    # filed, so the learning waits for the next upload's wait (``_post``). A temporary or a
    # kept copy is learnt at once, before it goes.
    can_wait: bool


class FileTransaction:
    """The one-file steps of ``worker.InboxWorker``, which inherits them.

    They work on the worker's state: ``inbox``, ``journal``, ``clock``, ``wall``,
    ``client_factory``, ``roster``, ``settler``, ``gate``, ``aftercare``, ``retry``,
    ``waiting``, ``hold_reason``, ``reports``, ``listeners`` and the private fields set in
    ``InboxWorker.__post_init__``; and call back its scheduler for what an attempt means
    for the inbox: ``_settled``, ``_hold``, ``_transient``, ``_local_hold``, ``_clear_retry``.
    """

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
        self._report(
            FileReport(
                self.name,
                archive.display_name(archive.original_of(claimed)),
                outcome,
                str(saved.get("summary", "")),
                target,
            )
        )

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
            return self._local_hold(
                f"cannot move {archive.display_name(candidate.name)} into "
                f"{archive.folder(self.inbox.path, archive.SENDING)}: {exc.strerror or exc}"
            )
        self.waiting.pop(candidate.name, None)
        self.settler.forget(candidate.name)
        # What settled before the claim must be what we upload (DESIGN §5, Claim):
        # seed the claimed key so only a change after the claim restarts settling.
        self.settler.adopt(("claimed", claimed.name), current)
        after = archive.observe_claimed(claimed)
        if after is None and archive.exists_claimed(claimed):
            return self._send(claimed)  # swapped for a link between scan and claim: prepare rejects it
        if after != current:
            self.waiting[claimed.name] = "changed while being claimed; waiting for it to settle"
            return Outcome.NOT_READY
        return self._send(claimed)

    def _send(self, claimed: Path) -> Outcome:
        name = archive.original_of(claimed)  # routes match the name as dropped, never a shortened one
        original = archive.display_name(name)
        started = self.wall()
        before = archive.observe_claimed(claimed)
        prepared = prepare(
            self.inbox,
            claimed,
            name,
            last_rows=self._last_rows,
            approved=archive.is_approved(claimed),
            roster=self.roster,
            now=started,
            compare_later=before is not None and before.size <= WINDOW_BYTES,  # then done in _post
            before_comparing=self.learn_now,
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
            lesson=_Lesson(upload, body, None, can_wait=True),
        )

    def learn_now(self) -> None:
        """Let the roster memory learn what earlier files' results say (``_record`` leaves it
        to the next upload's wait, ``_post``): before anything compares with the memory, and
        at the end of each pass. A crash before it only means those rows are sent again."""
        while self._unlearned:
            self._unlearned.pop(0)()

    def _post(self, upload: Upload, original: str, claimed: Path, now: dt.datetime) -> tuple[Reply, Upload]:
        """Upload, and while the server imports it, do what the roster memory owes: learn
        from the files before (``learn_now``), then compare this one (``prepare.compare``).

        That work runs on this thread from the client's ``on_sent`` hook, once the whole
        request is out and before the reply is read: the server's time, otherwise spent
        waiting. Neither step may change what is sent (a policy whose memory shapes the
        upload is compared in ``prepare``, before it), and each is small (``WINDOW_BYTES``)
        next to the request's deadline. Whatever did not happen there (the request failed
        before it was out, an unexpected error) happens after the reply, as before."""
        compared: list[Upload] = []

        def while_the_server_works() -> None:
            try:
                self.learn_now()
                if upload.compare_later:
                    compared.append(compare(self.inbox, upload, claimed, self.roster, now))
            except Exception:  # noqa: BLE001 - never break the request; redone below, where it raises
                logger.opt(exception=True).debug('inbox "{}": bookkeeping during the upload failed', self.name)

        reply = self._http().upload(
            upload.path, filename=original, url=upload.route.url, on_sent=while_the_server_works
        )
        if upload.compare_later:
            upload = compared[0] if compared else compare(self.inbox, upload, claimed, self.roster, now)
        return reply, upload

    def _remember(self, lesson: _Lesson, sent: Path | None) -> None:
        """The one place the roster memory learns: what the server confirmed of what was sent
        (``sent``: that CSV, where it is now; None: nothing was uploaded). Called once the
        result is on disk, so the memory is never ahead of the results: a crash between the
        two only means those rows are sent again."""
        upload = lesson.upload
        try:
            changes.remember(
                self.roster, self.name, upload.route.safe_url, upload.changes, sent, lesson.body, self.wall()
            )
        except Exception:  # noqa: BLE001 - the import happened: a memory problem must never make us send again
            logger.exception(
                'inbox "{}": cannot update the roster memory; its rows are sent again next time', self.name
            )

    def _last_rows(self, endpoint: str) -> int | None:
        """Rows of the last import on a route, for the shrink guard."""
        return self.journal.last_rows(self.name, endpoint) if self.journal is not None else None

    def _upload(
        self, claimed: Path, original: str, started: dt.datetime, upload: Upload, before: Observation | None
    ) -> Outcome:
        facts = upload.facts
        self.retry.attempts += 1
        self._beat, self._uploading = self.clock(), original
        self._upload_deadline = request_deadline(self.inbox, upload.size)
        try:
            reply, upload = self._post(upload, original, claimed, started)
            facts = upload.facts  # the comparison's, made during the upload
        except HoldError as exc:
            return self._hold(claimed, original, started, str(exc), exc.status, facts)
        except TransientError as exc:
            return self._transient(
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
            self._beat, self._uploading = self.clock(), None
        verdict, reason = judge(reply)
        if verdict is Outcome.HELD:
            return self._hold(claimed, original, started, reason, reply.status, facts)
        if verdict is Outcome.RETRY:
            return self._transient(
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
        if archive.observe_claimed(claimed) != before or self.gate.still_written(claimed):
            # The writer was still at it: what arrived may be partial. Settle and send again.
            logger.warning(
                'inbox "{}": {} changed during the upload; it will be sent again once it settles', self.name, original
            )
            return Outcome.NOT_READY
        facts["sha256"] = reply.sha256
        facts.update(reply.notes())
        facts.update(self._keep_sent(claimed, upload, reply))
        kept = archive.sent_path(claimed)
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
            lesson=_Lesson(upload, body, sent, can_wait=sent == claimed and upload.size <= WINDOW_BYTES),
        )

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

    def _http(self) -> ImportClient:
        if self._client is None:
            self._client = self.client_factory(self.inbox)
        return self._client

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
        lesson: _Lesson | None = None,
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
            archived_as=archive.display_name(claimed.name),
            outcome=outcome.value,
            stage=stage,
            endpoint=self.inbox.safe_url,
            http_status=status,
            facts=facts,
            attempts=self.retry.attempts,
            started=started,
            finished=finished,
        )
        summary = reply.summary if reply else str(body.get("summary", ""))  # one line, however odd
        if outcome is Outcome.FAILED and reply is not None:
            summary_line = summary + failed_rows.for_log(claimed, body.get("details"), facts, self.name)
        else:
            summary_line = summary
        # The journal first: it is history, and often on another disk than the inbox.
        self._journal(claimed.name, original, started, finished, status, outcome.value, summary, facts)
        return self._record(claimed, _Unrecorded(original, outcome, summary, data, summary_line, lesson))

    def _record(self, claimed: Path, verdict: _Unrecorded) -> Outcome:
        """Save the result beside the claimed file, then file both away.

        A local error (disk full, permissions) keeps the verdict in memory and
        holds the inbox with the OS's reason: the reply is never thrown away,
        so the file is not sent again; saving is retried until it works."""
        seen = archive.observe_claimed(claimed)  # what was sent, for the aftercare watch
        try:
            archive.write_json_atomically(archive.result_path(claimed), verdict.result)
        except OSError as exc:
            self._unrecorded[claimed.name] = verdict
            self.waiting[claimed.name] = f"sent; its result cannot be saved ({exc.strerror or exc})"
            return self._local_hold(
                f"cannot save the result of {verdict.original} in "
                f"{archive.folder(self.inbox.path, archive.SENDING)}: {exc.strerror or exc}. "
                "It was imported and will not be sent again; saving is retried"
            )
        self._unrecorded.pop(claimed.name, None)
        lesson = verdict.lesson
        if lesson is not None and not lesson.can_wait:
            self._remember(lesson, lesson.sent)  # never ahead of the result, and before it goes
        self.waiting.pop(claimed.name, None)
        outcome = verdict.outcome
        self._clear_retry()  # before filing away, which may hold for a local fault of its own
        destination = archive.HELD if outcome is Outcome.GUARDED else outcome.value
        target = self._file_away(claimed, destination)
        if target is not None:
            self.aftercare.watch(target, seen)
        if lesson is not None and lesson.can_wait:
            if target is None and lesson.sent is not None:
                self._remember(lesson, lesson.sent)  # not filed yet (busy): read where it is
            else:  # read where it was filed, during the next upload (learn_now, _post)
                self._unlearned.append(functools.partial(self._remember, lesson, lesson.sent and target))
        log = {Outcome.PROCESSED: logger.success, Outcome.GUARDED: logger.warning}.get(outcome, logger.error)
        where = f"{destination}/{target.name}" if target else f"{destination}/ once released"
        log('inbox "{}": {} -> {} ({})', self.name, verdict.original, where, verdict.log_line)
        self._report(FileReport(self.name, verdict.original, outcome, verdict.summary, target))
        self.settler.forget(("claimed", claimed.name))
        return outcome

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
                self._local_hold(
                    f"cannot move {archive.display_name(claimed.name)} into {destination}/: {exc.strerror or exc}"
                )
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

    def _journal(
        self,
        file: str,
        original: str,
        started: dt.datetime,
        finished: dt.datetime,
        status: int | None,
        outcome: str,
        summary: str,
        facts: dict[str, Any],
    ) -> None:
        if self.journal is not None:
            self.journal.record(
                Attempt(
                    self.name,
                    archive.display_name(file),
                    original,
                    facts.get("sha256"),
                    facts.get("bytes"),
                    result.iso(started),
                    result.iso(finished),
                    status,
                    outcome,
                    summary,
                    facts.get("endpoint", ""),
                    facts.get("rows"),
                )
            )
