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
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import stat
from pathlib import Path
from typing import Any, BinaryIO

# The names live in archive_names.py; callers keep saying archive.result_path and the like.
from dropbox_sync.archive_names import (  # noqa: F401 - re-exported
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
from dropbox_sync.errors import FileNotReady

SENDING = "sending"
PROCESSED = "processed"
FAILED = "failed"
HELD = "held"
REPORT = "report.html"  # the inbox's page for people (never taken for a dropped file)


def folder(inbox: Path, which: str) -> Path:
    return inbox / which


def ensure_folders(inbox: Path) -> None:
    for which in (SENDING, PROCESSED, FAILED):
        (inbox / which).mkdir(exist_ok=True)


def listed_files(folder_path: Path) -> list[Path]:
    """The archived files in one of our folders, by name: not results, not companions,
    not folders. Links are listed (never followed) so they can be filed away."""
    try:
        entries = [e for e in os.scandir(folder_path) if not e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return []
    names = {e.name for e in entries}
    return sorted(folder_path / e.name for e in entries if is_archived_file(e.name, names))


def claim(inbox: Path, name: str, now: dt.datetime, *, done_marker: str = "") -> Path:
    """Atomically move ``inbox/name`` into sending/ under its archive name.

    With a done marker (``x.csv.done``), the marker is taken along as a
    dot-name beside the claimed file: left in the inbox, it would make the
    next ``x.csv`` look finished before it is written."""
    source = inbox / name
    target = folder(inbox, SENDING) / _unique_archive_name(inbox, name, now)
    # A shortened archive name loses part of the original (say "...groups.csv"),
    # which routing and results need: keep it beside the file, written before
    # the rename so the claimed file never exists without it.
    keeper = _keep_original(target, name)
    try:
        os.rename(source, target)
    except OSError as exc:
        if keeper is not None:
            keeper.unlink(missing_ok=True)
        if isinstance(exc, FileNotFoundError):
            raise FileNotReady(f"{name} vanished before it could be claimed") from None
        if is_busy(exc):
            # Windows: WinError 32, the writer (or an antivirus scanner) still
            # has it open. That only means "not ready yet" (DESIGN §8.7).
            raise FileNotReady(f"{name} is open in another program ({exc.strerror})") from None
        raise
    if done_marker:
        try:
            os.rename(inbox / (name + done_marker), marker_path(target))
        except OSError:
            pass  # gone or held: the claimed file does not depend on it
    return target


def _keep_original(target: Path, name: str) -> Path | None:
    if original_name(target.name) == name:
        return None
    keeper = original_path(target)
    with open(keeper, "wb") as handle:
        handle.write(os.fsencode(name))  # surrogates (undecodable names) round-trip
        handle.flush()
        os.fsync(handle.fileno())
    return keeper


def original_of(archived: Path) -> str:
    """The name a claimed or archived file was dropped with (for routing, results, retry)."""
    short = original_name(archived.name)
    # _shorten cuts only names longer than MAX_NAME_BYTES, to at least 3 bytes
    # less (a cut UTF-8 character): anything shorter was never cut, no read needed.
    if len(os.fsencode(short)) < MAX_NAME_BYTES - 3:
        return short
    try:
        with open(original_path(archived), "rb") as handle:
            kept = os.fsdecode(handle.read(4096))
    except OSError:
        return short  # lost (a crash before it reached the disk): the short name is all we have
    return kept or short


# ERROR_SHARING_VIOLATION, ERROR_LOCK_VIOLATION: another program has the file open.
_WINDOWS_BUSY = (32, 33)


def is_busy(exc: OSError) -> bool:
    """A rename refused because another program holds the file: only Windows says so
    (WinError 32/33). Elsewhere a PermissionError is a real error, never "busy"."""
    return getattr(exc, "winerror", None) in _WINDOWS_BUSY


def _unique_archive_name(inbox: Path, name: str, now: dt.datetime) -> str:
    stamp = now.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    base = _shorten(name)
    for counter in range(1, 10_000):
        candidate = f"{stamp}_{base}" if counter == 1 else f"{stamp}-{counter}_{base}"
        if not any((inbox / which / candidate).exists() for which in (SENDING, PROCESSED, FAILED, HELD)):
            return candidate
    raise FileNotReady(f"no free archive name for {name} at {stamp}")


def open_claimed(path: Path) -> BinaryIO:
    """Open a claimed file for reading without following a link.

    The scan only takes regular files, but a link could be put in place
    between the scan and the claim; O_NOFOLLOW makes that fail instead of
    reading (and uploading) whatever the link points at."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    return os.fdopen(os.open(path, flags), "rb")


def open_untrusted(path: Path) -> BinaryIO:
    """Open a file people may have put in our folders, only if it is a regular file.

    No link is followed, and a FIFO or device cannot block or feed us:
    O_NONBLOCK makes opening a FIFO return at once, and anything that is not a
    regular file is refused with an OSError."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    if getattr(os, "O_NONBLOCK", 0):  # POSIX only; Windows has no FIFOs in folders
        os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    # dumps, then one write: json.dump with an indent writes each of a result's hundreds of
    # tokens through the text layer separately, costing more than the fsync.
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    try:
        # backslashreplace: a file name that is not valid UTF-8 is written as a
        # JSON \udcXX escape instead of failing the whole result.
        with open(temporary, "w", encoding="utf-8", errors="backslashreplace", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)  # a disk that filled up keeps no half result
        raise


def read_result(claimed: Path) -> dict[str, Any] | None:
    """The saved result of a claimed file, if a complete one exists."""
    try:
        data = json.loads(result_path(claimed).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def archive(claimed: Path, destination: str) -> Path:
    """Move a claimed file, then its result, into processed/ or failed/."""
    target_dir = claimed.parent.parent / destination
    target_dir.mkdir(exist_ok=True)
    target = _free_name(target_dir, claimed.name)
    # The failed rows go first: were the file to go first and a crash to follow, the
    # rows left in sending/ without their file would look like a file to send.
    if failed_rows_path(claimed).exists():
        os.rename(failed_rows_path(claimed), failed_rows_path(target))
    os.rename(claimed, target)
    result = result_path(claimed)
    if result.exists():
        os.rename(result, result_path(target))
    approval_marker(claimed).unlink(missing_ok=True)
    _move_companions(claimed, target)
    return target


def _move_companions(source: Path, target: Path) -> None:
    for old, new in zip(companions(source), companions(target), strict=True):
        if old.exists():
            os.rename(old, new)


def take_back(archived: Path) -> Path:
    """Move an archived file back into sending/ under the same name, to be sent again
    (its writer was still writing when it was sent). Its done marker and kept name go
    with it; its result and sent copy stay where they are: they record that import."""
    target = folder(archived.parent.parent, SENDING) / archived.name
    if os.path.lexists(target):
        raise FileExistsError(errno.EEXIST, "already in sending/", str(target))
    os.rename(archived, target)
    for old, new in ((marker_path(archived), marker_path(target)), (original_path(archived), original_path(target))):
        if old.exists():
            os.rename(old, new)
    return target


def approve(inbox: Path, name: str) -> Path:
    """Move a file from held/ back to sending/, marked as approved; it goes next."""
    held = folder(inbox, HELD) / name
    if not held.is_file():
        raise FileNotFoundError(name)
    claimed = folder(inbox, SENDING) / name
    if claimed.exists():
        raise FileExistsError(name)
    approval_marker(claimed).write_text("approved\n", encoding="utf-8")
    os.rename(held, claimed)
    _move_companions(held, claimed)
    # The held result said "waiting for approval"; the upload writes the real one.
    result_path(held).unlink(missing_ok=True)
    return claimed


def prune_processed(inbox: Path, keep_days: float, now: dt.datetime, *,
                    spare: frozenset[str] = frozenset()) -> list[Path]:  # fmt: skip
    """Delete processed/ files (and results) older than ``keep_days`` by every measure we have.

    Only processed/: failed/ and held/ need a person and are never pruned. No
    single time is trusted: a claim made while the clock was years behind
    stamps the name years back, and an export keeps its source's old mtime.
    The youngest of the name's stamp, the file's and its result's mtime and
    ctime, and the times inside the result decides. ``spare``: names known to
    be young another way (archived by this process within keep_days of its
    monotonic clock)."""
    cutoff = now - dt.timedelta(days=keep_days)
    removed = []
    try:
        entries = list(os.scandir(folder(inbox, PROCESSED)))
    except FileNotFoundError:
        return []
    names = {entry.name for entry in entries}
    for entry in entries:
        name = entry.name
        if name.endswith(RESULT_SUFFIX):
            if name[: -len(RESULT_SUFFIX)] in names:
                continue  # goes with its file
            path = Path(entry.path).with_name(name[: -len(RESULT_SUFFIX)])  # a result left alone (aftercare)
        elif is_archived_file(name, names):
            path = Path(entry.path)
        else:
            continue  # a companion: goes with its file
        if path.name in spare or not _older_than(path, cutoff):
            continue
        for victim in (result_path(path), original_path(path), sent_path(path), path):
            try:
                victim.unlink(missing_ok=True)
            except OSError:
                continue
        removed.append(path)
    return removed


def _older_than(archived: Path, cutoff: dt.datetime) -> bool:
    """True only if every time known about an archived file and its result is before ``cutoff``."""
    stamp = archived_at(archived.name)
    if stamp is None or stamp >= cutoff:
        return False  # not named by us, or young by its name
    for path in (archived, result_path(archived)):
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            continue
        except OSError:
            return False  # cannot tell: keep it
        for seconds in (info.st_mtime, info.st_ctime):
            if dt.datetime.fromtimestamp(seconds, dt.UTC) >= cutoff:
                return False
    try:
        ours = json.loads(result_path(archived).read_text(encoding="utf-8")).get("dropbox_sync")
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


def _free_name(directory: Path, name: str) -> Path:
    """``name`` in ``directory``, or with a higher counter if taken: never overwrite."""
    candidate = directory / name
    if not candidate.exists() and not result_path(candidate).exists():
        return candidate
    original = original_name(name)
    prefix = name[: len(name) - len(original)].rstrip("_").split("-")[0]
    for counter in range(2, 10_000):
        candidate = directory / f"{prefix}-{counter}_{original}"
        if not candidate.exists() and not result_path(candidate).exists():
            return candidate
    raise OSError(f"no free name for {name} in {directory}")


def claimed_files(inbox: Path) -> list[Path]:
    """Files in sending/ (oldest claim first), not counting results or temporaries."""
    return listed_files(folder(inbox, SENDING))


def remove_stale_temporaries(inbox: Path) -> list[Path]:
    """Delete half-written results a crash left in sending/ (ours, never user files)."""
    removed = []
    sending = folder(inbox, SENDING)
    # Half-written results and UTF-8 copies (transcode.py): all dot-names ending .tmp;
    # and a kept original name whose claim never happened (a crash before the rename).
    stale = list(sending.glob(".*.tmp"))
    stale += [p for p in sending.glob(f".*{ORIGINAL_SUFFIX}")
              if not (sending / p.name[1: -len(ORIGINAL_SUFFIX)]).exists()]  # fmt: skip
    for path in stale:
        try:
            path.unlink()
            removed.append(path)
        except OSError:
            pass
    return removed


def orphan_results(inbox: Path) -> list[Path]:
    """Results in sending/ whose file was already archived (a crash between the two renames)."""
    sending = folder(inbox, SENDING)
    try:
        names = {entry.name for entry in os.scandir(sending)}
    except FileNotFoundError:
        return []
    return [
        sending / name
        for name in sorted(names)
        if name.endswith(RESULT_SUFFIX) and name[: -len(RESULT_SUFFIX)] not in names
    ]


def reunite_orphan_result(result: Path) -> Path | None:
    """Put an orphan result beside its archived file; None if the file is nowhere."""
    file_name = result.name[: -len(RESULT_SUFFIX)]
    for destination in (PROCESSED, FAILED):
        archived = result.parent.parent / destination / file_name
        if archived.exists() and not result_path(archived).exists():
            os.rename(result, result_path(archived))
            return archived
    return None
