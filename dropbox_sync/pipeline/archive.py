"""Moving a claimed file between the inbox's work folders, with its result and companions.

    INBOX/sending/     claimed files and, once known, their results
    INBOX/processed/   success: true
    INBOX/failed/      anything else that is final
    INBOX/held/        stopped by the shrink guard until a person approves it

Everything is a rename within the inbox's volume, never copy-and-delete, so a
file is always whole in exactly one place, and never over another file (a
counter on clash). Its neighbours, each in the module of its concept:
claim.py takes a file into sending/ under its archive name, archive_names.py
says what the names mean, workfiles.py reads and writes one file through its
folder's handle (results are written to a temporary, flushed and renamed, so a
crash never leaves half a result), recovery.py puts right what a crash left,
retention.py prunes processed/, discover.py lists what is ours; workdirs.py
touches the disk.
"""

from __future__ import annotations

import errno
from pathlib import Path

from dropbox_sync.pipeline import (
    workdirs,
    workfiles,
)
from dropbox_sync.pipeline.archive_names import (
    FAILED_ROWS_SUFFIX,
    approval_marker,
    approval_name,
    companion_names,
    original_name,
    result_name,
)
from dropbox_sync.pipeline.folder import Folder
from dropbox_sync.pipeline.workdirs import HELD, SENDING
from dropbox_sync.pipeline.workfiles import folders_of, inbox_and_folder


def folder(inbox: Path, which: str) -> Path:
    return inbox / which


def ensure_folders(inbox: Path) -> None:
    """Make sending/, processed/, failed/ and check all four (``UnsafeFolder`` if one is not ours)."""
    workdirs.check_inbox(inbox)


def archive(claimed: Path, destination: str) -> Path:
    """Move a claimed file, then its result, into processed/, failed/ or held/."""
    inbox, which = inbox_and_folder(claimed)
    with workdirs.inbox_folders(inbox) as folders:
        source = folders.get(which)
        target_dir = folders.get(destination, create=True)
        target = _free_name(target_dir, claimed.name)
        # The failed rows go first: were the file to go first and a crash to follow, the
        # rows left in sending/ without their file would look like a file to send.
        rows = claimed.name + FAILED_ROWS_SUFFIX
        if source.exists(rows):
            source.rename(rows, target_dir, target + FAILED_ROWS_SUFFIX)
        source.rename(claimed.name, target_dir, target)
        if source.exists(result_name(claimed.name)):
            source.rename(result_name(claimed.name), target_dir, result_name(target))
        source.unlink(approval_name(claimed.name), missing_ok=True)
        _move_companions(source, claimed.name, target_dir, target)
    return Path(inbox, destination, target)


def _move_companions(source: Folder, name: str, target: Folder, new_name: str) -> None:
    for old, new in zip(companion_names(name), companion_names(new_name), strict=True):
        if source.exists(old):
            source.rename(old, target, new)


def take_back(archived: Path) -> Path:
    """Move an archived file back into sending/ under the same name, to be sent again
    (its writer was still writing when it was sent). Its done marker and kept name go
    with it; its result and sent copy stay where they are: they record that import."""
    with folders_of(archived) as folders:
        source = folders.get(archived.parent.name)
        sending = folders.get(SENDING, create=True)
        target = archived.parent.parent / SENDING / archived.name
        if sending.exists(archived.name):
            raise FileExistsError(errno.EEXIST, "already in sending/", str(target))
        source.rename(archived.name, sending, archived.name)
        for companion in companion_names(archived.name)[:2]:  # the done marker and the kept name
            if source.exists(companion):
                source.rename(companion, sending, companion)
    return target


def is_approved(claimed: Path) -> bool:
    return workfiles.exists_claimed(approval_marker(claimed))


def approve(inbox: Path, name: str) -> Path:
    """Move a file from held/ back to sending/, marked as approved; it goes next.

    Run by a person (``dropbox-sync approve``), perhaps as another account than
    the service: links are refused as always, ownership is the service's to check."""
    with workdirs.inbox_folders(inbox, strict=False) as folders:
        held = folders.optional(HELD)
        if held is None or not held.is_regular(name):
            raise FileNotFoundError(name)
        sending = folders.get(SENDING, create=True)
        if sending.exists(name):
            raise FileExistsError(name)
        sending.write_atomically(approval_name(name), b"approved\n")
        held.rename(name, sending, name)
        _move_companions(held, name, sending, name)
        # The held result said "waiting for approval"; the upload writes the real one.
        held.unlink(result_name(name), missing_ok=True)
    return inbox / SENDING / name


def _free_name(directory: Folder, name: str) -> str:
    """``name`` in ``directory``, or with a higher counter if taken: never overwrite."""
    if not directory.exists(name) and not directory.exists(result_name(name)):
        return name
    original = original_name(name)
    prefix = name[: len(name) - len(original)].rstrip("_").split("-")[0]
    for counter in range(2, 10_000):
        candidate = f"{prefix}-{counter}_{original}"
        if not directory.exists(candidate) and not directory.exists(result_name(candidate)):
            return candidate
    raise OSError(f"no free name for {name} in {directory.path}")
