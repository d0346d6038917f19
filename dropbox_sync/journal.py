"""History of every attempt, in SQLite (WAL), for ``status`` and for people.

The folders are the truth: recovery after a crash never reads the journal, so
a lost or corrupt journal costs history, never a file. Writes are serialised
by one lock; a failure to write is logged and otherwise ignored.
"""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from loguru import logger

SCHEMA = """
CREATE TABLE IF NOT EXISTS attempts (
    id        INTEGER PRIMARY KEY,
    inbox     TEXT NOT NULL,
    file      TEXT NOT NULL,      -- archive name
    original  TEXT NOT NULL,      -- name as dropped
    sha256    TEXT,
    bytes     INTEGER,
    started   TEXT NOT NULL,      -- UTC ISO 8601
    finished  TEXT NOT NULL,
    status    INTEGER,            -- HTTP status, NULL when there was no reply
    outcome   TEXT NOT NULL,      -- processed | failed | held | retry | guarded
    summary   TEXT NOT NULL,
    route     TEXT NOT NULL DEFAULT '',  -- the import URL (without credentials)
    rows      INTEGER             -- data rows in the file, when it was read
);
CREATE INDEX IF NOT EXISTS attempts_by_inbox ON attempts (inbox, outcome, finished);
"""


COLUMNS = "inbox, file, original, sha256, bytes, started, finished, status, outcome, summary, route, rows"


@dataclass(frozen=True)
class Attempt:
    inbox: str
    file: str
    original: str
    sha256: str | None
    bytes: int | None
    started: str
    finished: str
    status: int | None
    outcome: str
    summary: str
    route: str = ""
    rows: int | None = None


# Outcomes that end a file's journey (one history entry each) and the folder each is filed in.
# "guarded" is the shrink guard's hold for approval: the file waits in held/.
FINAL_OUTCOMES = {"processed": "processed", "failed": "failed", "guarded": "held"}

# The vendor's summary, e.g. "3 users processed. 2 users created. 1 user updated. 0 users failed."
# (dropbox_sync/emulator/wording.py.summary copies its wording); each count is read on its own so
# a server that leaves one out, or adds a sentence, still yields the others.
_COUNT = {key: re.compile(rf"(\d+)\s+users?\s+{key}\b", re.IGNORECASE)
          for key in ("processed", "created", "updated", "failed")}  # fmt: skip


def summary_counts(summary: str) -> dict[str, int | None]:
    """Users processed / created / updated / failed, as the server's summary states them (None: not said)."""
    counts: dict[str, int | None] = {}
    for key, pattern in _COUNT.items():
        found = pattern.search(summary or "")
        counts[key] = int(found.group(1)) if found else None
    return counts


@dataclass(frozen=True)
class HistoryEntry:
    """One past import, for ``dropbox-sync history`` and report.html."""

    inbox: str
    file: str  # the name as dropped
    archived_as: str  # the archive name
    folder: str  # processed | failed | held: where it was filed (relative to the inbox)
    outcome: str  # processed | failed | guarded
    started: str  # UTC ISO 8601
    finished: str
    http_status: int | None
    summary: str
    rows: int | None  # data rows in the file, when it was read
    processed: int | None  # user counts from the server's summary (None when it did not say)
    created: int | None
    updated: int | None
    failed: int | None

    @property
    def archived_path(self) -> str:
        return f"{self.folder}/{self.archived_as}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "archived_path": self.archived_path}


def iso_utc(moment: dt.datetime) -> str:
    """The journal's time format (UTC, milliseconds, Z), which also sorts as text."""
    if moment.tzinfo is None:
        moment = moment.astimezone()  # a naive time is the machine's local time
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Journal:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, timeout=10)
        with self._lock, self._db:
            self._db.execute("PRAGMA journal_mode=WAL")
            # History only (recovery reads the folders): WAL with NORMAL stays
            # consistent after a power cut and saves an fsync per upload.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)

    def record(self, attempt: Attempt) -> None:
        try:
            with self._lock, self._db:
                self._db.execute(
                    "INSERT INTO attempts (inbox, file, original, sha256, bytes, started, finished,"
                    " status, outcome, summary, route, rows) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        attempt.inbox, attempt.file, attempt.original, attempt.sha256, attempt.bytes,
                        attempt.started, attempt.finished, attempt.status, attempt.outcome, attempt.summary,
                        attempt.route, attempt.rows,
                    ),
                )  # fmt: skip
        except sqlite3.Error as exc:
            logger.warning("could not write to the journal ({}); history for status is incomplete", exc)

    def last(self, inbox: str, outcome: str) -> Attempt | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {COLUMNS} FROM attempts WHERE inbox = ? AND outcome = ? ORDER BY id DESC LIMIT 1",
                (inbox, outcome),
            ).fetchone()
        return Attempt(*row) if row else None

    def last_rows(self, inbox: str, route: str) -> int | None:
        """Rows of the last file this route imported successfully (for the shrink guard)."""
        with self._lock:
            row = self._db.execute(
                "SELECT rows FROM attempts WHERE inbox = ? AND route = ? AND outcome = 'processed'"
                " AND rows IS NOT NULL ORDER BY id DESC LIMIT 1",
                (inbox, route),
            ).fetchone()
        return row[0] if row else None

    def counts_since(self, inbox: str, since_iso: str) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute(
                "SELECT outcome, COUNT(*) FROM attempts WHERE inbox = ? AND finished >= ? GROUP BY outcome",
                (inbox, since_iso),
            ).fetchall()
        return dict(rows)

    def history(self, inbox: str | None = None, since: dt.datetime | None = None,
                limit: int | None = None) -> list[HistoryEntry]:  # fmt: skip
        """Finished imports (processed, failed, held for approval), newest first.

        ``since`` is a moment (aware, or naive local time); retries and holds of
        the whole inbox are not imports and are left out (``status`` shows them).
        """
        where = [f"outcome IN ({', '.join('?' * len(FINAL_OUTCOMES))})"]
        params: list[Any] = list(FINAL_OUTCOMES)
        if inbox is not None:
            where.append("inbox = ?")
            params.append(inbox)
        if since is not None:
            where.append("finished >= ?")
            params.append(iso_utc(since))
        query = (f"SELECT inbox, original, file, outcome, started, finished, status, summary, rows FROM attempts"
                 f" WHERE {' AND '.join(where)} ORDER BY finished DESC, id DESC")  # fmt: skip
        if limit is not None:
            query += " LIMIT ?"
            params.append(int(limit))
        with self._lock:
            found = self._db.execute(query, params).fetchall()
        entries = []
        for name, original, file, outcome, started, finished, status, summary, rows in found:
            entries.append(HistoryEntry(
                inbox=name, file=original, archived_as=file, folder=FINAL_OUTCOMES[outcome], outcome=outcome,
                started=started, finished=finished, http_status=status, summary=summary, rows=rows,
                **summary_counts(summary)))  # fmt: skip
        return entries

    def close(self) -> None:
        with self._lock:
            self._db.close()
