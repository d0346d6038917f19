"""What the roster memory owes for each file of an inbox: learning from its result, and
comparing the next file with what it learnt, in order.

Learning from a result (one SQLite transaction) and comparing the next file took a sixth of
the time per small file, between two uploads, while the server's time went by unused. So for
a file of up to ``WINDOW_BYTES`` both can happen while the server imports the next file: from
the client's ``on_sent`` hook, on the uploading thread, once the whole request is out and
before the reply is read (``post``); a lesson waits that long only where the route's memory
just informs results (``Lesson.of``). Order is kept: a comparison always follows every
learning before it (``learn_now`` runs first there, before a comparison ``prepare`` makes
itself, and at the end of each pass). The memory is never ahead of the results: a lesson is
only taken once its result is on disk, and a crash before it is learnt only means those rows
are sent again (roster/memory.py).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loguru import logger

from dropbox_sync.config import InboxConfig
from dropbox_sync.pipeline.prepare import compare
from dropbox_sync.pipeline.prepared import Upload
from dropbox_sync.pipeline.reply import Reply
from dropbox_sync.roster import changes
from dropbox_sync.roster.memory import Roster

# Work done while the server imports a file is only that of files up to this size:
# milliseconds, next to a request deadline of at least 2 s.
WINDOW_BYTES = 1 << 20


@dataclass(frozen=True)
class Lesson:
    """What the roster memory learns from one result, once the result is on disk."""

    upload: Upload
    body: dict[str, Any]
    sent: Path | None  # the CSV as sent; None: nothing was uploaded
    can_wait: bool  # learnt during the next upload (see ``of``), else at once

    @classmethod
    def of(cls, upload: Upload, body: dict[str, Any], sent: Path | None, claimed: Path) -> Lesson:
        """The lesson of one result. It waits for the next upload only when that loses nothing:
        ``sent`` is the claimed export itself (it can still be read where it is filed) or
        nothing; the file is small; and the route's memory only informs results. Where the
        memory shapes what is sent (``delta``, deactivating leavers, ``change_guard``), a
        crash before a late lesson would leave users out of the memory, and a leaver never
        seen again would never be deactivated: there it is learnt at once, as before."""
        small = upload.size <= WINDOW_BYTES and not upload.route.policy.shapes_upload
        return cls(upload, body, sent, can_wait=small and sent in (None, claimed))


class RosterLessons:
    """One inbox's lessons not learnt yet, and the comparisons made during uploads."""

    def __init__(self, inbox: InboxConfig, roster: Roster | None, wall: Callable[[], dt.datetime]) -> None:
        self.inbox = inbox
        self.roster = roster
        self.wall = wall
        self._unlearned: list[Callable[[], None]] = []

    def learn_now(self) -> None:
        """Learn every lesson left for later: before anything compares with the memory."""
        while self._unlearned:
            self._unlearned.pop(0)()

    def before_filing(self, lesson: Lesson | None) -> None:
        """A lesson from a temporary or a kept copy: learnt now, before it goes."""
        if lesson is not None and not lesson.can_wait:
            self.learn(lesson, lesson.sent)

    def after_filing(self, lesson: Lesson | None, filed: Path | None) -> None:
        """A lesson from the export itself, now ``filed`` (None: still where it was, busy)."""
        if lesson is None or not lesson.can_wait:
            return
        if filed is None and lesson.sent is not None:
            self.learn(lesson, lesson.sent)  # not moved (another program holds it): read it there
        else:  # read where it was filed, while the server imports the next file
            self._unlearned.append(functools.partial(self.learn, lesson, lesson.sent and filed))

    def learn(self, lesson: Lesson, sent: Path | None) -> None:
        """The one place the roster memory learns: what the server confirmed of what was sent
        (``sent``: that CSV, where it is now; None: nothing was uploaded)."""
        upload = lesson.upload
        try:
            changes.remember(
                self.roster, self.inbox.name, upload.route.safe_url, upload.changes, sent, lesson.body, self.wall()
            )
        except Exception:  # noqa: BLE001 - the import happened: a memory problem must never make us send again
            logger.exception(
                'inbox "{}": cannot update the roster memory; its rows are sent again next time', self.inbox.name
            )

    def post(
        self, send: Callable[[Callable[[], None]], Reply], upload: Upload, claimed: Path, now: dt.datetime
    ) -> tuple[Reply, Upload]:
        """``send(on_sent)`` the upload; while the server imports it, learn what is left and
        compare this file (``Upload.compare_later``). Whatever did not happen there (the
        request failed before it was out, an unexpected error) happens after the reply."""
        compared: list[Upload] = []

        def while_the_server_works() -> None:
            try:
                self.learn_now()
                if upload.compare_later:
                    compared.append(compare(self.inbox, upload, claimed, self.roster, now))
            except Exception:  # noqa: BLE001 - never break the request; redone below, where it raises
                logger.opt(exception=True).debug('inbox "{}": bookkeeping during the upload failed', self.inbox.name)

        reply = send(while_the_server_works)
        if upload.compare_later:
            if compared:
                return reply, compared[0]
            # The hook never ran (a server answering before the file was all out) or failed:
            # the lessons before this file first, as there (test_attack_perf.py).
            self.learn_now()
            upload = compare(self.inbox, upload, claimed, self.roster, now)
        return reply, upload
