"""Checks made before a file is uploaded, so the server only sees plausible CSVs.

A file that fails goes to failed/ with a result in the server's own shape
(``success: false`` and a ``summary`` saying exactly what is wrong), so office
staff read one kind of result whatever stopped the file. An empty file passes:
the vendor documents it as legal (incremental imports).
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dropbox_sync.config.mapping import REQUIRED_OUTPUT as REQUIRED_COLUMNS
from dropbox_sync.config.mapping import ColumnMapping, fold
from dropbox_sync.pipeline.failed_rows import ERROR_COLUMN
from dropbox_sync.pipeline.workfiles import open_claimed

BOM = codecs.BOM_UTF8
CHUNK = 1 << 20
HEADER_LIMIT = 64 * 1024  # a header line longer than this is not a CSV header
ZIP_SIGNATURE = b"PK\x03\x04"  # .xlsx and .ods are ZIP archives
OLE_SIGNATURE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # .xls (Excel 97-2003) is an OLE file
WORKBOOK = "File is an Excel workbook, not a CSV: in Excel use Save As, CSV UTF-8 (Comma delimited) (*.csv)."
CONTEXT = 24  # characters shown either side of a bad byte
NEWLINE = b"\n"


@dataclass(frozen=True)
class Inspection:
    size: int
    sha256: str | None  # None when the file was too big to read
    problem: str | None  # None: fit to upload; else one sentence saying why not
    rows: int = 0  # data lines after the header (for the shrink guard)
    not_utf8: bool = False  # the problem is the bytes: not UTF-8 text (another encoding?)
    # The header may name an ``import_error`` column (failed_rows.py): False only when the
    # whole header was read and the name is nowhere in it, so the copy without it is skipped.
    error_column: bool = False


def inspect(path: Path, *, max_file_size: int, digest: bool = True, mapping: ColumnMapping | None = None) -> Inspection:
    """Read the file once: whether it may be uploaded, its rows, and its digest
    (``digest=False`` when the upload will hash the bytes as they go out). With a
    column ``mapping``, the header must have the columns its templates read instead
    of Infiniti's own (the mapping makes those)."""
    with open_claimed(path) as handle:
        size = os.fstat(handle.fileno()).st_size
        if size > max_file_size:
            problem = (
                f"File is {_human(size)}, over the limit of {_human(max_file_size)} "
                "(max_file_size). Split the export or raise the limit."
            )
            return Inspection(size, None, problem)
        hasher = hashlib.sha256() if digest else None
        lines = _LineCounter()
        problem = _check_text(handle, hasher, lines)
        not_utf8 = problem is not None
        handle.seek(0)
        workbook = _workbook(handle.read(len(OLE_SIGNATURE)))
        if workbook is not None:  # never transcoded: no encoding makes a workbook a CSV
            problem, not_utf8 = workbook, False
        error_column = False
        if problem is None and size > 0:
            handle.seek(0)
            start = handle.read(HEADER_LIMIT)
            whole = len(start) < HEADER_LIMIT  # the file, hence its header, was read to its end
            text = start.removeprefix(BOM).decode("utf-8", errors="replace")
            problem = _check_header(text, whole, mapping)
            # Ruled out only when the whole header was read and the name is nowhere in it.
            error_column = not whole or ERROR_COLUMN in text.lower()
    rows = max(0, lines.total - 1)
    return Inspection(size, hasher.hexdigest() if hasher else None, problem, rows, not_utf8, error_column)


def file_sha256(path: Path, *, max_file_size: int) -> str | None:
    """The file's digest for a result; None for a file too big to read, or unreadable."""
    digest = hashlib.sha256()
    try:
        with open_claimed(path) as handle:
            if os.fstat(handle.fileno()).st_size > max_file_size:
                return None
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


class _LineCounter:
    """Counts lines across chunks (a last line without a newline counts too)."""

    def __init__(self) -> None:
        self.newlines = 0
        self.ends_open = False

    def update(self, chunk: bytes) -> None:
        self.newlines += chunk.count(b"\n")
        self.ends_open = not chunk.endswith(b"\n")

    @property
    def total(self) -> int:
        return self.newlines + (1 if self.ends_open else 0)


def _workbook(head: bytes) -> str | None:
    """A spreadsheet saved in its own format under a .csv name (typing ".csv" in Save As)."""
    return WORKBOOK if head.startswith((ZIP_SIGNATURE, OLE_SIGNATURE)) else None


def _check_text(handle, digest, lines: _LineCounter) -> str | None:
    """The whole file must be UTF-8 text (a BOM is fine); find the first bad byte.

    Reads to the end even after a problem, so the digest is always complete.
    """
    problem: str | None = None
    head = handle.read(4)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) and not head.startswith(BOM):
        problem = "File is UTF-16 text; Infiniti needs UTF-8. In Excel choose 'CSV UTF-8' when saving."
    handle.seek(0)
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    while chunk := handle.read(CHUNK):
        if digest is not None:
            digest.update(chunk)
        line = lines.total if lines.ends_open else lines.total + 1  # where this chunk starts
        lines.update(chunk)
        if problem is None:
            problem = _chunk_problem(chunk, line, decoder)
        offset += len(chunk)
    if problem is None:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            problem = (
                f"File is not valid UTF-8: it ends in the middle of a character, on line {lines.total}: "
                "the file was cut short (an interrupted copy?)."
            )
    return problem


def _chunk_problem(chunk: bytes, line: int, decoder) -> str | None:
    """The first problem in this chunk, on which line (spreadsheet numbering: the header is line 1)."""
    zero = chunk.find(b"\0")
    if zero >= 0:
        return f"File is not text: line {line + chunk.count(NEWLINE, 0, zero)} has a NUL byte."
    # Most exports are plain ASCII: nothing to decode (the slow part) unless a
    # multi-byte character is pending from the previous chunk.
    if chunk.isascii() and not decoder.getstate()[0]:
        return None
    try:
        decoder.decode(chunk)
    except UnicodeDecodeError as exc:
        # exc.object is the chunk after the decoder's carried-over bytes (never a line break).
        data, start = exc.object, max(exc.start, 0)
        bad = data[start] if start < len(data) else 0
        return (
            f"File is not valid UTF-8: line {line + data.count(NEWLINE, 0, start)} has a character saved in "
            f'another encoding (byte 0x{bad:02x}, shown as \ufffd) here: "{_around(data, start)}". Save the '
            "export as UTF-8 (Excel: 'CSV UTF-8'), or set source_encoding (e.g. \"cp1252\") in the config."
        )
    return None


def _around(data: bytes, at: int) -> str:
    """The text of the same line around byte ``at``, undecodable bytes as U+FFFD."""
    begin = max(data.rfind(b"\n", 0, at) + 1, at - CONTEXT * 2)
    end = data.find(b"\n", at)
    end = min(len(data) if end < 0 else end, at + CONTEXT * 2)
    before = data[begin:at].decode("utf-8", "replace")[-CONTEXT:]
    after = data[at:end].decode("utf-8", "replace")[: CONTEXT + 1]
    return (before + after).replace("\r", "").replace('"', "'")


def _check_header(text: str, whole: bool, mapping: ColumnMapping | None) -> str | None:
    """``text``: the start of the file, decoded; ``whole``: it is all of the file."""
    if not text.strip():
        return None  # only a BOM or blank lines: an empty import, which the vendor allows
    first_line = text.splitlines()[0]
    if not first_line.strip():
        return "File has no header line: the first line is empty."
    if "\n" not in text and not whole:
        return f"File has no header line: no line break in the first {HEADER_LIMIT // 1024} KiB."
    return missing_columns_problem(next(csv.reader([first_line])), mapping)


def missing_columns_problem(header: Sequence[str], mapping: ColumnMapping | None) -> str | None:
    """What a header lacks: Infiniti's required columns, or with a column mapping the
    export columns its templates read; None when nothing is missing."""
    # Matched like Infiniti's interactive import (and our emulator): case and
    # surrounding spaces do not matter.
    present = {fold(c) for c in header}
    required = REQUIRED_COLUMNS if mapping is None else mapping.source_columns
    missing = [c for c in required if fold(c) not in present]
    if not missing:
        return None
    if mapping is None:
        message = f"Missing required column(s): {', '.join(missing)}."
    else:
        message = f"The export lacks column(s) the mapping uses: {', '.join(missing)}."
    if len(header) == 1 and ";" in header[0]:
        message += " The header is separated by ';': Infiniti needs commas."
    else:
        message += f" The header has: {', '.join(c.strip() for c in header)[:300]}."
    return message if mapping is None else message + " Fix the export or [inbox.columns] in the config."


def _human(size: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size} bytes"
