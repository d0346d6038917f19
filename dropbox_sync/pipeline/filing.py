"""Filing a recorded file: its journal row, moving it and its result into processed/, failed/
or held/, then announcing it (the log line, the reports), in the order files were recorded.

Once a file's result is on disk (``FileTransaction.record``), nothing that follows can make
it be sent again: a crash leaves it in sending/ with its result, and the next start files it
(``recovered``, which also writes the journal row the crash kept out, once). So its filing
waits for the next upload's ``on_sent`` hook, while the server imports the next file
(``later``), instead of between two uploads; it happens at once (``finish``) before anything
else records, reports, compares (a small file's lesson is queued here), reads the journal for
the shrink guard, or looks at sending/ (the worker's queue, its next wake-up), and at the end
of every pass, and before an upload beyond the 1 MiB window (its body may take minutes to go
out). A file another program holds (antivirus, backup, indexer) is filed at a later pass;
files behind it go on.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loguru import logger

from dropbox_sync.pipeline import archive, archive_names, claim, result, workdirs
from dropbox_sync.pipeline.lessons import Lesson, RosterLessons
from dropbox_sync.pipeline.outcome import FileReport, Outcome
from dropbox_sync.pipeline.scheduler import Scheduler
from dropbox_sync.pipeline.settle import Observation
from dropbox_sync.state.journal import Attempt

REFILE_AFTER = 1.0  # seconds before trying again to move a file another program holds


@dataclass(frozen=True)
class Verdict:
    """A file's final outcome: its result, and what is said and learnt of it."""

    original: str
    outcome: Outcome
    summary: str
    result: dict[str, Any]
    log_line: str  # the summary, with the first failed rows for the log
    lesson: Lesson | None = None  # what the roster memory takes from it, once it is on disk
    attempt: Attempt | None = None  # its journal row, written when it is filed (None: none)
    journalled: bool = False  # its row was tried at once (no result yet): at filing, only if not there


class Filing:
    """One inbox's recorded files on their way into their folders."""

    def __init__(self, worker: Scheduler, lessons: RosterLessons) -> None:
        self.worker = worker
        self.name = worker.inbox.name
        self.lessons = lessons
        self.blocked: set[str] = set()  # sent and reported, the move still blocked
        self.retry_at = 0.0  # a blocked move: try again then
        self._unfiled: Callable[[], None] | None = None  # the last recorded file (``later``)

    def later(self, claimed: Path, verdict: Verdict, seen: Observation | None) -> None:
        """File ``claimed`` (its result is on disk) at the next ``finish``. ``seen``: the file
        as sent, for the aftercare watch."""
        self.finish()
        self._unfiled = functools.partial(self._file, claimed, verdict, seen)

    def finish(self) -> None:
        """File away and announce the last recorded file, if it waits."""
        unfiled, self._unfiled = self._unfiled, None
        if unfiled is not None:
            unfiled()

    def _file(self, claimed: Path, verdict: Verdict, seen: Observation | None) -> None:
        if verdict.attempt is not None:
            # History before anyone hears of it (once: a full disk may have kept the first try out).
            self.worker.journal_attempt(verdict.attempt, unless_there=verdict.journalled)
        outcome = verdict.outcome
        destination = workdirs.HELD if outcome is Outcome.GUARDED else outcome.value
        target = self.move(claimed, destination)
        if target is not None:
            self.worker.aftercare.watch(target, seen)
        self.lessons.after_filing(verdict.lesson, target)
        log = {Outcome.PROCESSED: logger.success, Outcome.GUARDED: logger.warning}.get(outcome, logger.error)
        where = f"{destination}/{target.name}" if target else f"{destination}/ once released"
        log('inbox "{}": {} -> {} ({})', self.name, verdict.original, where, verdict.log_line)
        self.worker.report(FileReport(self.name, verdict.original, outcome, verdict.summary, target))
        self.worker.settler.forget(("claimed", claimed.name))

    def recovered(self, claimed: Path, saved: dict[str, Any]) -> None:
        """A file whose result is saved but which is still in sending/: held open by another
        program when we tried to move it, or a crash came between the two. Finish the move, and
        the journal row, which a crash before the filing kept from being written."""
        self.finish()
        attempt = result.recorded_attempt(self.name, claimed.name, saved)
        if attempt is not None:
            self.worker.journal_attempt(attempt, unless_there=True)
        outcome = Outcome(result.recorded_outcome(saved))
        destination = workdirs.HELD if outcome is Outcome.GUARDED else outcome.value
        target = self.move(claimed, destination)
        if target is None:
            return
        if self.worker.held_locally:
            self.worker.clear_retry()
        if claimed.name in self.blocked:
            self.blocked.discard(claimed.name)
            logger.info('inbox "{}": {} released; filed in {}/', self.name, claimed.name, destination)
            return  # reported when it was sent
        logger.info('inbox "{}": finished archiving {} into {}/ after a restart', self.name, claimed.name, destination)
        self.worker.report(
            FileReport(
                self.name,
                archive_names.display_name(claim.original_of(claimed)),
                outcome,
                str(saved.get("summary", "")),
                target,
            )
        )

    def move(self, claimed: Path, destination: str) -> Path | None:
        """Move a claimed file and its result into their folder; None while another
        program (antivirus, backup, indexer) holds the file: we try again shortly,
        and files behind it go on, since its outcome is already on disk."""
        try:
            target = archive.archive(claimed, destination)
        except OSError as exc:
            if claim.is_busy(exc):
                reason = f"sent; moves to {destination}/ once another program releases it ({exc.strerror})"
                if self.worker.waiting.get(claimed.name) != reason:
                    logger.info('inbox "{}": {}: {}', self.name, claimed.name, reason)
            else:  # permissions, a broken share: a person must look; we keep trying
                reason = f"sent; cannot be moved to {destination}/ ({exc.strerror or exc})"
                self.worker.local_hold(
                    f"cannot move {archive_names.display_name(claimed.name)} into {destination}/: {exc.strerror or exc}"
                )
            self.worker.waiting[claimed.name] = reason
            self.blocked.add(claimed.name)
            self.retry_at = self.worker.clock() + REFILE_AFTER
            return None
        self.worker.waiting.pop(claimed.name, None)
        if destination == workdirs.PROCESSED:
            self.worker.retention.filed(target.name)
        return target
