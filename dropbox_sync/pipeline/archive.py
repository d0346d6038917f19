"""The inbox's sub-folders: claiming files, writing results, archiving.

    INBOX/sending/     claimed files and, once known, their results
    INBOX/processed/   success: true
    INBOX/failed/      anything else that is final
    INBOX/held/        stopped by the shrink guard until a person approves it

Everything is a rename within the inbox's volume, never copy-and-delete, so a
file is always whole in exactly one place. The archive name is chosen at claim
time (UTC timestamp + original name, a counter on clash) and kept through
sending/ into processed/ or failed/; results are written to a temporary name,
flushed and renamed into place, so a crash never leaves half a result.

Every operation inside the work folders goes through ``workdirs`` (handles
that never follow a link, folders checked to be ours): this module decides
where things go; workdirs.py touches the disk; archive_names.py names them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from dropbox_sync.errors import FileNotReady
from dropbox_sync.pipeline import workdirs

# The names live in archive_names.py; callers keep saying archive.result_path and the like.
from dropbox_sync.pipeline.archive_names import (  # noqa: F401 - re-exported
    FAILED_ROWS_SUFFIX,
    MAX_NAME_BYTES,
    ORIGINAL_SUFFIX,
    RESULT_SUFFIX,
    SENT_SUFFIX,
    _shorten,
    approval_marker,
    archived_at,
    companions,
    display_name,
    export_name,
    failed_rows_path,
    is_archived_file,
    marker_path,
    original_name,
    original_path,
    result_path,
    sent_path,
)
from dropbox_sync.pipeline.settle import Observation
from dropbox_sync.pipeline.workdirs import FAILED, HELD, PROCESSED, SENDING, Folder, WorkFolders

__all__ = ["FAILED", "HELD", "PROCESSED", "SENDING"]  # the folder names live in workdirs
REPORT = "report.html"  # the inbox's page for people (never taken for a dropped file)


def folder(inbox: Path, which: str) -> Path:
    return inbox / which


def ensure_folders(inbox: Path) -> None:
    """Make sending/, processed/, failed/ and check all four (``UnsafeFolder`` if one is not ours)."""
    workdirs.check_inbox(inbox)


def _folders_of(claimed: Path, *, strict: bool = True):
    """The opened inbox of a file in one of its work folders (``inbox/which/name``)."""
    return workdirs.inbox_folders(claimed.parent.parent, strict=strict)


def listed_files(folder_path: Path, *, strict: bool = False) -> list[Path]:
    """The archived files in one of our folders (``inbox/failed`` and the like), by name:
    not results, not companions, not folders. Links are listed (never followed) so they
    can be filed away. Through the folder's own handle (workdirs.py): a folder that is a
    link raises ``UnsafeFolder``; ``strict`` (the service) also wants it ours."""
    try:
        with workdirs.inbox_folders(folder_path.parent, strict=strict) as folders:
            directory = folders.optional(folder_path.name)
            names = directory.names() if directory is not None else []
            return sorted(folder_path / name for name in _listed(directory, names))
    except FileNotFoundError:
        return []  # no inbox folder (an unmounted share), or no such work folder yet


def _listed(directory: Folder | None, names: list[str]) -> list[str]:
    if directory is None:
        return []
    siblings = set(names)
    found = []
    for name in names:
        if not is_archived_file(name, siblings):
            continue
        try:
            if stat.S_ISDIR(directory.lstat(name).st_mode):
                continue
        except FileNotFoundError:
            continue
        found.append(name)
    return found


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
            keeper = _original_name_file(archived)
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
                folders.inbox.rename(name + done_marker, sending, _marker_name(archived))
            except OSError:
                pass  # gone or held: the claimed file does not depend on it
    return inbox / SENDING / archived


def _original_name_file(archived: str) -> str:
    return f".{archived}{ORIGINAL_SUFFIX}"


def original_of(archived: Path) -> str:
    """The name a claimed or archived file was dropped with (for routing, results, retry)."""
    short = original_name(archived.name)
    # _shorten cuts only names longer than MAX_NAME_BYTES, to at least 3 bytes
    # less (a cut UTF-8 character): anything shorter was never cut, no read needed.
    if len(os.fsencode(short)) < MAX_NAME_BYTES - 3:
        return short
    try:
        with _folder_of(archived) as folder:
            kept = os.fsdecode(folder.read_bytes(_original_name_file(archived.name))[:4096])
    except OSError:
        return short  # lost (a crash before it reached the disk): the short name is all we have
    return kept or short


# ERROR_SHARING_VIOLATION, ERROR_LOCK_VIOLATION: another program has the file open.
_WINDOWS_BUSY = (32, 33)


def is_busy(exc: OSError) -> bool:
    """A rename refused because another program holds the file: only Windows says so
    (WinError 32/33). Elsewhere a PermissionError is a real error, never "busy"."""
    return getattr(exc, "winerror", None) in _WINDOWS_BUSY


def _marker_name(archived: str) -> str:
    return f".{archived}.done"


def _approval_name(archived: str) -> str:
    return f".{archived}.approved"


def _result_name(archived: str) -> str:
    return archived + RESULT_SUFFIX


def _unique_archive_name(folders: WorkFolders, name: str, now: dt.datetime) -> str:
    stamp = now.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    base = _shorten(name)
    existing = [f for f in (folders.optional(which) for which in (SENDING, PROCESSED, FAILED, HELD)) if f is not None]
    for counter in range(1, 10_000):
        candidate = f"{stamp}_{base}" if counter == 1 else f"{stamp}-{counter}_{base}"
        if not any(f.exists(candidate) for f in existing):
            return candidate
    raise FileNotReady(f"no free archive name for {name} at {stamp}")


@contextlib.contextmanager
def _folder_of(path: Path) -> Iterator[Folder]:
    """The folder holding ``path``, opened: a work folder (``inbox/sending/x``,
    ``inbox/failed/x``...) through its no-follow handle relative to the inbox, so a
    work folder swapped for a link is refused (workdirs.py); any other folder (a
    state or scratch folder the administrator or the program chose) as it is.

    Ownership is the service's to check, once per pass (``ensure_folders``), not
    here: a person's command reading a folder they happen to call failed/ is fine."""
    if path.parent.name in workdirs.WORK_FOLDERS:
        with workdirs.work_folder(path.parent.parent, path.parent.name, strict=False) as folder:
            yield folder
    else:
        with workdirs.open_trusted(path.parent) as folder:
            yield folder


def open_claimed(path: Path) -> BinaryIO:
    """Open a regular file for reading without following a link (``_folder_of``).

    The scan only takes regular files, but a link could be put in place
    between the scan and the claim; O_NOFOLLOW makes that fail instead of
    reading (and uploading) whatever the link points at, and a FIFO is refused
    rather than waited on."""
    with _folder_of(path) as folder:
        return folder.open_read(path.name)


open_untrusted = open_claimed  # a file people may have put in our folders: the same rules


def open_nofollow(path: Path) -> BinaryIO:
    """Open a file a person named (``send``, ``check``) for reading, not following a final link."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    return os.fdopen(os.open(path, flags), "rb")


def lstat_claimed(path: Path) -> os.stat_result:
    """The entry itself (never what a link points at)."""
    with _folder_of(path) as folder:
        return folder.lstat(path.name)


def observe_claimed(path: Path) -> Observation | None:
    """Size and mtime of a regular file; None if it is gone or not a regular file."""
    try:
        info = lstat_claimed(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    return Observation(info.st_size, info.st_mtime_ns)


def exists_claimed(path: Path) -> bool:
    """The entry exists, whatever it is (a link too)."""
    with _folder_of(path) as folder:
        return folder.exists(path.name)


def create_temporary(beside: Path, label: str) -> tuple[Path, BinaryIO]:
    """A new temporary of unpredictable name, made O_EXCL without following a link, in
    the folder of ``beside``; a dot-name ending .tmp, swept at start if a crash leaves it."""
    with _folder_of(beside) as folder:
        name, handle = folder.create_temporary(label)
    return beside.with_name(name), handle


def rename_claimed(path: Path, new_name: str) -> None:
    """Give an entry another name in the same folder (replacing one: a link is replaced,
    never written through)."""
    with _folder_of(path) as folder:
        folder.replace(path.name, new_name)


def discard(path: Path) -> None:
    """Remove one of our temporaries."""
    with _folder_of(path) as folder:
        folder.unlink(path.name, missing_ok=True)


def write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    """A JSON file written whole or not at all, scrubbed of secrets (``Folder.write_json``):
    a result in a work folder, or a state file (status.json, notify.json)."""
    with _folder_of(path) as folder:
        folder.write_json(path.name, data)


def read_result(claimed: Path) -> dict[str, Any] | None:
    """The saved result of a claimed file, if a complete one exists."""
    with _folder_of(claimed) as folder:
        try:
            data = json.loads(folder.read_bytes(_result_name(claimed.name)))
        except (OSError, ValueError):
            return None
    return data if isinstance(data, dict) else None


def archive(claimed: Path, destination: str) -> Path:
    """Move a claimed file, then its result, into processed/, failed/ or held/."""
    with _folders_of(claimed) as folders:
        source = folders.get(claimed.parent.name)
        target_dir = folders.get(destination, create=True)
        target = _free_name(target_dir, claimed.name)
        # The failed rows go first: were the file to go first and a crash to follow, the
        # rows left in sending/ without their file would look like a file to send.
        rows = claimed.name + FAILED_ROWS_SUFFIX
        if source.exists(rows):
            source.rename(rows, target_dir, target + FAILED_ROWS_SUFFIX)
        source.rename(claimed.name, target_dir, target)
        if source.exists(_result_name(claimed.name)):
            source.rename(_result_name(claimed.name), target_dir, _result_name(target))
        source.unlink(_approval_name(claimed.name), missing_ok=True)
        _move_companions(source, claimed.name, target_dir, target)
    return claimed.parent.parent / destination / target


def _companion_names(name: str) -> tuple[str, str, str, str]:
    """Our companions of a file, which follow it from folder to folder: its done marker, its
    kept original name, its sent copy and its refused rows (each only when there is one)."""
    return _marker_name(name), _original_name_file(name), name + SENT_SUFFIX, name + FAILED_ROWS_SUFFIX


def _move_companions(source: Folder, name: str, target: Folder, new_name: str) -> None:
    for old, new in zip(_companion_names(name), _companion_names(new_name), strict=True):
        if source.exists(old):
            source.rename(old, target, new)


def take_back(archived: Path) -> Path:
    """Move an archived file back into sending/ under the same name, to be sent again
    (its writer was still writing when it was sent). Its done marker and kept name go
    with it; its result and sent copy stay where they are: they record that import."""
    with _folders_of(archived) as folders:
        source = folders.get(archived.parent.name)
        sending = folders.get(SENDING, create=True)
        target = archived.parent.parent / SENDING / archived.name
        if sending.exists(archived.name):
            raise FileExistsError(errno.EEXIST, "already in sending/", str(target))
        source.rename(archived.name, sending, archived.name)
        for companion in _companion_names(archived.name)[:2]:  # the done marker and the kept name
            if source.exists(companion):
                source.rename(companion, sending, companion)
    return target


def is_approved(claimed: Path) -> bool:
    return exists_claimed(approval_marker(claimed))


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
        sending.write_atomically(_approval_name(name), b"approved\n")
        held.rename(name, sending, name)
        _move_companions(held, name, sending, name)
        # The held result said "waiting for approval"; the upload writes the real one.
        held.unlink(_result_name(name), missing_ok=True)
    return inbox / SENDING / name


def prune_processed(
    inbox: Path, keep_days: float, now: dt.datetime, *, spare: frozenset[str] = frozenset()
) -> list[Path]:
    """Delete processed/ files (and results) older than ``keep_days`` by every measure we have.

    Only processed/: failed/ and held/ need a person and are never pruned. No
    single time is trusted: a claim made while the clock was years behind
    stamps the name years back, and an export keeps its source's old mtime.
    The youngest of the name's stamp, the file's and its result's mtime and
    ctime, and the times inside the result decides. ``spare``: names known to
    be young another way (archived by this process within keep_days of its
    monotonic clock). Through processed/'s own handle: a processed/ swapped for
    a link is never pruned into (workdirs.py)."""
    cutoff = now - dt.timedelta(days=keep_days)
    removed = []
    with workdirs.inbox_folders(inbox) as folders:
        processed = folders.optional(PROCESSED)
        names = set(processed.names()) if processed is not None else set()
        for name in sorted(names):
            if name.endswith(RESULT_SUFFIX):
                if name[: -len(RESULT_SUFFIX)] in names:
                    continue  # goes with its file
                name = name[: -len(RESULT_SUFFIX)]  # a result left alone (aftercare)
            elif not is_archived_file(name, names):
                continue  # a companion: goes with its file
            if name in spare or not _older_than(processed, name, cutoff):
                continue
            for victim in (_result_name(name), _original_name_file(name), name + SENT_SUFFIX, name):
                try:
                    processed.unlink(victim, missing_ok=True)
                except OSError:
                    continue
            removed.append(inbox / PROCESSED / name)
    return removed


def _older_than(folder: Folder, name: str, cutoff: dt.datetime) -> bool:
    """True only if every time known about an archived file and its result is before ``cutoff``."""
    stamp = archived_at(name)
    if stamp is None or stamp >= cutoff:
        return False  # not named by us, or young by its name
    for entry in (name, _result_name(name)):
        try:
            info = folder.lstat(entry)
        except FileNotFoundError:
            continue
        except OSError:
            return False  # cannot tell: keep it
        for seconds in (info.st_mtime, info.st_ctime):
            if dt.datetime.fromtimestamp(seconds, dt.UTC) >= cutoff:
                return False
    try:
        ours = json.loads(folder.read_bytes(_result_name(name))).get("dropbox_sync")
    except (OSError, ValueError, AttributeError):
        ours = None
    for key in ("started", "finished"):
        text = ours.get(key) if isinstance(ours, dict) else None
        try:
            moment = dt.datetime.fromisoformat(text) if isinstance(text, str) else None
        except ValueError:
            moment = None
        if moment is not None and moment.astimezone(dt.UTC) >= cutoff:
            return False
    return True


def _free_name(directory: Folder, name: str) -> str:
    """``name`` in ``directory``, or with a higher counter if taken: never overwrite."""
    if not directory.exists(name) and not directory.exists(_result_name(name)):
        return name
    original = original_name(name)
    prefix = name[: len(name) - len(original)].rstrip("_").split("-")[0]
    for counter in range(2, 10_000):
        candidate = f"{prefix}-{counter}_{original}"
        if not directory.exists(candidate) and not directory.exists(_result_name(candidate)):
            return candidate
    raise OSError(f"no free name for {name} in {directory.path}")


def claimed_files(inbox: Path, *, strict: bool = True) -> list[Path]:
    """Files in sending/ (oldest claim first), not counting results or temporaries."""
    return listed_files(inbox / SENDING, strict=strict)


def remove_stale_temporaries(inbox: Path) -> list[Path]:
    """Delete half-written results and UTF-8 copies a crash left in sending/
    (ours, never user files: dot-names ending .tmp), and a kept original name
    whose claim never happened (a crash before the rename)."""
    removed = []
    with workdirs.inbox_folders(inbox) as folders:
        sending = folders.optional(SENDING)
        names = set(sending.names()) if sending is not None else set()
        for name in sorted(names):
            temporary = name.startswith(".") and name.endswith(workdirs.TEMPORARY_SUFFIX)
            unclaimed = (
                name.startswith(".") and name.endswith(ORIGINAL_SUFFIX) and name[1 : -len(ORIGINAL_SUFFIX)] not in names
            )
            if temporary or unclaimed:
                try:
                    sending.unlink(name)
                    removed.append(inbox / SENDING / name)
                except OSError:
                    pass
    return removed


def orphan_results(inbox: Path) -> list[Path]:
    """Results in sending/ whose file was already archived (a crash between the two renames)."""
    with workdirs.inbox_folders(inbox) as folders:
        sending = folders.optional(SENDING)
        names = set(sending.names()) if sending is not None else set()
    return [
        inbox / SENDING / name
        for name in sorted(names)
        if name.endswith(RESULT_SUFFIX) and name[: -len(RESULT_SUFFIX)] not in names
    ]


def reunite_orphan_result(result: Path) -> Path | None:
    """Put an orphan result beside its archived file; None if the file is nowhere."""
    file_name = result.name[: -len(RESULT_SUFFIX)]
    with _folders_of(result) as folders:
        sending = folders.get(SENDING)
        for destination in (PROCESSED, FAILED):
            directory = folders.optional(destination)
            if directory is not None and directory.exists(file_name) and not directory.exists(result.name):
                sending.rename(result.name, directory, result.name)
                return result.parent.parent / destination / file_name
    return None
