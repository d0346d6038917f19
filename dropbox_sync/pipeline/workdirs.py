"""The inbox's work folders, reached only through handles that never follow a link.

An inbox is shared ground: office staff, the SIS export account, sometimes a
whole staff group can write to it, while the service runs as root, LocalService
or a service account. Whoever can write to the inbox can also rename, remove or
replace ``sending/``, ``processed/``, ``failed/`` and ``held/`` (with a link to
another school's archive, to the folder holding the config, or with a plain
file). So every operation inside a work folder goes through a ``Folder``:

- POSIX: the inbox is opened once (``O_DIRECTORY``; its configured path is the
  administrator's), each work folder relative to it with
  ``O_DIRECTORY | O_NOFOLLOW`` and checked to be owned by the service's own
  account; then every open, stat, rename and unlink uses the ``dir_fd=`` forms,
  so a folder swapped after the check is never reached through its name.
- Windows (no ``dir_fd``): a work folder that is a reparse point (symlink or
  junction) is refused, checked each time a folder is opened.

A work folder that is a link, not a folder, or not ours raises ``UnsafeFolder``:
the worker holds the inbox with that message, and nothing is moved, read or
written through it. Temporary files get unpredictable names and are created
with ``O_CREAT | O_EXCL | O_NOFOLLOW``: a link planted at a guessed name can
neither be written through nor truncate what it points at.

This is the one place for these rules (``folder.Folder`` is the handle and what can be done
through it): workfiles.py (one file in a work folder),
claim.py, archive.py, recovery.py, retention.py, transcode.py, retry and the report
page use it; other code never touches a work folder by path. The worker keeps the
handles open for one pass (``kept_open``).
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

from dropbox_sync.errors import UnsafeFolder
from dropbox_sync.pipeline.folder import CLOEXEC, DIRECTORY, NOFOLLOW, Folder

SENDING = "sending"
PROCESSED = "processed"
FAILED = "failed"
HELD = "held"
WORK_FOLDERS = (SENDING, PROCESSED, FAILED, HELD)
CREATED_AT_START = (SENDING, PROCESSED, FAILED)  # held/ only when the shrink guard needs it
# Where the OS has them (Linux, macOS, BSD); the Windows branch checks reparse points instead.
HANDLES = os.name == "posix" and {os.open, os.stat, os.rename, os.unlink, os.mkdir} <= os.supports_dir_fd
_REPARSE_POINT = getattr(stat, "FILE_ATTRIBUTE_REPARSE_POINT", 0x400)


def open_trusted(path: Path) -> Folder:
    """A folder whose path the administrator configured (an inbox, the state folder).

    Links in that path are the administrator's own and are followed; what is
    inside is reached through the handle."""
    if not HANDLES:
        if not path.is_dir():
            if not path.exists():
                raise FileNotFoundError(f"{path} is missing")
            raise NotADirectoryError(f"{path} is not a folder")
        return Folder(path, None)
    return Folder(path, os.open(path, os.O_RDONLY | DIRECTORY | CLOEXEC))


def open_work_folder(inbox: Folder, which: str, *, create: bool = False, strict: bool = True) -> Folder:
    """``inbox/which`` if it is a real folder of ours; ``UnsafeFolder`` if not.

    FileNotFoundError when it does not exist and ``create`` is false. ``strict``
    (the service) also requires it to be owned by this account or root: a
    folder someone else made may hold their links at names we are about to use.
    A person's command (approve, retry, status), perhaps run as another account
    than the service, passes ``strict=False``: links are refused all the same."""
    path = inbox.path / which
    if create:
        try:
            if inbox.fd is not None:
                os.mkdir(which, dir_fd=inbox.fd)
            else:
                os.mkdir(path)
        except FileExistsError:
            pass  # checked below, whatever it is
    if inbox.fd is None:
        return _windows_work_folder(path)
    try:
        fd = os.open(which, os.O_RDONLY | DIRECTORY | NOFOLLOW | CLOEXEC, dir_fd=inbox.fd)
    except FileNotFoundError:
        raise
    except OSError:
        raise UnsafeFolder(_refusal(inbox, which)) from None
    folder = Folder(path, fd)
    info = os.fstat(fd)
    if not stat.S_ISDIR(info.st_mode):  # where the OS has no O_DIRECTORY
        folder.close()
        raise UnsafeFolder(_not_a_folder_message(path))
    owner = info.st_uid
    if strict and owner not in (os.geteuid(), 0):  # root-owned: made by an administrator, not an attacker
        folder.close()
        raise UnsafeFolder(
            f"{path} belongs to {_user(owner)}, not to {_user(os.geteuid())}, the account this service runs as: "
            f"someone who can write to the inbox may have replaced it. The inbox is held; nothing is moved, read "
            f"or written through it. Check what is in it, then remove it (the service makes a new one) or give "
            f"it back: chown {_user(os.geteuid())} {path}"
        )
    return folder


def _windows_work_folder(path: Path) -> Folder:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise UnsafeFolder(f"{path} cannot be examined ({exc.strerror}); the inbox is held") from None
    if getattr(info, "st_file_attributes", 0) & _REPARSE_POINT or stat.S_ISLNK(info.st_mode):
        raise UnsafeFolder(_link_message(path))
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeFolder(_not_a_folder_message(path))
    return Folder(path, None)


def _refusal(inbox: Folder, which: str) -> str:
    """Why opening a work folder without following links failed."""
    path = inbox.path / which
    try:
        mode = inbox.lstat(which).st_mode
    except OSError as exc:
        return f"{path} cannot be opened ({exc.strerror}); the inbox is held"
    if stat.S_ISLNK(mode):
        return _link_message(path)
    if not stat.S_ISDIR(mode):
        return _not_a_folder_message(path)
    return f"{path} cannot be opened; the inbox is held"


def _link_message(path: Path) -> str:
    return (
        f"{path} is a link (or junction), not a folder: it could lead anywhere, so the inbox is held; "
        f"nothing is moved, read or written through it. Remove the link; the service makes a real "
        f"{path.name} folder and carries on"
    )


def _not_a_folder_message(path: Path) -> str:
    return (
        f"{path} is a file, not a folder: the service needs that name for its {path.name}/ folder, so "
        f"the inbox is held. Rename or move that file (it is not uploaded); the service then makes the "
        f"folder"
    )


def _user(uid: int) -> str:
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return f"uid {uid}"


_kept = threading.local()  # this thread's ``kept_open`` folders: {inbox path as text: WorkFolders}


@contextlib.contextmanager
def kept_open(inbox_path: Path) -> Iterator[None]:
    """Within the ``with``, in this thread, the inbox and its work folders are opened once
    (strictly: links refused, ownership checked) and their handles reused by every
    ``inbox_folders`` and ``work_folder`` call, instead of opening and closing them again
    for each stat, open and rename: a file's path takes some 25 of those.

    The worker keeps them for one pass. A folder swapped for a link during the pass is
    still never reached through the link: the handle is the folder that was checked,
    wherever it was moved to. The next pass opens afresh and finds the link (held).
    Without handles (Windows) nothing is kept: the reparse-point check is per call.

    Kept folders are found by the inbox's path as text (``os.fspath``): a file's path is
    split as text by its callers (workfiles.py), a dozen times per file, where making and
    hashing ``Path`` parents cost more than the system calls they led to."""
    kept: dict[str, WorkFolders] = _kept.__dict__.setdefault("folders", {})
    key = os.fspath(inbox_path)
    if not HANDLES or key in kept:
        yield
        return
    with open_trusted(inbox_path) as inbox:
        kept[key] = WorkFolders(inbox, strict=True)
        try:
            yield
        finally:
            kept.pop(key).close()


def _kept_folders(inbox_path: str | os.PathLike[str]) -> WorkFolders | None:
    folders = getattr(_kept, "folders", None)
    return folders.get(os.fspath(inbox_path)) if folders else None


def work_folder(
    inbox_path: str | os.PathLike[str], which: str, *, create: bool = False, strict: bool = True
) -> contextlib.AbstractContextManager[Folder]:
    """One work folder of an inbox, opened safely for the duration of a ``with``."""
    kept = _kept_folders(inbox_path)
    if kept is not None:  # opened strictly, so good for either ``strict``
        return contextlib.nullcontext(kept.get(which, create=create))
    return _work_folder(Path(inbox_path), which, create=create, strict=strict)


@contextlib.contextmanager
def _work_folder(inbox_path: Path, which: str, *, create: bool, strict: bool) -> Iterator[Folder]:
    with open_trusted(inbox_path) as inbox, open_work_folder(inbox, which, create=create, strict=strict) as folder:
        yield folder


def inbox_folders(
    inbox_path: str | os.PathLike[str], *, strict: bool = True
) -> contextlib.AbstractContextManager[WorkFolders]:
    """The inbox and its work folders, each opened on first use, all closed after
    (or kept: ``kept_open``)."""
    kept = _kept_folders(inbox_path)
    if kept is not None:
        return contextlib.nullcontext(kept)
    return _inbox_folders(Path(inbox_path), strict=strict)


@contextlib.contextmanager
def _inbox_folders(inbox_path: Path, *, strict: bool) -> Iterator[WorkFolders]:
    with open_trusted(inbox_path) as inbox:
        folders = WorkFolders(inbox, strict=strict)
        try:
            yield folders
        finally:
            folders.close()


class WorkFolders:
    """An opened inbox and the work folders used so far (see ``inbox_folders``)."""

    def __init__(self, inbox: Folder, *, strict: bool = True) -> None:
        self.inbox = inbox
        self.strict = strict
        self._open: dict[str, Folder] = {}

    def get(self, which: str, *, create: bool = False) -> Folder:
        if which not in self._open:
            self._open[which] = open_work_folder(self.inbox, which, create=create, strict=self.strict)
        return self._open[which]

    def optional(self, which: str) -> Folder | None:
        """The folder, or None if it does not exist (UnsafeFolder still if it is not ours)."""
        try:
            return self.get(which)
        except FileNotFoundError:
            return None

    def close(self) -> None:
        for folder in self._open.values():
            folder.close()
        self._open.clear()


def check_inbox(inbox_path: Path, *, create: bool = True, strict: bool = True) -> None:
    """Make the work folders that must exist and check all four; ``UnsafeFolder`` if any
    is a link, not a folder, or (``strict``, POSIX) not owned by this account or root.
    The worker runs it before each pass; ``status`` without ``create`` or ``strict``."""
    with inbox_folders(inbox_path, strict=strict) as folders:
        for which in WORK_FOLDERS:
            if create and which in CREATED_AT_START:
                folders.get(which, create=True)
            else:
                folders.optional(which)
