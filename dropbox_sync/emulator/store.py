"""SQLite state: the users each tenant holds and every upload received.

One connection behind a lock: imports are serialised, which is what makes
"created" versus "updated" exact when clients upload concurrently. Each import
is one transaction, so an import that fails as a whole changes nothing.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DEFAULT_TENANT = ""  # the namespace used when a request names no tenantId

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    tenant        TEXT NOT NULL,
    username      TEXT NOT NULL,
    library_group TEXT NOT NULL,
    system_group  TEXT NOT NULL,
    fields        TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    enabled       INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (tenant, username)
);
CREATE TABLE IF NOT EXISTS uploads (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at TEXT NOT NULL,
    path        TEXT NOT NULL,
    tenant      TEXT,
    bytes       INTEGER NOT NULL,
    sha256      TEXT,
    status      INTEGER,
    success     INTEGER,
    summary     TEXT,
    username    TEXT,
    fault       TEXT,
    filename    TEXT,
    stored_file TEXT
);
"""


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class UploadRecord:
    """One request to the emulator. `status` is None when no reply was sent
    (connection reset, hang, client gone); `success`/`summary` are None when
    the reply was not the JSON kind."""

    seq: int
    received_at: str
    path: str
    tenant: str | None
    bytes: int
    sha256: str | None
    status: int | None
    success: bool | None
    summary: str | None
    username: str | None
    fault: str | None = None
    filename: str | None = None
    stored_file: Path | None = None


@dataclass(frozen=True)
class UserRecord:
    tenant: str
    username: str
    library_group: str
    system_group: str
    fields: Mapping[str, str]
    created_at: str
    updated_at: str
    enabled: bool = True  # an `enabled` column of FALSE deactivates; absent or empty keeps it


class UserWriter:
    """Upserts inside one open transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._now = utc_now()

    def upsert(
        self,
        tenant: str,
        username: str,
        library_group: str,
        system_group: str,
        fields: Mapping[str, str],
        enabled: bool | None = None,
    ) -> bool:
        """Insert or update; True when the user is new to the tenant. ``enabled`` None: as it
        was (a new user is enabled), as Infiniti leaves a user's state alone unless told."""
        blob = json.dumps(dict(fields), ensure_ascii=False)
        updated = self._conn.execute(
            "UPDATE users SET library_group=?, system_group=?, fields=?, updated_at=?,"
            " enabled=COALESCE(?, enabled) WHERE tenant=? AND username=?",
            (library_group, system_group, blob, self._now, enabled, tenant, username),
        ).rowcount
        if updated:
            return False
        self._conn.execute(
            "INSERT INTO users VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                tenant,
                username,
                library_group,
                system_group,
                blob,
                self._now,
                self._now,
                True if enabled is None else enabled,
            ),
        )
        return True


class Store:
    def __init__(self, path: Path, uploads_dir: Path) -> None:
        self._lock = threading.Lock()
        self._uploads_dir = uploads_dir
        # The emulator's threads share this one connection, always under the lock.
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(users)")}
        if "enabled" not in columns:  # a data dir made by an older emulator
            self._conn.execute("ALTER TABLE users ADD COLUMN enabled INTEGER NOT NULL DEFAULT 1")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def import_session(self) -> Iterator[UserWriter]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield UserWriter(self._conn)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def users(self, tenant: str = DEFAULT_TENANT) -> list[UserRecord]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT tenant, username, library_group, system_group, fields, created_at, updated_at, enabled"
                " FROM users WHERE tenant=? ORDER BY username",
                (tenant,),
            ).fetchall()
        return [UserRecord(t, u, lg, sg, json.loads(f), c, up, bool(e)) for t, u, lg, sg, f, c, up, e in rows]

    def add_upload(self, record: UploadRecord, keep: Path | None = None) -> UploadRecord:
        """Persist a record, giving it its sequence number; `keep` is moved to
        uploads/<seq>.csv so tests can compare the bytes that arrived."""
        with self._lock:
            seq = self._conn.execute(
                "INSERT INTO uploads (received_at, path, tenant, bytes, sha256, status, success,"
                " summary, username, fault, filename) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.received_at,
                    record.path,
                    record.tenant,
                    record.bytes,
                    record.sha256,
                    record.status,
                    record.success,
                    record.summary,
                    record.username,
                    record.fault,
                    record.filename,
                ),
            ).lastrowid
            assert seq is not None
            stored = None
            if keep is not None:
                self._uploads_dir.mkdir(parents=True, exist_ok=True)
                stored = self._uploads_dir / f"{seq:06d}.csv"
                os.replace(keep, stored)
                self._conn.execute("UPDATE uploads SET stored_file=? WHERE seq=?", (str(stored), seq))
        return replace(record, seq=seq, stored_file=stored)

    def uploads(self) -> list[UploadRecord]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, received_at, path, tenant, bytes, sha256, status, success, summary,"
                " username, fault, filename, stored_file FROM uploads ORDER BY seq"
            ).fetchall()
        return [_record(row) for row in rows]


def _record(row: tuple[Any, ...]) -> UploadRecord:
    (seq, received_at, path, tenant, size, sha, status, success, summary, username, fault, filename, stored) = row
    return UploadRecord(
        seq,
        received_at,
        path,
        tenant,
        size,
        sha,
        status,
        None if success is None else bool(success),
        summary,
        username,
        fault,
        filename,
        None if stored is None else Path(stored),
    )
