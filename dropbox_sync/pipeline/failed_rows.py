"""The rows Infiniti refused, as a spreadsheet a person can fix and drop back.

Beside a partly failed file in failed/ goes ``<archived name>.failed-rows.csv``:
the export's own header and the refused rows as they were in the export, plus
a last column ``import_error`` with Infiniti's reason. Fixed in Excel and
dropped into the inbox again, it imports just those rows: the upload never
sends an ``import_error`` column (``without_error_column``).

Row numbers: Infiniti's ``details`` counts the data rows it processed from 1,
skipping blank lines (a row whose cells are all blank); the header is the first
row that is not blank. The emulator does the same (emulator/importer.py).
"""

from __future__ import annotations

import codecs
import csv
import io
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from loguru import logger

from dropbox_sync.pipeline import workfiles
from dropbox_sync.pipeline.archive_names import display_name, failed_rows_path
from dropbox_sync.pipeline.rows import failed_details, row_number, tidy_reason
from dropbox_sync.pipeline.workfiles import open_claimed

ERROR_COLUMN = "import_error"
_SNIFF = 64 * 1024
FIRST_REASONS = 3  # failed rows named in the log line of a partly failed file


@dataclass(frozen=True)
class FailedRow:
    number: int  # Infiniti's row number (data rows from 1)
    line: int  # the row in a spreadsheet (the header is row 1 when the file starts with it)
    reason: str


def text_encoding(source_encoding: str) -> str:
    """The codec to read an export with: UTF-8 with or without a BOM, unless the upload
    path transcoded it from another encoding (``prepare``: facts ``transcoded_from``)."""
    if not source_encoding or codecs.lookup(source_encoding).name == "utf-8":
        return "utf-8-sig"
    return source_encoding


def write_beside(
    export: Path, details: Any, *, source_encoding: str = "", export_rows: Mapping[str, Any] | None = None
) -> list[FailedRow]:
    """Write ``<export>.failed-rows.csv`` (atomically) and return its rows; [] if none failed.

    ``export`` is the file as dropped (never a mapped or transcoded copy): the person
    fixes the rows they know. ``source_encoding``: what the upload transcoded it from
    ("" for UTF-8). ``export_rows``: with a column mapping, the result's map from the
    server's row numbers to the export's (``{"3": {"row": 4, ...}}``, rows counted after
    the header, blank ones included); without one, server row n is the n-th row that is
    not blank. Raises OSError, UnicodeError, csv.Error, LookupError for an export that
    cannot be read back (the caller logs it).
    """
    # rows.row_number: a reply is untrusted ('²' passes str.isdigit, then int() raises).
    reasons = {
        number: tidy_reason(outcome) for n, outcome in failed_details(details) if (number := row_number(n)) is not None
    }
    if not reasons:
        return []
    by_export = _by_export_row(reasons, export_rows)
    encoding = text_encoding(source_encoding)
    newline = _line_ending(export)
    target = failed_rows_path(export)
    written: list[FailedRow] = []
    # An unpredictable name made O_EXCL through the folder's handle (workfiles.create_temporary):
    # sending/ is shared ground, a link planted at a guessable name is never written through.
    temporary, raw = workfiles.create_temporary(export, ".failed-rows")
    try:
        with raw:
            written = _write_rows(export, raw, encoding, newline, reasons, by_export)
        workfiles.rename_claimed(temporary, target.name)
    except BaseException:
        workfiles.discard(temporary)
        raise
    return written


def _write_rows(
    export: Path,
    raw: BinaryIO,
    encoding: str,
    newline: str,
    reasons: Mapping[int, str],
    by_export: Mapping[int, int] | None,
) -> list[FailedRow]:
    written: list[FailedRow] = []
    with _open_text(export, encoding) as source:
        records = csv.reader(source)
        header_line, header = _header(records)
        keep = [i for i, name in enumerate(header) if name.strip().lower() != ERROR_COLUMN]
        # Excel opens UTF-8 as its legacy code page without a BOM; any other
        # encoding is written back as the export came, so the fixed file takes
        # the same path as the export did.
        with io.TextIOWrapper(raw, encoding=encoding, errors="replace", newline="") as sink:
            writer = csv.writer(sink, lineterminator=newline)
            writer.writerow([header[i] for i in keep] + [ERROR_COLUMN])
            number = 0  # rows that are not blank: the server's numbering without a mapping
            for line, row in enumerate(records, start=header_line + 1):
                blank = not any(cell.strip() for cell in row)
                number += not blank
                server = by_export.get(line - header_line) if by_export is not None else None if blank else number
                if server in reasons:
                    cells = [row[i] if i < len(row) else "" for i in keep] + row[len(header) :]
                    # Extra cells beyond the header are kept after the error column (the
                    # import reads columns by header name, so they change nothing).
                    writer.writerow(cells[: len(keep)] + [reasons[server]] + cells[len(keep) :])
                    written.append(FailedRow(server, line, reasons[server]))
            sink.flush()
            os.fsync(sink.fileno())
    return written


def _by_export_row(reasons: Mapping[int, str], export_rows: Mapping[str, Any] | None) -> dict[int, int] | None:
    """Export row -> server row, from a mapped upload's trace (None: not mapped)."""
    if not isinstance(export_rows, Mapping):
        return None
    found = {}
    for key, value in export_rows.items():
        number = row_number(key)
        if number in reasons and isinstance(value, Mapping):
            row = value.get("row")
            if isinstance(row, int) and not isinstance(row, bool):
                found[row] = number
    return found


def for_log(export: Path, details: Any, facts: Mapping[str, Any], inbox: str) -> str:
    """Write the refused rows beside the file; return " Failed: row 2 (line 3): reason; ..."
    (the first few) for the log line, or "" when no row failed. ``facts``: the result's own
    (``transcoded_from``, ``export_rows``), which say how the export became the upload."""
    try:
        rows = write_beside(
            export,
            details,
            source_encoding=str(facts.get("transcoded_from") or ""),
            export_rows=facts.get("export_rows"),
        )
        found = [(f"row {row.number} (line {row.line})", row.reason) for row in rows]
    except (OSError, UnicodeError, csv.Error, LookupError) as exc:
        logger.warning(
            'inbox "{}": {}: could not write the failed rows as a spreadsheet ({})',
            inbox,
            display_name(export.name),
            exc,
        )
        found = [(f"row {n}", tidy_reason(reason)) for n, reason in failed_details(details)]
    if not found:
        return ""
    first = "; ".join(f"{where}: {reason.rstrip('.')}" for where, reason in found[:FIRST_REASONS])
    more = f"; and {len(found) - FIRST_REASONS} more" if len(found) > FIRST_REASONS else ""
    return f" Failed: {first}{more}"  # after the server's summary, which ends with a full stop


def without_error_column(source: Path, open_target: Callable[[], BinaryIO]) -> bool:
    """Copy a UTF-8 upload source without its ``import_error`` column into the file
    ``open_target()`` makes; False (and no copy made) when the header has none, which
    costs only reading the header. Every row is kept, blank ones too, so row numbers
    stay those of the export."""
    newline = _line_ending(source)
    with _open_text(source, "utf-8-sig") as text:
        records = csv.reader(text)
        header_line, header = _header(records)
        drop = {i for i, name in enumerate(header) if name.strip().lower() == ERROR_COLUMN}
        if not drop:
            return False
        with io.TextIOWrapper(open_target(), encoding="utf-8", newline="") as sink:
            writer = csv.writer(sink, lineterminator=newline)
            writer.writerows([[]] * (header_line - 1))
            writer.writerow([cell for i, cell in enumerate(header) if i not in drop])
            for row in records:
                writer.writerow([cell for i, cell in enumerate(row) if i not in drop])
            sink.flush()
            os.fsync(sink.fileno())
    return True


def _open_text(path: Path, encoding: str) -> io.TextIOWrapper:
    # newline="": the csv module sees \r\n inside quoted cells as it is.
    return io.TextIOWrapper(open_claimed(path), encoding=encoding, errors="strict", newline="")


def _header(records: Iterator[list[str]]) -> tuple[int, list[str]]:
    """The first row that is not blank, and its spreadsheet row (as Infiniti and mapper.py find it)."""
    for line, row in enumerate(records, start=1):
        if any(cell.strip() for cell in row):
            return line, row
    return 0, []


def _line_ending(path: Path) -> str:
    with open_claimed(path) as handle:
        start = handle.read(_SNIFF)
    return "\r\n" if b"\r\n" in start or (b"\n" not in start and b"\r" in start) else "\n"
