"""``dropbox-sync preview FILE``: the file as Infiniti would receive it, sending nothing.

It runs the pipeline's own preparation (``prepare.prepare``: route, encoding,
mapping, pre-flight) on a copy-free read of the file, so what it shows is what
``run`` would upload; temporaries go to a private folder, never the inbox.
"""

from __future__ import annotations

import csv
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from dropbox_sync.commands.diff import describe
from dropbox_sync.config import InboxConfig
from dropbox_sync.pipeline.prepare import prepare
from dropbox_sync.pipeline.prepared import Rejection, Upload
from dropbox_sync.roster.memory import Roster

OK, PROBLEMS = 0, 1


def run_preview(inbox: InboxConfig, path: Path, *, rows: int, out: TextIO, roster: Roster | None = None) -> int:
    """``roster``: the memory to compare with, opened read-only (None: none)."""
    with tempfile.TemporaryDirectory(prefix="dropbox-sync-preview-") as scratch:
        prepared = prepare(inbox, path, scratch=Path(scratch), roster=roster, approved=True)
        if isinstance(prepared, Rejection):
            print(f"FAIL  {path}: would go to failed/: {prepared.summary}", file=out)
            return PROBLEMS
        try:
            _show(inbox, path, prepared, rows, out)
        finally:
            prepared.discard()
    return OK


def _show(inbox: InboxConfig, path: Path, upload: Upload, rows: int, out: TextIO) -> None:
    how = [f"inbox {inbox.name}", f"to {upload.route.safe_url}"]
    if upload.transcoded_from:
        how.append(f"transcoded from {upload.transcoded_from}")
    how.append("mapped by [inbox.columns]" if upload.mapped is not None else "sent as it is (no [inbox.columns])")
    print(f"{path}: {', '.join(how)}", file=out)
    print(f"--- the first {rows} row(s) as Infiniti will receive them ---", file=out)
    for record in _records(upload.path, rows + 1):
        print(record, file=out)
    print("---", file=out)
    for line in notes(upload):
        print(line, file=out)
    mapped = upload.mapped
    whole = upload.changes is None or upload.changes.whole is not None
    if mapped is not None:
        what = "will be sent" if whole else "are mapped; only the changes among them are sent"
        print(f"{mapped.rows_sent} of {mapped.rows_read} rows {what}", file=out)
    elif upload.changes is None:
        print(f"{upload.rows} rows will be sent", file=out)
    if upload.changes is not None:
        for line in describe(upload.changes):
            print(line, file=out)
        print(f"run 'dropbox-sync diff {path}' to list who is added, changed or leaving", file=out)


def notes(upload: Upload) -> list[str]:
    """What a person should know before this upload goes (``preview`` and ``check``):
    rows the mapping leaves out, and values the server will refuse."""
    lines = []
    mapped = upload.mapped
    if mapped is not None:
        lines += [f"note  line {s.line}: {s.reason}; not sent" for s in mapped.skipped]
        if mapped.skipped_count > len(mapped.skipped):
            lines.append(f"note  ... and {mapped.skipped_count - len(mapped.skipped)} more row(s) not sent")
    return lines + [f"warn  {warning}" for warning in upload.warnings]


def _records(path: Path, count: int) -> Iterator[str]:
    """The first ``count`` CSV records of ``path`` as their text (quoted line breaks kept),
    line endings shown as plain new lines."""
    with open(path, encoding="utf-8-sig", newline="", errors="replace") as handle:
        taken: list[str] = []

        def lines() -> Iterator[str]:
            for line in handle:
                taken.append(line)
                yield line

        reader = csv.reader(lines())
        for _ in range(count):
            try:
                next(reader)
            except (StopIteration, csv.Error):
                return
            yield "".join(taken).rstrip("\r\n").replace("\r\n", "\n")
            taken.clear()
