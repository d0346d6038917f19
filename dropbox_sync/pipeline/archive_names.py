"""The names of archived files and of their companions; pure, nothing touches the disk.

An archive name is the UTC time of the claim and the name as dropped
(``20261125T020000Z_students.csv``), shortened in the middle of its stem when
the result's name would pass the 255-byte limit. Beside it: its result
(``.result.json``), the CSV a mapped file was sent as (``.sent.csv``), its
refused rows (``.failed-rows.csv``) and our dot-name companions (done marker,
kept original name, approval). ``archive.py``, ``claim.py`` and their kin move them; everyone asks here
what a name means, and how to show it to a person.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Container
from pathlib import Path

RESULT_SUFFIX = ".result.json"
SENT_SUFFIX = ".sent.csv"  # <archived name>.sent.csv: the CSV a mapped file was sent as
ORIGINAL_SUFFIX = ".name"  # .<archive name>.name holds the full name of a shortened one
FAILED_ROWS_SUFFIX = ".failed-rows.csv"  # beside a partly failed file (failed_rows.py)
# 20261125T020000Z_name.csv, or 20261125T020000Z-2_name.csv on a clash
_ARCHIVE_NAME = re.compile(r"^\d{8}T\d{6}Z(?:-\d+)?_(?P<original>.+)\Z", re.DOTALL)  # names may hold \n
# File names are limited to 255 bytes (Linux) or UTF-16 units (Windows). Our
# longest derived name is ".<stamp>-NNNN_<name>.result.json.tmp": keep the
# user's part short enough, in UTF-8 bytes, for that to fit everywhere.
MAX_NAME_BYTES = 255 - len(".") - len("20261125T020000Z-9999_") - len(RESULT_SUFFIX + ".tmp")


def original_name(archived: str) -> str:
    """``20261125T020000Z_students.csv`` -> ``students.csv``."""
    match = _ARCHIVE_NAME.match(archived)
    return match.group("original") if match else archived


_CONTROL = {code: f"\\x{code:02x}" for code in [*range(0x20), 0x7F]}


def display_name(name: str) -> str:
    """The name as text for people, logs, results and HTTP.

    A name that is not valid UTF-8 (Linux hands those over as surrogate
    escapes; NTFS allows lone surrogates) gets U+FFFD, and control characters
    are shown escaped, so a file name cannot forge a line in the log."""
    try:
        raw = name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raw = name.encode("utf-8", "surrogatepass")
    return raw.decode("utf-8", "replace").translate(_CONTROL)


def is_archived_file(name: str, siblings: Container[str] | None = None) -> bool:
    """A dropped file in one of our folders, not its result, not our dot-name companions
    (done markers, approvals, temporaries), not a sent copy or failed rows beside their
    file. Give ``siblings`` (the folder's names) where a file must never be missed
    (sending/, failed/): a ``.sent.csv`` or ``.failed-rows.csv`` is then ours only beside
    the file it belongs to (or that file's result: ``retry`` moves the file and leaves
    both), so a user's file of such a name (fixed rows dropped back into the inbox, and
    archived in turn) is still taken for what it is."""
    if name.startswith(".") or name.endswith(RESULT_SUFFIX):
        return False
    suffix = next((s for s in (SENT_SUFFIX, FAILED_ROWS_SUFFIX) if name.endswith(s)), None)
    if suffix is None:
        return True
    base = name[: -len(suffix)]
    return siblings is not None and base not in siblings and base + RESULT_SUFFIX not in siblings


def result_path(file: Path) -> Path:
    return file.with_name(result_name(file.name))


def sent_path(file: Path) -> Path:
    """Beside a file sent through a column mapping: the CSV that was actually uploaded."""
    return file.with_name(file.name + SENT_SUFFIX)


def failed_rows_path(file: Path) -> Path:
    return file.with_name(file.name + FAILED_ROWS_SUFFIX)


def export_name(name: str) -> str:
    """The export a dropped-back ``<archived>.failed-rows.csv`` came from (for routing),
    else ``name``: ``20261125T020000Z_users.csv.failed-rows.csv`` -> ``users.csv``."""
    if not name.lower().endswith(FAILED_ROWS_SUFFIX):
        return name
    return original_name(name[: -len(FAILED_ROWS_SUFFIX)])


def result_name(archived: str) -> str:
    """The name of a file's result, beside it."""
    return archived + RESULT_SUFFIX


def original_name_file(archived: str) -> str:
    """Beside a file whose archive name was shortened, the dot-name holding its full original name."""
    return f".{archived}{ORIGINAL_SUFFIX}"


def marker_name(archived: str) -> str:
    """Beside a claimed file, the dot-name its done marker waits under, then is archived with."""
    return f".{archived}.done"


def approval_name(archived: str) -> str:
    """Beside a claimed file, the dot-name saying a person approved it past the shrink guard."""
    return f".{archived}.approved"


def companion_names(name: str) -> tuple[str, str, str, str]:
    """Our companions of a file, which follow it from folder to folder: its done marker, its
    kept original name, its sent copy and its refused rows (each only when there is one)."""
    return marker_name(name), original_name_file(name), name + SENT_SUFFIX, name + FAILED_ROWS_SUFFIX


def original_path(archived: Path) -> Path:
    """Beside a file whose archive name was shortened: its full original name."""
    return archived.with_name(original_name_file(archived.name))


def marker_path(claimed: Path) -> Path:
    """Where a claimed file's done marker waits, then is archived beside it."""
    return claimed.with_name(marker_name(claimed.name))


def approval_marker(claimed: Path) -> Path:
    """Beside a claimed file, says a person approved it past the shrink guard."""
    return claimed.with_name(approval_name(claimed.name))


def companions(file: Path) -> tuple[Path, Path, Path, Path]:
    """``companion_names`` as paths beside ``file``."""
    marker, original, sent, rows = companion_names(file.name)
    return file.with_name(marker), file.with_name(original), file.with_name(sent), file.with_name(rows)


def shorten(name: str) -> str:
    """Cut an over-long name in the middle of its stem, keeping the extension."""
    # fsencode: a name that is not valid UTF-8 reaches us with surrogates.
    if len(os.fsencode(name)) <= MAX_NAME_BYTES:
        return name
    stem, dot, ext = name.rpartition(".")
    if not dot or len(ext) > 16:
        stem, ext = name, ""
    budget = MAX_NAME_BYTES - len(os.fsencode(ext)) - (1 if ext else 0)
    cut = os.fsdecode(_whole_characters(os.fsencode(stem)[:budget]))
    return f"{cut}.{ext}" if ext else cut


def _whole_characters(data: bytes) -> bytes:
    """``data`` less a UTF-8 character the cut split at its end. Every other byte
    stays (even invalid ones), so a cut name is never more than 3 bytes under
    its budget: ``claim.original_of`` relies on that."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte < 0x80:
            return data
        if byte >= 0xC0:  # the lead byte of the last character
            need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return data if back >= need else data[:-back]
    return data


CLAIM_STAMP = "%Y%m%dT%H%M%SZ"  # an archive name's first 16 characters: when it was claimed, UTC


def claim_stamp(moment: dt.datetime) -> str:
    """The front of an archive name claimed at ``moment`` (``archived_at`` reads it back)."""
    return moment.astimezone(dt.UTC).strftime(CLAIM_STAMP)


def archived_at(name: str) -> dt.datetime | None:
    """When a file was claimed, from its archive name (None if the name is not one of ours)."""
    try:
        return dt.datetime.strptime(name[:16], CLAIM_STAMP).replace(tzinfo=dt.UTC)
    except ValueError:
        return None
