"""History of every attempt, in SQLite (WAL), for ``status`` and for people.

The folders are the truth: recovery after a crash never reads the journal, so
a lost or corrupt journal costs history, never a file. Writes are serialised
by one lock; a failure to write is logged and otherwise ignored.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

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

    def close(self) -> None:
        with self._lock:
            self._db.close()
