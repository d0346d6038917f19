"""Turns an uploaded CSV into user upserts and the vendor's JSON result.

Choices the vendor page leaves open, made here and documented once:
- the file is UTF-8 with or without a BOM; anything else fails the import;
- header names match ignoring case and surrounding spaces, and so do group
  names (users are stored with the group's defined spelling);
- blank lines are skipped and not counted; `details` numbers the data rows
  that were processed, from 1;
- each failed row reports its first problem, checked in the order username,
  library-group, system-group, emailAddress;
- a whole-file failure (missing column, not UTF-8, not CSV) rolls back, so it
  changes no user;
- an `enabled` column deactivates a user with FALSE (also false, no, n, 0) and
  enables one with TRUE (true, yes, y, 1); empty or absent leaves the user as it
  was (a new user is enabled); any other value fails the row.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dropbox_sync.emulator import wording
from dropbox_sync.emulator.store import Store, UserWriter
from dropbox_sync.errors import ImportAborted, WholeFileFailure

DEFAULT_LIBRARY_GROUPS = ("Students", "Staff", *(f"Year {n}" for n in range(7, 13)))
DEFAULT_SYSTEM_GROUPS = ("Student", "Staff", "Teacher")

_EMAIL = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,}"
)
_STOP_CHECK_EVERY = 1000  # rows between looks at the stop flag
_ENABLED = {**dict.fromkeys(("true", "yes", "y", "1"), True), **dict.fromkeys(("false", "no", "n", "0"), False)}


@dataclass(frozen=True)
class ImportResult:
    success: bool
    summary: str
    details: dict[str, str] | None = None

    def as_json(self) -> dict[str, Any]:
        reply: dict[str, Any] = {"success": self.success, "summary": self.summary}
        if self.details is not None:
            reply["details"] = self.details
        return reply


def _fold(name: str) -> str:
    return name.strip().casefold()


_CREATED, _UPDATED, _FAILED = 0, 1, 2


@dataclass
class _Tally:
    """Row outcomes at one byte a row (details must list every row once one
    fails, and a big import must not cost a Python object per row)."""

    codes: bytearray = field(default_factory=bytearray)
    failures: dict[int, str] = field(default_factory=dict)  # row number -> outcome
    created: int = 0
    updated: int = 0

    @property
    def processed(self) -> int:
        return len(self.codes)

    def add(self, code: int, failure: str | None = None) -> None:
        self.codes.append(code)
        if code == _CREATED:
            self.created += 1
        elif code == _UPDATED:
            self.updated += 1
        else:
            self.failures[len(self.codes)] = failure or ""

    def details(self) -> dict[str, str]:
        names = {_CREATED: wording.USER_CREATED, _UPDATED: wording.USER_UPDATED}
        return {str(n): names.get(code) or self.failures[n] for n, code in enumerate(self.codes, start=1)}


class Importer:
    def __init__(
        self,
        store: Store,
        library_groups: Iterable[str] = DEFAULT_LIBRARY_GROUPS,
        system_groups: Iterable[str] = DEFAULT_SYSTEM_GROUPS,
    ) -> None:
        self._store = store
        self._library = {_fold(g): g for g in library_groups}
        self._system = {_fold(g): g for g in system_groups}

    def run(self, csv_path: Path, tenant: str, should_stop: Callable[[], bool] = lambda: False) -> ImportResult:
        try:
            with self._store.import_session() as writer:
                return self._import(csv_path, tenant, writer, should_stop)
        except WholeFileFailure as failure:
            return ImportResult(False, failure.summary)

    def _import(self, csv_path: Path, tenant: str, writer: UserWriter, should_stop: Callable[[], bool]) -> ImportResult:
        tally = _Tally()
        try:
            with open(csv_path, encoding="utf-8-sig", newline="") as f:
                rows = (row for row in csv.reader(f) if any(cell.strip() for cell in row))
                header = next(rows, None)
                if header is None:  # empty or whitespace only: a legal no-op
                    return ImportResult(True, wording.summary(0, 0, 0, 0))
                columns = _columns(header)
                for row in rows:
                    if tally.processed % _STOP_CHECK_EVERY == 0 and should_stop():
                        raise ImportAborted()
                    self._row(row, header, columns, tenant, writer, tally)
        except UnicodeDecodeError as exc:
            raise WholeFileFailure(wording.NOT_UTF8) from exc
        except csv.Error as exc:
            raise WholeFileFailure(wording.not_csv(str(exc))) from exc
        summary = wording.summary(tally.processed, tally.created, tally.updated, len(tally.failures))
        if not tally.failures:
            return ImportResult(True, summary)
        return ImportResult(False, summary, tally.details())

    def _row(
        self,
        row: Sequence[str],
        header: Sequence[str],
        columns: dict[str, int],
        tenant: str,
        writer: UserWriter,
        tally: _Tally,
    ) -> None:
        def cell(name: str) -> str:
            index = columns.get(name)
            return row[index].strip() if index is not None and index < len(row) else ""

        problem, library, system = self._check(cell)
        enabled = _ENABLED.get(cell("enabled").casefold()) if cell("enabled") else None
        if problem is None and cell("enabled") and enabled is None:
            problem = wording.BAD_ENABLED
        if problem is not None:
            tally.add(_FAILED, wording.row_failure(problem))
            return
        # Every column as given, first occurrence of a repeated header winning.
        fields: dict[str, str] = {}
        for i, name in enumerate(header):
            fields.setdefault(name.strip(), row[i] if i < len(row) else "")
        created = writer.upsert(tenant, cell("username"), library, system, fields, enabled)
        tally.add(_CREATED if created else _UPDATED)

    def _check(self, cell: Callable[[str], str]) -> tuple[str | None, str, str]:
        """(first problem or None, library group, system group) for one row."""
        if not cell("username"):
            return wording.field_required("username"), "", ""
        library_name, system_name = cell("library-group"), cell("system-group")
        if not library_name:
            return wording.field_required("library-group"), "", ""
        library = self._library.get(_fold(library_name))
        if library is None:
            return wording.library_group_missing(library_name), "", ""
        if not system_name:
            return wording.field_required("system-group"), "", ""
        system = self._system.get(_fold(system_name))
        if system is None:
            return wording.system_group_missing(system_name), "", ""
        email = cell("emailaddress")
        if email and not _EMAIL.fullmatch(email):
            return wording.BAD_EMAIL, "", ""
        return None, library, system


def _columns(header: Sequence[str]) -> dict[str, int]:
    """Folded column name -> index; fails the import when a required one is missing."""
    columns: dict[str, int] = {}
    for i, name in enumerate(header):
        columns.setdefault(_fold(name), i)
    missing = [name for name in wording.REQUIRED_COLUMNS if name not in columns]
    if missing:
        raise WholeFileFailure(wording.missing_columns(missing))
    return columns
