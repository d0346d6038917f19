"""Streaming an export through a ``ColumnMapping`` into the CSV Infiniti receives.

One pass, constant memory: a ``csv`` reader over the (UTF-8) export feeds a
``csv`` writer into a temporary file in the work folder, row by row. What is
kept per file is only what people need afterwards: the rows that were not
sent (an empty username) and, through ``RowMap``, how the server's row numbers
lead back to the export's rows and spreadsheet lines.

Numbering, as office staff see the file in a spreadsheet: the header is line 1;
export row N is the N-th record after the header (blank rows count, since a
spreadsheet shows them), on line N + header line. The server numbers the rows
it received from 1; rows we did not send are not in its numbering.
"""

from __future__ import annotations

import bisect
import csv
import io
from array import array
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any, BinaryIO

from dropbox_sync.config.mapping import (
    REQUIRED_OUTPUT,
    Column,
    ColumnMapping,
    Template,
    fold,
)
from dropbox_sync.pipeline.preflight import missing_columns_problem
from dropbox_sync.pipeline.rows import row_number
from dropbox_sync.pipeline.workfiles import open_claimed

LISTED_ROWS = 1000  # rows listed by number in a result; beyond that only counted
_BUFFER = 1 << 20


class RowMap:
    """Server row number -> export row number, from the sorted export rows not sent.

    Memory is one machine word per row not sent (blank rows, empty usernames),
    not per row: a 1 GiB export with every row sent costs nothing here."""

    def __init__(self, not_sent: Iterable[int] = (), header_line: int = 1) -> None:
        self._gaps = array("q", sorted(not_sent))
        self.header_line = header_line

    def export_row(self, sent_row: int) -> int:
        # The least e with e - |gaps <= e| == sent_row: iterate up to the fixed point.
        row = sent_row
        while True:
            moved = sent_row + bisect.bisect_right(self._gaps, row)
            if moved == row:
                return row
            row = moved

    def line(self, sent_row: int) -> int:
        """The spreadsheet line of a sent row (the header is line ``header_line``)."""
        return self.export_row(sent_row) + self.header_line


@dataclass
class Skipped:
    row: int  # export row number
    line: int  # spreadsheet line
    reason: str


@dataclass
class MapResult:
    """What mapping one export produced (``problem`` set: nothing may be sent)."""

    header: list[str] = field(default_factory=list)  # the export's own header
    rows_read: int = 0  # records after the header, blank ones included
    rows_sent: int = 0
    skipped: list[Skipped] = field(default_factory=list)  # listed: at most LISTED_ROWS
    skipped_count: int = 0  # rows not sent other than blank ones
    warnings: list[str] = field(default_factory=list)  # things the server will refuse (preview, check)
    problem: str | None = None
    row_map: RowMap = field(default_factory=RowMap)

    def facts(self) -> dict[str, Any]:
        """The mapping's part of a result's ``dropbox_sync`` object."""
        return {
            "rows_in_export": self.rows_read,
            "rows_sent": self.rows_sent,
            "not_sent": [{"row": s.row, "line": s.line, "reason": s.reason} for s in self.skipped],
            "not_sent_count": self.skipped_count,
        }


def _cell(template: Template, index: Mapping[str, int]) -> Callable[[list[str]], str]:
    """A function rendering ``template`` from one (padded) export row."""
    constant = template.constant
    if constant is not None:
        return lambda _row: constant
    if len(template.parts) == 1:
        return itemgetter(index[fold(template.columns[0])])  # the common case: one column as it is
    # Several parts: a format string of our own making, ``{0[4]}`` for column 4 and
    # the template's literal text with its braces doubled, so str.format (one C call)
    # does nothing but concatenate; the user's text is never read as a format.
    pattern = "".join(
        f"{{0[{index[fold(p.name)]}]}}" if isinstance(p, Column) else p.replace("{", "{{").replace("}", "}}")
        for p in template.parts
    )
    return pattern.format


def _with_values(render: Callable[[list[str]], str], replacements: dict[str, str]) -> Callable[[list[str]], str]:
    if not replacements:
        return render

    def replaced(row: list[str]) -> str:
        value = render(row)
        # Matched as the value reads, ignoring surrounding spaces; anything else passes untouched.
        return replacements.get(value.strip(), value)

    return replaced


def map_rows(mapping: ColumnMapping, source: io.TextIOBase, sink: io.TextIOBase | None) -> MapResult:
    """Map ``source`` (text) into ``sink`` as CSV (``sink`` None: only check)."""
    result = MapResult()
    reader = csv.reader(source)
    header_line = 0
    try:
        for record in reader:
            header_line += 1
            if any(cell.strip() for cell in record):
                result.header = record
                break
        else:
            return result  # empty: sent as an empty file, a legal no-op import
        result.problem = missing_columns_problem(result.header, mapping)
        if result.problem is not None:
            return result
        _map_body(mapping, reader, sink, result, header_line)
    except UnicodeDecodeError as exc:
        result.problem = f"File is not valid UTF-8 ({exc.reason}). Set source_encoding, e.g. cp1252."
    except csv.Error as exc:
        result.problem = f"File is not a readable CSV at line {reader.line_num}: {exc}."
    return result


def _map_body(
    mapping: ColumnMapping, reader: Any, sink: io.TextIOBase | None, result: MapResult, header_line: int
) -> None:
    index: dict[str, int] = {}
    for i, name in enumerate(result.header):
        index.setdefault(fold(name), i)  # a repeated header: the first one wins, as in Infiniti
    width = len(result.header)
    cells = [_with_values(_cell(t, index), mapping.replacements(name)) for name, t in mapping.columns]
    user = mapping.username_index
    required = [i for i, name in enumerate(mapping.output_names) if fold(name) in REQUIRED_OUTPUT and i != user]
    empty_required: dict[int, list[int]] = {i: [] for i in required}
    writer = csv.writer(sink) if sink is not None else None
    if writer is not None:
        writer.writerow(mapping.output_names)
    not_sent: list[int] = []
    row_number = 0
    for row in reader:
        row_number += 1
        if len(row) < width:
            row += [""] * (width - len(row))
        out = [render(row) for render in cells]
        if not out[user].strip():
            not_sent.append(row_number)
            if any(cell.strip() for cell in row):  # a blank row is dropped without a word
                result.skipped_count += 1
                if len(result.skipped) < LISTED_ROWS:
                    result.skipped.append(Skipped(row_number, row_number + header_line, "username is empty"))
            continue
        for i in required:
            if not out[i].strip() and len(empty_required[i]) < 5:
                empty_required[i].append(row_number + header_line)
        if writer is not None:
            writer.writerow(out)
        result.rows_sent += 1
    result.rows_read = row_number
    result.row_map = RowMap(not_sent, header_line)
    for i, lines in empty_required.items():
        if lines:
            result.warnings.append(
                f"{mapping.output_names[i]} is empty on line(s) {', '.join(map(str, lines))}"
                " (the server will refuse those rows)"
            )


def map_file(mapping: ColumnMapping, source: Path, target: Path, *, sink: BinaryIO | None = None) -> MapResult:
    """Map the UTF-8 export at ``source`` (a BOM is fine) into a new UTF-8 CSV at ``target``.

    The source is opened without following links (``workfiles.open_claimed``); ``sink``,
    when given, is ``target`` already opened (the worker creates it through sending/'s
    handle, ``workfiles.create_temporary``). On a problem, ``target`` is removed:
    nothing half-mapped is ever uploaded (the worker's own temporaries are removed by
    ``prepare``, through the folder's handle)."""
    binary = sink if sink is not None else open(target, "wb", buffering=_BUFFER)  # noqa: SIM115 - closed below
    with (
        open_claimed(source) as raw,
        io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as text,
        io.TextIOWrapper(binary, encoding="utf-8", newline="") as out,
    ):
        result = map_rows(mapping, text, out)
    if result.problem is not None and sink is None:
        target.unlink(missing_ok=True)
    return result


def reported_rows(details: object, row_map: RowMap, sent: Path, username_column: int) -> dict[str, dict[str, Any]]:
    """For each row the server's ``details`` names: the export row, its spreadsheet line and
    the username, read back from the CSV that was sent (one pass; only reported rows kept)."""
    if not isinstance(details, Mapping):
        return {}
    wanted = {row_number(key) for key in details} - {None}
    if not wanted:
        return {}
    found: dict[str, dict[str, Any]] = {}
    last = max(wanted)
    with open(sent, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        next(reader, None)  # our own header
        for number, row in enumerate(reader, start=1):
            if number > last:
                break
            if number in wanted:
                found[str(number)] = {
                    "row": row_map.export_row(number),
                    "line": row_map.line(number),
                    "username": row[username_column] if username_column < len(row) else "",
                }
    return found
