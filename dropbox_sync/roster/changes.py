"""What an import changes, against the roster memory (``memory.py``): the diff, the rows to
send, and what the server's reply lets us remember. The diff itself, as data, is a
``changeset.Changes``.

``plan`` reads the CSV Infiniti would receive (the export, or its mapped copy) once,
comparing each row with the route's memory by username (compared as Infiniti does:
surrounding spaces stripped, case kept): added, changed, unchanged; users remembered but
missing from this export are leavers. With ``delta`` (or leavers to deactivate) it writes
the upload in the same pass: only added and changed rows, then one row per leaver. It keeps
the trace from each row sent back to the export's row, since people fix the export.

``remember`` is called once the server has answered: it stores the rows the server
confirmed (created or updated; all of them for ``success: true`` without ``details``).

Rows compare by value, not by column order: a digest of the non-empty cells sorted by
column name, so a reordered export changes nothing and a new empty column neither.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
from array import array
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from dropbox_sync.config.mapping import USERNAME, fold
from dropbox_sync.config.policy import RosterPolicy
from dropbox_sync.pipeline.rows import ROW_SUCCESS
from dropbox_sync.pipeline.workfiles import open_claimed
from dropbox_sync.roster.changeset import LISTED, Changes, SentRows
from dropbox_sync.roster.memory import Memory, Roster

# Beyond this many rows a file is not compared nor remembered (no school has such a roster;
# a 1 GiB export must stream in flat memory as before).
MAX_ROWS = 500_000
_STRING = json.encoder.encode_basestring  # a str as JSON, non-ASCII kept: the C function


class Codec:
    """How the rows of one header are keyed, compared and remembered."""

    def __init__(self, header: list[str]) -> None:
        first: dict[str, int] = {}
        for i, name in enumerate(header):
            first.setdefault(fold(name), i)  # a repeated header: the first wins, as in Infiniti
        self.width = len(header)
        self.username = first.get(USERNAME)  # None: not a users import (a groups file)
        # (folded name + separator, column) in name order: the digest's text, made per row
        self._keyed = [(name + "\x1e", i) for name, i in sorted(first.items())]
        self._named = [(header[i].strip(), i) for i in sorted(first.values())]
        # Each column's '"name": ' as json.dumps writes it (distinct: the folded names are).
        self._json_keys = [(_STRING(name) + ": ", i) for name, i in self._named]

    def username_of(self, row: list[str]) -> str:
        assert self.username is not None
        return row[self.username].strip() if self.username < len(row) else ""

    def digest(self, row: list[str]) -> int:
        width = len(row)
        text = "\x1f".join([key + row[i] for key, i in self._keyed if i < width and row[i]])
        return int.from_bytes(
            hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big", signed=True
        )

    def values(self, row: list[str]) -> dict[str, str]:
        return {name: row[i] if i < len(row) else "" for name, i in self._named}

    def values_json(self, row: list[str]) -> str:
        """``json.dumps(self.values(row), ensure_ascii=False)``, the same text, made without the
        dict and the encoder object json makes per call: 1.5 µs a row against 3.8 µs."""
        width = len(row)
        return "{" + ", ".join([key + _STRING(row[i] if i < width else "") for key, i in self._json_keys]) + "}"


def records(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(record number after the start, cells) of a UTF-8 CSV (a BOM is fine), links not followed."""
    with open_claimed(path) as raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as text:
        yield from enumerate(csv.reader(text), start=1)


def _blank(row: list[str]) -> bool:
    return not "".join(row).strip()  # no cell holds more than spaces


def plan(
    path: Path,
    inbox: str,
    route: str,
    policy: RosterPolicy,
    roster: Roster | None,
    now: dt.datetime,
    *,
    open_target: Callable[[], BinaryIO],
    row_map: Any = None,
    keep_rows: bool = False,
) -> Changes | None:
    """Compare the CSV at ``path`` (as Infiniti would receive it) with the route's memory.

    With ``policy.rewrites`` the rows to send are written to a file ``open_target()`` makes
    (``Changes.rewritten``; when the file itself can be sent after all, the caller removes it).
    Without, no file is made: most imports only compare. ``row_map``: a mapping's trace from the
    upload's rows to the export's (None: ``path`` is the export). ``keep_rows``: a comparison
    alone (no rewrite) keeps the rows it read (``Changes.compared_rows``) for ``remember``,
    when the file compared is the file sent (a small file). None when the file has no
    username column (not a users import): nothing to compare. Raises OSError, csv.Error,
    UnicodeDecodeError (the preparation step has read this file successfully already)."""
    memory = roster.memory(inbox, route) if roster is not None else None
    note = roster.trouble if roster is not None else None
    changes = Changes(len(memory) if memory else 0, memory is not None, policy, note=note)
    changes.whole = _why_whole(policy, memory, now, note)
    rows = records(path)
    header_line, header = next(((n, r) for n, r in rows if not _blank(r)), (0, []))
    codec = Codec(header)
    if codec.username is None:
        rows.close()
        return None
    changes.username_column = codec.username
    digests = memory.digests if memory is not None else {}
    if not policy.rewrites:
        kept: list[list[str]] | None = [] if keep_rows else None
        _compare(changes, codec, rows, digests, header_line, row_map, None, kept=kept)
        if kept is not None:
            changes.compared_rows = (header, kept)
    else:
        with io.TextIOWrapper(open_target(), encoding="utf-8", newline="") as sink:
            extra = _extra_columns(header, policy)
            writer = csv.writer(sink)
            writer.writerow(header + [name for name, _ in extra])
            sent = _compare(changes, codec, rows, digests, header_line, row_map, writer, len(extra))
            if policy.deactivates and changes.leavers and roster is not None:
                changes.first_leaver_row = len(sent) + 1
                _write_leavers(writer, header, extra, policy, roster.rows(inbox, route, changes.leavers), changes)
                sent.extend([0] * len(changes.leavers))
        changes.sent_rows = len(sent)
        changes.rewritten = changes.whole is None or changes.first_leaver_row > 0
        if changes.rewritten:
            changes.sent_map = SentRows(sent, row_map.header_line if row_map is not None else header_line)
    _old_values(changes, roster, inbox, route)
    return changes


def _why_whole(policy: RosterPolicy, memory: Memory | None, now: dt.datetime, note: str | None) -> str | None:
    if not policy.delta:
        return "delta is off"
    if memory is None:
        return note or "no roster memory yet"
    if policy.full_sync_days > 0:
        if memory.last_full is None:
            return "full sync: no whole file confirmed yet"
        if now - memory.last_full >= dt.timedelta(days=policy.full_sync_days):
            return f"full sync: the whole file is sent every {policy.full_sync_days:g} days (full_sync_days)"
    return None


def _compare(
    changes: Changes,
    codec: Codec,
    rows: Iterator[tuple[int, list[str]]],
    digests: Mapping[str, int],
    header_line: int,
    row_map: Any,
    writer: Any,
    extra: int = 0,
    *,
    kept: list[list[str]] | None = None,
) -> array:
    """The one pass: count, list, and write the rows to send (``extra`` empty cells for the
    leaver_values columns added to the header); their export rows."""
    sent = array("q")
    seen: set[str] = set()
    whole = changes.whole is not None
    number = 0  # rows that are not blank: the server's numbering of the whole file
    for record, row in rows:
        if _blank(row):
            continue
        number += 1
        if kept is not None:
            kept.append(row)
        export_row = row_map.export_row(number) if row_map is not None else record - header_line
        username = codec.username_of(row)
        old = digests.get(username) if username else None
        if old is None:
            changes.added += 1
            if len(changes.added_listed) < LISTED:
                changes.added_listed.append(_where(username, export_row, row_map, header_line))
        elif old != codec.digest(row):
            seen.add(username)  # only remembered names: a first export costs no set of every username
            changes.changed += 1
            if len(changes.changed_listed) < LISTED:
                changes.changed_listed.append(
                    {**_where(username, export_row, row_map, header_line), "new": codec.values(row)}
                )
        else:
            changes.unchanged += 1
            seen.add(username)
            if not whole:
                continue
        if writer is not None:
            if extra:  # cells beyond the header would fall under the added columns: cut them
                row = row[: codec.width] + [""] * (codec.width - len(row) + extra)
            writer.writerow(row)
            sent.append(export_row)
    if number:
        changes.leavers = [username for username in digests if username not in seen]
    elif digests:
        # A header and no rows is what a failed SIS export job leaves: it says nothing about
        # who left, and must never deactivate the school (Infiniti takes it as a no-op import).
        changes.note = "the file has no rows: nobody is taken for a leaver"
    changes.sent_rows = number
    return sent


def _where(username: str, export_row: int, row_map: Any, header_line: int) -> dict[str, Any]:
    line = export_row + (row_map.header_line if row_map is not None else header_line)
    return {"username": username, "row": export_row, "line": line}


def _extra_columns(header: list[str], policy: RosterPolicy) -> list[tuple[str, str]]:
    """leaver_values columns the file lacks: added to the header (empty on the export's rows)."""
    if not policy.deactivates:
        return []
    have = {fold(name) for name in header}
    return [(name, value) for name, value in policy.leaver_values if fold(name) not in have]


def _write_leavers(
    writer: Any,
    header: list[str],
    extra: list[tuple[str, str]],
    policy: RosterPolicy,
    remembered: Mapping[str, dict[str, str]],
    changes: Changes,
) -> None:
    """One row per leaver: its remembered values under this file's header, then leaver_values."""
    overrides = {fold(name): value for name, value in policy.leaver_values}
    for username in changes.leavers:
        old = {fold(k): v for k, v in remembered.get(username, {}).items()}
        old[USERNAME] = username
        cells = [overrides.get(fold(name), old.get(fold(name), "")) for name in header]
        writer.writerow(cells + [value for _, value in extra])


def _old_values(changes: Changes, roster: Roster | None, inbox: str, route: str) -> None:
    """For the changed rows listed: each column that changed, old and new."""
    if not changes.changed_listed or roster is None:
        return
    old_rows = roster.rows(inbox, route, [item["username"] for item in changes.changed_listed])
    for item in changes.changed_listed:
        new = item.pop("new")
        old = {fold(k): v for k, v in old_rows.get(item["username"], {}).items()}
        columns = {
            name: {"old": old.get(fold(name), ""), "new": value}
            for name, value in new.items()
            if old.get(fold(name), "") != value
        }
        present = {fold(name) for name in new}
        original = old_rows.get(item["username"], {})
        columns |= {
            name: {"old": value, "new": ""} for name, value in original.items() if value and fold(name) not in present
        }
        item["columns"] = columns


def confirmed(body: Mapping[str, Any]) -> Any:
    """A predicate: did the server import row n? (``success`` without ``details``: every row.)"""
    details = body.get("details")
    if isinstance(details, list):
        details = {str(n): v for n, v in enumerate(details, start=1)}
    if not isinstance(details, Mapping):
        everything = body.get("success") is True
        return lambda _n: everything
    return lambda n: str(details.get(str(n), "")).strip().lower().startswith(ROW_SUCCESS)


def remember(
    roster: Roster | None,
    inbox: str,
    route: str,
    changes: Changes | None,
    sent: Path | None,
    body: Mapping[str, Any],
    now: dt.datetime,
) -> int:
    """Store what the server confirmed of the CSV ``sent`` (None: nothing was uploaded); the number
    of rows remembered. Leavers are forgotten: deactivated ones once the server confirmed them,
    the others (keep, report) now that this import has reported them. Never raises for the roster."""
    if roster is None or changes is None:
        return 0
    ok = confirmed(body)
    remembered = 0
    deactivated: list[str] = []

    def rows() -> Iterator[tuple[str, int, str]]:
        nonlocal remembered
        if sent is None:
            return
        if changes.compared_rows is not None:  # the same file, read while the server imported it
            header, found = changes.compared_rows
        else:
            found = (row for _, row in records(sent) if not _blank(row))
            header = next(found, [])
        codec = Codec(header)
        if codec.username is None:
            return
        number = 0
        for row in found:
            number += 1
            username = codec.username_of(row)
            if not username or not ok(number):
                continue
            if changes.first_leaver_row and number >= changes.first_leaver_row:
                deactivated.append(username)
                continue
            remembered += 1
            yield username, codec.digest(row), codec.values_json(row)

    if body.get("success") is not True and not isinstance(body.get("details"), Mapping | list):
        return 0  # a whole-file failure: the memory stays as it was
    forget = deactivated if changes.policy.deactivates else changes.leavers  # filled as rows() is read
    roster.remember(inbox, route, rows(), iter(forget), whole=changes.whole is not None, now=now)
    return remembered
