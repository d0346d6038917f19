"""Roster memory: per inbox and route, each user's row as Infiniti last confirmed it.

One SQLite file in the state dir (``paths.ROSTER_FILE``). A row is written only after
the server confirmed it (``changes.remember``), in one transaction per import, so a
crash or power cut loses at most the last import's memory, and a lost memory only means
rows are sent again: the safe direction. Memory is a convenience (DESIGN §9): a missing
file is "no memory yet" (the next file is sent whole); a damaged one is set aside under
a name that says so, logged, and started afresh; a roster that cannot be read or written
at all (locked, permissions) is logged and treated as no memory. Never raises to the
caller: an upload never waits for its roster.

Per row it keeps a 64-bit digest (what the diff compares: ``changes.Codec``) and the
values as JSON (what ``diff`` shows as "old", and what a leaver's deactivation sends).
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from loguru import logger

from dropbox_sync import paths
from dropbox_sync.state import statefiles
from dropbox_sync.state.journal import is_damage

T = TypeVar("T")
SCHEMA = """
CREATE TABLE IF NOT EXISTS routes (
    inbox TEXT NOT NULL, route TEXT NOT NULL,
    last_full TEXT,                 -- when a whole file was last confirmed (full_sync_days)
    updated TEXT NOT NULL,
    PRIMARY KEY (inbox, route)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS users (
    inbox TEXT NOT NULL, route TEXT NOT NULL, username TEXT NOT NULL,
    digest INTEGER NOT NULL,        -- changes.Codec.digest of the row as sent
    row TEXT NOT NULL,              -- {column: value} as sent, JSON
    PRIMARY KEY (inbox, route, username)
) WITHOUT ROWID;
"""


@dataclass
class Memory:
    """What one route remembers: username -> digest, and when it last sent everything."""

    digests: dict[str, int] = field(default_factory=dict)
    last_full: dt.datetime | None = None

    def __len__(self) -> int:
        return len(self.digests)


class Roster:
    """The roster file. ``repair=False`` (preview, diff): only read; a damaged file is
    reported as no memory and left where it is for the service to set aside.

    The service's roster (``repair=True``) keeps one connection open, shared by the inbox
    workers under a lock, until ``release``: opening one costs a quick_check of the whole
    file, and closing the last one a WAL checkpoint with its fsync, twice per file when every
    read and write opened its own. Workers release it at the end of each pass, so a file
    damaged while idle is still found at the next pass; one connection, not one per inbox
    thread, keeps 100 inboxes' memory flat.
    """

    def __init__(self, path: Path, *, repair: bool = True) -> None:
        self.path = path
        self.repair = repair
        self.trouble: str | None = None  # why the last read found no memory, beyond "none yet"
        self._lock = threading.Lock()  # one use at a time of the kept connection
        self._db: sqlite3.Connection | None = None  # the kept connection (repair=True only)

    def release(self) -> None:
        """Close the kept connection, if open (the next use opens it again)."""
        with self._lock:
            self._close_kept()

    def _close_kept(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            db.close()

    def _connect(self, *, create: bool) -> sqlite3.Connection | None:
        if not create and not self.path.exists():
            return None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Read-only by URI (as_uri: a Windows drive path, or a '?' or '#' in a folder name, stay a path).
        where = self.path if create else f"{self.path.absolute().as_uri()}?mode=ro"
        # check_same_thread=False: the kept connection serves every inbox thread, one at a time.
        db = sqlite3.connect(where, uri=not create, timeout=10, check_same_thread=False)
        try:
            if create:
                db.execute("PRAGMA journal_mode=WAL")
                # NORMAL: a power cut may lose the last import's memory (rows sent again), never
                # invent one; see the module docstring.
                db.execute("PRAGMA synchronous=NORMAL")
                (verdict,) = db.execute("PRAGMA quick_check(1)").fetchone()
                if verdict != "ok":
                    raise sqlite3.DatabaseError(f"quick_check: {verdict}")
                db.executescript(SCHEMA)
        except BaseException:
            db.close()
            raise
        return db

    def _use(self, what: str, action: Callable[[sqlite3.Connection], T], default: T, *, create: bool) -> T:
        """Run ``action``; a roster problem is logged, the damaged file set aside, ``default`` returned."""
        with self._lock:
            db = self._db
            keep = db is not None or (self.repair and create)  # the kept connection, open or to open
            try:
                if db is None:
                    db = self._connect(create=create)
                    if keep:
                        self._db = db
                return default if db is None else action(db)
            except sqlite3.Error as exc:
                damaged = isinstance(exc, sqlite3.DatabaseError) and (
                    is_damage(exc) or "quick_check" in str(exc) or "no such table" in str(exc)
                )
                if keep:
                    self._close_kept()
                elif db is not None:
                    db.close()
                db = None
                self._trouble(what, exc, damaged)
                return default
            finally:
                if db is not None and not keep:
                    db.close()

    def _trouble(self, what: str, exc: sqlite3.Error, damaged: bool) -> None:
        if not damaged:
            self.trouble = f"the roster memory could not be used ({exc})"
            logger.warning("roster {}: cannot {} ({}); rows are sent as if it had no memory", self.path, what, exc)
            return
        self.trouble = f"the roster memory was damaged ({exc}) and is started afresh"
        if not self.repair:
            logger.warning("roster {} is damaged ({}); read as no memory", self.path, exc)
            return
        moved = statefiles.set_aside(self.path, paths.JOURNAL_COMPANIONS)  # SQLite's companions, as the journal's
        logger.error(
            "the roster memory {} is damaged ({}); kept as {} and started afresh: the next file of "
            "each route is sent whole. Files are not affected.",
            self.path,
            exc,
            moved.name if moved else "(could not be moved)",
        )

    def memory(self, inbox: str, route: str) -> Memory | None:
        """The route's memory; None when it has none (never sent, deleted, damaged)."""
        self.trouble = None

        def read(db: sqlite3.Connection) -> Memory | None:
            found = db.execute("SELECT last_full FROM routes WHERE inbox = ? AND route = ?", (inbox, route)).fetchone()
            if found is None:
                return None
            rows = db.execute("SELECT username, digest FROM users WHERE inbox = ? AND route = ?", (inbox, route))
            return Memory(dict(rows), _parse(found[0]))

        return self._use("read it", read, None, create=self.repair)

    def rows(self, inbox: str, route: str, usernames: Iterable[str]) -> dict[str, dict[str, str]]:
        """The remembered values of ``usernames`` (those it has)."""

        def read(db: sqlite3.Connection) -> dict[str, dict[str, str]]:
            found = {}
            for username in usernames:
                row = db.execute(
                    "SELECT row FROM users WHERE inbox = ? AND route = ? AND username = ?", (inbox, route, username)
                ).fetchone()
                if row is not None:
                    found[username] = json.loads(row[0])
            return found

        return self._use("read rows", read, {}, create=False)

    def remember(
        self,
        inbox: str,
        route: str,
        confirmed: Iterable[tuple[str, int, str]],
        forget: Iterable[str],
        *,
        whole: bool,
        now: dt.datetime,
    ) -> bool:
        """In one transaction: store ``confirmed`` (username, digest, row JSON), drop ``forget``;
        ``whole``: a whole file was sent, so the full sync clock starts again. False if not saved."""

        def write(db: sqlite3.Connection) -> bool:
            stamp = now.astimezone(dt.UTC).isoformat()
            with db:
                db.execute(
                    "INSERT INTO routes (inbox, route, last_full, updated) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (inbox, route) DO UPDATE SET updated = excluded.updated"
                    + (", last_full = excluded.last_full" if whole else ""),
                    (inbox, route, stamp if whole else None, stamp),
                )
                db.executemany(
                    "INSERT OR REPLACE INTO users (inbox, route, username, digest, row) VALUES (?, ?, ?, ?, ?)",
                    ((inbox, route, u, d, r) for u, d, r in confirmed),
                )
                db.executemany(
                    "DELETE FROM users WHERE inbox = ? AND route = ? AND username = ?",
                    ((inbox, route, u) for u in forget),
                )
            return True

        return self._use("save what the server confirmed", write, False, create=True)


def _parse(text: str | None) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(text) if text else None
    except ValueError:
        return None
