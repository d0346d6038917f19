"""History of every attempt, in SQLite (WAL), for ``status`` and for people.

The folders are the truth: recovery after a crash never reads the journal, so
a lost or corrupt journal costs history, never a file. Writes are serialised
by one lock. A damaged journal (garbage, cut short, zeroed pages: SQLite's
CORRUPT or NOTADB, or a failed quick_check when it is opened) is set aside
under a dated name and a fresh one is started, at start-up or in the middle of
the work; any other journal error is logged and the caller gets "no history"
(None, {}, []), so a journal error never blocks an upload.
"""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from loguru import logger

from dropbox_sync import paths
from dropbox_sync.errors import JournalDamaged, StateUnavailable
from dropbox_sync.redact import scrub
from dropbox_sync.state import statefiles

T = TypeVar("T")
DAMAGE_CODES = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)

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
-- Newest first without reading a route's or an inbox's whole history: entries of equal
-- (inbox, route, outcome) lie in id order, so the shrink guard's look at the last import
-- (once per file) stops at the first; the report's recent imports walk (inbox, finished).
CREATE INDEX IF NOT EXISTS attempts_by_route ON attempts (inbox, route, outcome);
CREATE INDEX IF NOT EXISTS attempts_by_time ON attempts (inbox, finished);
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
_COUNT = {
    key: re.compile(rf"(\d+)\s+users?\s+{key}\b", re.IGNORECASE)
    for key in ("processed", "created", "updated", "failed")
}


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


def is_damage(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)  # extended codes keep the primary one in the low byte
    return isinstance(exc, JournalDamaged) or (code is not None and code & 0xFF in DAMAGE_CODES)


def _unavailable(path: Path, problem: Exception) -> StateUnavailable:
    """Cannot be opened at all: nothing to set aside. The service fails to start (its host
    retries: a disk not mounted yet); `status` and `history` go on without history."""
    reason = getattr(problem, "strerror", None) or problem
    return StateUnavailable(
        f"cannot open the journal {path} ({reason}): check that {path.parent} is a folder "
        "this account can write (state_dir in the config)"
    )


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._opened: tuple[int, int] | None = None  # (device, inode) of the file we have open
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = self._connect(path)
        except sqlite3.DatabaseError as exc:
            if not is_damage(exc):
                raise _unavailable(path, exc) from exc
            self._db = self._fresh(exc)
        except (sqlite3.Error, OSError) as exc:
            raise _unavailable(path, exc) from exc

    def _connect(self, path: Path | str) -> sqlite3.Connection:
        db = sqlite3.connect(path, check_same_thread=False, timeout=10)
        try:
            with db:
                db.execute("PRAGMA journal_mode=WAL")
                # History only (recovery reads the folders): WAL with NORMAL stays
                # consistent after a power cut and saves an fsync per upload.
                db.execute("PRAGMA synchronous=NORMAL")
                # Cut-short files and zeroed pages often open fine and fail later, one query
                # at a time; quick_check (no index cross-check, one pass) finds them now.
                (verdict,) = db.execute("PRAGMA quick_check(1)").fetchone()
                if verdict != "ok":
                    raise JournalDamaged(f"quick_check: {verdict}")
                db.executescript(SCHEMA)
        except BaseException:
            db.close()
            raise
        if isinstance(path, Path):
            stat = path.stat()
            self._opened = (stat.st_dev, stat.st_ino)
        return db

    def _fresh(self, damage: sqlite3.Error) -> sqlite3.Connection:
        """Set the damaged journal aside and start a new one (in memory if it cannot be moved)."""
        moved = statefiles.set_aside(self.path, paths.JOURNAL_COMPANIONS)
        if moved is not None or not self.path.exists():
            logger.error(
                "the journal {} is damaged ({}); kept as {} and a fresh journal started: `status` and "
                "the shrink guard forget the history before now. Files are not affected.",
                self.path,
                damage,
                moved.name if moved else "(gone)",
            )
            try:
                return self._connect(self.path)
            except sqlite3.Error as exc:
                damage = exc
        logger.error(
            "the journal {} is damaged ({}) and cannot be replaced; this run keeps its history in memory only",
            self.path,
            damage,
        )
        self._opened = None
        return self._connect(":memory:")

    def _recover(self, damage: sqlite3.Error) -> None:
        """Damage found in the middle of the work (called with the lock held)."""
        self._db.close()
        try:
            stat = self.path.stat()
            replaced = self._opened is not None and (stat.st_dev, stat.st_ino) != self._opened
        except OSError:
            replaced = False
        if replaced:  # another process (`status`, `once`) set it aside already: use its fresh one
            try:
                self._db = self._connect(self.path)
                return
            except sqlite3.Error as exc:
                damage = exc
        self._db = self._fresh(damage)

    def _use(self, what: str, action: Callable[[sqlite3.Connection], T], default: T) -> T:
        """Run ``action`` on the database; any journal error is logged and yields ``default``."""
        with self._lock:
            try:
                return action(self._db)
            except sqlite3.Error as exc:
                if is_damage(exc):
                    self._recover(exc)
                else:
                    logger.warning("journal: cannot {} ({}); history for status is incomplete", what, exc)
                return default

    def record(self, attempt: Attempt, *, unless_there: bool = False) -> None:
        """One row. ``unless_there``: not if this very attempt (inbox, file, finished) has one
        already (a result recovered after a crash may or may not have reached the journal)."""
        # Scrubbed like every byte we write: a summary may quote the password back.
        # The fields in the table's order (astuple would deep-copy each value first).
        values = tuple(
            scrub(v) if isinstance(v, str) else v
            for v in (
                attempt.inbox,
                attempt.file,
                attempt.original,
                attempt.sha256,
                attempt.bytes,
                attempt.started,
                attempt.finished,
                attempt.status,
                attempt.outcome,
                attempt.summary,
                attempt.route,
                attempt.rows,
            )
        )

        def insert(db: sqlite3.Connection) -> bool:
            with db:
                if (
                    unless_there
                    and db.execute(
                        "SELECT 1 FROM attempts WHERE inbox = ? AND file = ? AND finished = ? LIMIT 1",
                        (values[0], values[1], values[6]),
                    ).fetchone()
                ):
                    return True
                db.execute(
                    "INSERT INTO attempts (inbox, file, original, sha256, bytes, started, finished,"
                    " status, outcome, summary, route, rows) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    values,
                )
            return True

        if not self._use("record an attempt", insert, False):
            self._use("record an attempt", insert, False)  # into the fresh journal, if that was the trouble

    def last(self, inbox: str, outcome: str) -> Attempt | None:
        row = self._use(
            "read the last attempt",
            lambda db: db.execute(
                f"SELECT {COLUMNS} FROM attempts WHERE inbox = ? AND outcome = ? ORDER BY id DESC LIMIT 1",
                (inbox, outcome),
            ).fetchone(),
            None,
        )
        return Attempt(*row) if row else None

    def imported_after(self, inbox: str, route: str, file: str) -> Attempt | None:
        """The last file imported on ``route`` after ``file`` (an archive name) was first
        recorded; None if none, or if the journal never saw ``file``."""
        with self._lock:
            row = self._db.execute(
                f"SELECT {COLUMNS} FROM attempts WHERE inbox = ? AND route = ? AND outcome = 'processed'"
                " AND file != ? AND id > (SELECT MIN(id) FROM attempts WHERE inbox = ? AND file = ?)"
                " ORDER BY id DESC LIMIT 1",
                (inbox, route, file, inbox, file),
            ).fetchone()
        return Attempt(*row) if row else None

    def last_rows(self, inbox: str, route: str) -> int | None:
        """Rows of the last file this route imported successfully (for the shrink guard)."""
        row = self._use(
            "read the last file's rows",
            lambda db: db.execute(
                "SELECT rows FROM attempts WHERE inbox = ? AND route = ? AND outcome = 'processed'"
                " AND rows IS NOT NULL ORDER BY id DESC LIMIT 1",
                (inbox, route),
            ).fetchone(),
            None,
        )
        return row[0] if row else None

    def counts_since(self, inbox: str, since_iso: str) -> dict[str, int]:
        rows = self._use(
            "count today's attempts",
            lambda db: db.execute(
                "SELECT outcome, COUNT(*) FROM attempts WHERE inbox = ? AND finished >= ? GROUP BY outcome",
                (inbox, since_iso),
            ).fetchall(),
            [],
        )
        return dict(rows)

    def history(
        self, inbox: str | None = None, since: dt.datetime | None = None, limit: int | None = None
    ) -> list[HistoryEntry]:
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
        query = (
            f"SELECT inbox, original, file, outcome, started, finished, status, summary, rows FROM attempts"
            f" WHERE {' AND '.join(where)} ORDER BY finished DESC, id DESC"
        )
        if limit is not None:
            query += " LIMIT ?"
            params.append(int(limit))
        found = self._use("read the history", lambda db: db.execute(query, params).fetchall(), [])
        entries = []
        for name, original, file, outcome, started, finished, status, summary, rows in found:
            entries.append(
                HistoryEntry(
                    inbox=name,
                    file=original,
                    archived_as=file,
                    folder=FINAL_OUTCOMES[outcome],
                    outcome=outcome,
                    started=started,
                    finished=finished,
                    http_status=status,
                    summary=summary,
                    rows=rows,
                    **summary_counts(summary),
                )
            )
        return entries

    def close(self) -> None:
        with self._lock:
            self._db.close()
