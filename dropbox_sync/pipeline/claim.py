"""Claiming a settled file: one rename from the inbox into sending/ under its archive name.

The archive name is chosen here, at claim time (UTC timestamp + original name,
a counter on clash, archive_names.py says what it means) and kept through
sending/ into processed/ or failed/. A rename within the inbox's volume, never
copy-and-delete, so the file is always whole in exactly one place.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from dropbox_sync.errors import FileNotReady
from dropbox_sync.pipeline import workdirs
from dropbox_sync.pipeline.archive_names import (
    MAX_NAME_BYTES,
    claim_stamp,
    marker_name,
    original_name,
    original_name_file,
    shorten,
)
from dropbox_sync.pipeline.workdirs import FAILED, HELD, PROCESSED, SENDING, WorkFolders
from dropbox_sync.pipeline.workfiles import folder_of


def claim(inbox: Path, name: str, now: dt.datetime, *, done_marker: str = "") -> Path:
    """Atomically move ``inbox/name`` into sending/ under its archive name.

    With a done marker (``x.csv.done``), the marker is taken along as a
    dot-name beside the claimed file: left in the inbox, it would make the
    next ``x.csv`` look finished before it is written."""
    with workdirs.inbox_folders(inbox) as folders:
        sending = folders.get(SENDING, create=True)
        archived = _unique_archive_name(folders, name, now)
        # A shortened archive name loses part of the original (say "...groups.csv"),
        # which routing and results need: keep it beside the file, written before
        # the rename so the claimed file never exists without it.
        keeper = None
        if original_name(archived) != name:
            keeper = original_name_file(archived)
            sending.write_atomically(keeper, os.fsencode(name))  # surrogates (undecodable names) round-trip
        try:
            folders.inbox.rename(name, sending, archived)
        except OSError as exc:
            if keeper is not None:
                sending.unlink(keeper, missing_ok=True)
            if isinstance(exc, FileNotFoundError):
                raise FileNotReady(f"{name} vanished before it could be claimed") from None
            if is_busy(exc):
                # Windows: WinError 32, the writer (or an antivirus scanner) still
                # has it open. That only means "not ready yet" (DESIGN §8.7).
                raise FileNotReady(f"{name} is open in another program ({exc.strerror})") from None
            raise
        if done_marker:
            try:
                folders.inbox.rename(name + done_marker, sending, marker_name(archived))
            except OSError:
                pass  # gone or held: the claimed file does not depend on it
    return inbox / SENDING / archived


def original_of(archived: Path) -> str:
    """The name a claimed or archived file was dropped with (for routing, results, retry)."""
    short = original_name(archived.name)
    # shorten cuts only names longer than MAX_NAME_BYTES, to at least 3 bytes
    # less (a cut UTF-8 character): anything shorter was never cut, no read needed.
    if len(os.fsencode(short)) < MAX_NAME_BYTES - 3:
        return short
    try:
        with folder_of(archived) as folder:
            kept = os.fsdecode(folder.read_bytes(original_name_file(archived.name))[:4096])
    except OSError:
        return short  # lost (a crash before it reached the disk): the short name is all we have
    return kept or short


# ERROR_SHARING_VIOLATION, ERROR_LOCK_VIOLATION: another program has the file open.
_WINDOWS_BUSY = (32, 33)


def is_busy(exc: OSError) -> bool:
    """A rename refused because another program holds the file: only Windows says so
    (WinError 32/33). Elsewhere a PermissionError is a real error, never "busy"."""
    return getattr(exc, "winerror", None) in _WINDOWS_BUSY


def _unique_archive_name(folders: WorkFolders, name: str, now: dt.datetime) -> str:
    stamp = claim_stamp(now)
    base = shorten(name)
    existing = [f for f in (folders.optional(which) for which in (SENDING, PROCESSED, FAILED, HELD)) if f is not None]
    for counter in range(1, 10_000):
        candidate = f"{stamp}_{base}" if counter == 1 else f"{stamp}-{counter}_{base}"
        if not any(f.exists(candidate) for f in existing):
            return candidate
    raise FileNotReady(f"no free archive name for {name} at {stamp}")
