"""What an import did, row by row: the rows Infiniti refused, matched back to the records
of the export they came from (the user counts are journal.summary_counts).

Infiniti's reply numbers the data rows from 1 (blank lines skipped, the
emulator's documented reading of the vendor page) and says per row what
happened; people fix rows in a spreadsheet, so each failed row is also given
the row a spreadsheet shows it on (the header is row 1, blank lines count)
and its username.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dropbox_sync.pipeline import workfiles
from dropbox_sync.redact import scrub

ROW_SUCCESS = ("user created", "user updated")  # Infiniti lists every row once one fails
_TWICE = re.compile(r"(?P<problem>.+?)\.? User failed to import: (?P=problem)\.?\s*", re.DOTALL)
_ROW_NUMBER = re.compile("[0-9]{1,9}")


def row_number(key: object) -> int | None:
    """A row number as a reply's ``details`` gives it ("12"), else None. Not str.isdigit():
    it also takes '²' and 5,000 digits, which int() refuses, and a reply is untrusted."""
    return int(key) if isinstance(key, str) and _ROW_NUMBER.fullmatch(key) else None


@dataclass(frozen=True)
class FailedRow:
    row: int | str  # Infiniti's row number (text if the server sent something else)
    line: int | None  # the row a spreadsheet shows it on; None when the export does not have it
    username: str
    reason: str


def failed_details(details: Any) -> list[tuple[str, str]]:
    """The rows Infiniti did not import, in row order (``details`` lists every row)."""
    if isinstance(details, list):
        details = {str(n): v for n, v in enumerate(details, start=1)}
    if not isinstance(details, dict):
        return []
    rows = [(str(n), str(v)) for n, v in details.items() if not str(v).strip().lower().startswith(ROW_SUCCESS)]
    return sorted(rows, key=lambda r: (0, row_number(r[0]), "") if row_number(r[0]) is not None else (1, 0, r[0]))


def failed_rows(
    details: Any, export: Path | None, *, encoding: str = "", limit: int = 20, traced: Any = None
) -> tuple[list[FailedRow], int]:
    """The first ``limit`` failed rows with their spreadsheet row and username, and how many more failed.

    ``traced``: the result's ``export_rows`` when the file was mapped (mapper.reported_rows:
    the server's row number -> the export's row, line and username, as the upload was a
    different CSV). Otherwise the export is read (without following a link) only as far as
    the last row shown; a missing or unreadable export leaves line and username blank."""
    failed = failed_details(details)
    shown, more = failed[:limit], max(0, len(failed) - limit)
    wanted = {row_number(n) for n, _ in shown} - {None}
    if isinstance(traced, dict):
        found = {
            row_number(n): (_line(traced[n]), str(traced[n].get("username", "")))
            for n, _ in shown
            if isinstance(traced.get(n), dict)
        }
    else:
        found = _records(export, wanted, encoding) if export is not None and wanted else {}
    rows = []
    for number, reason in shown:
        row = row_number(number)
        line, username = found.get(row, (None, "")) if row is not None else (None, "")
        rows.append(FailedRow(row if row is not None else number, line, username, tidy_reason(reason)))
    return rows, more


def _line(trace: dict[str, Any]) -> int | None:
    line = trace.get("line")
    return line if isinstance(line, int) and not isinstance(line, bool) else None


def tidy_reason(reason: str) -> str:
    """Infiniti states a row's problem twice ("X. User failed to import: X. "): once is enough for people.

    Scrubbed here, the one door of a server's row text to people (failed-rows CSV, emails,
    report, demo): a reply may quote the password back, and the failed-rows file is written
    by a CSV writer, outside the result and log scrubbing."""
    reason = scrub(reason.strip())
    twice = _TWICE.fullmatch(reason)
    return f"{twice.group('problem')}." if twice else reason


def _records(export: Path, wanted: set[int], encoding: str) -> dict[int, tuple[int, str]]:
    """Data row number -> (spreadsheet row, username) for the rows in ``wanted``."""
    found: dict[int, tuple[int, str]] = {}
    try:
        with workfiles.open_untrusted(export) as raw:
            text = io.TextIOWrapper(raw, encoding=encoding or "utf-8-sig", errors="replace", newline="")
            reader = csv.reader(text)
            column, data_row = None, 0
            for record_number, record in enumerate(reader, start=1):
                if not any(cell.strip() for cell in record):
                    continue  # a blank line: a spreadsheet row, but not a data row
                if column is None:
                    folded = [cell.strip().casefold() for cell in record]
                    column = folded.index("username") if "username" in folded else -1
                    continue
                data_row += 1
                if data_row in wanted:
                    username = record[column].strip() if 0 <= column < len(record) else ""
                    found[data_row] = (record_number, username)
                    if len(found) == len(wanted):
                        break
    except (OSError, csv.Error, UnicodeError, LookupError):
        pass  # moved by `retry`, pruned, or not text: the reasons still show
    return found
