"""One file in a work folder, read or written through its folder's handle.

An entry of sending/, processed/, failed/ or held/ is reached through the
folder's no-follow handle, relative to the inbox (workdirs.py): a link put in
place of the file or of the folder is refused, never followed, and a FIFO is
refused rather than waited on. A state or scratch folder the administrator or
the program chose is opened as it is. The claim, the moves between folders
and the pipeline's reads, results and temporaries all go through here.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from pathlib import Path
from typing import Any, BinaryIO

from loguru import logger

from dropbox_sync.errors import UnsafeFolder
from dropbox_sync.pipeline import workdirs
from dropbox_sync.pipeline.archive_names import result_name
from dropbox_sync.pipeline.folder import Folder
from dropbox_sync.pipeline.settle import Observation
from dropbox_sync.pipeline.workdirs import WorkFolders


def inbox_and_folder(entry: Path) -> tuple[str, str]:
    """``inbox/which/name`` as the inbox's path and ``which``, split as text: cheaper than
    two ``Path.parent`` (see ``workdirs.kept_open``); a file's path is split a dozen times."""
    return _split_entry(os.fspath(entry))


@functools.lru_cache(maxsize=64)
def _split_entry(entry: str) -> tuple[str, str]:
    inbox, which = os.path.split(os.path.dirname(entry))
    return inbox or os.curdir, which


def folders_of(entry: Path, *, strict: bool = True) -> contextlib.AbstractContextManager[WorkFolders]:
    """The opened inbox of an entry in one of its work folders (``inbox/which/name``)."""
    return workdirs.inbox_folders(inbox_and_folder(entry)[0], strict=strict)


def folder_of(path: Path) -> contextlib.AbstractContextManager[Folder]:
    """The folder holding ``path``, opened: a work folder (``inbox/sending/x``,
    ``inbox/failed/x``...) through its no-follow handle relative to the inbox, so a
    work folder swapped for a link is refused (workdirs.py); any other folder (a
    state or scratch folder the administrator or the program chose) as it is.

    Ownership is the service's to check, once per pass (``archive.ensure_folders``), not
    here: a person's command reading a folder they happen to call failed/ is fine."""
    inbox, which = inbox_and_folder(path)
    if which in workdirs.WORK_FOLDERS:
        return workdirs.work_folder(inbox, which, strict=False)
    return workdirs.open_trusted(path.parent)  # a Folder closes itself after a ``with``


def open_claimed(path: Path) -> BinaryIO:
    """Open a regular file for reading without following a link (``folder_of``).

    The scan only takes regular files, but a link could be put in place
    between the scan and the claim; O_NOFOLLOW makes that fail instead of
    reading (and uploading) whatever the link points at, and a FIFO is refused
    rather than waited on."""
    with folder_of(path) as folder:
        return folder.open_read(path.name)


open_untrusted = open_claimed  # a file people may have put in our folders: the same rules


def open_nofollow(path: Path) -> BinaryIO:
    """Open a file a person named (``send``, ``check``) for reading, not following a final link."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    return os.fdopen(os.open(path, flags), "rb")


def lstat_claimed(path: Path) -> os.stat_result:
    """The entry itself (never what a link points at)."""
    with folder_of(path) as folder:
        return folder.lstat(path.name)


def observe_claimed(path: Path) -> Observation | None:
    """Size and mtime of a regular file; None if it is gone or not a regular file."""
    try:
        info = lstat_claimed(path)
    except FileNotFoundError:
        return None
    return Observation.of(info)


def exists_claimed(path: Path) -> bool:
    """The entry exists, whatever it is (a link too)."""
    with folder_of(path) as folder:
        return folder.exists(path.name)


def create_temporary(beside: Path, label: str) -> tuple[Path, BinaryIO]:
    """A new temporary of unpredictable name, made O_EXCL without following a link, in
    the folder of ``beside``; a dot-name ending .tmp, swept at start if a crash leaves it."""
    with folder_of(beside) as folder:
        name, handle = folder.create_temporary(label)
    return beside.with_name(name), handle


def rename_claimed(path: Path, new_name: str) -> None:
    """Give an entry another name in the same folder (replacing one: a link is replaced,
    never written through)."""
    with folder_of(path) as folder:
        folder.replace(path.name, new_name)


def discard(path: Path) -> None:
    """Remove one of our temporaries, if the OS lets us: it runs after the real work (a reply
    in hand, an error being raised), whose outcome a refusal must not replace. One the OS will
    not remove now (an antivirus or indexer holding a new file, on Windows or a share) is left:
    a dot-name ending .tmp, never taken for a file, swept at the next start."""
    with folder_of(path) as folder:
        try:
            folder.unlink(path.name, missing_ok=True)
        except OSError as exc:
            logger.warning("cannot remove the temporary {} ({}); it is removed at the next start", path, exc.strerror)


def write_json_atomically(path: Path, data: dict[str, Any], *, ahead: Temporary | None = None) -> None:
    """A JSON file written whole or not at all, scrubbed of secrets (``Folder.write_json``):
    a result in a work folder, or a state file (status.json, notify.json). ``ahead``: its
    temporary, made beforehand in the same folder (``Temporary.ahead``), is used up."""
    with folder_of(path) as folder:
        if ahead is not None and ahead.beside.parent == path.parent:
            folder.write_json(path.name, data, temporary=ahead.take())
        else:
            folder.write_json(path.name, data)


class Temporary:
    """A temporary made ahead of the data it will hold: making a file is the costly part of a
    small durable write (inode allocation; on Windows the antivirus's look at a new file), so
    the pipeline makes its result's temporary while the server imports the file. Used up by
    ``write_json_atomically`` (``take``), else removed by ``discard``; one left by a crash is
    a dot-name ending .tmp, swept at start like every temporary."""

    def __init__(self, beside: Path) -> None:
        self.beside = beside
        self._made: tuple[str, BinaryIO] | None = None
        with folder_of(beside) as folder:
            self._made = folder.create_temporary()

    @classmethod
    def ahead(cls, beside: Path) -> Temporary | None:
        """One in the folder of ``beside``; None if it cannot be made now (the write will say why).
        Never raises: it runs on the uploading thread while the request is out."""
        try:
            return cls(beside)
        except (OSError, UnsafeFolder):
            return None

    def take(self) -> tuple[str, BinaryIO] | None:
        made, self._made = self._made, None
        return made

    def discard(self) -> None:
        made = self.take()
        if made is not None:
            made[1].close()
            discard(self.beside.with_name(made[0]))


def read_result(claimed: Path) -> dict[str, Any] | None:
    """The saved result of a claimed file, if a complete one exists."""
    with folder_of(claimed) as folder:
        try:
            data = json.loads(folder.read_bytes(result_name(claimed.name)))
        except (OSError, ValueError):
            return None
    return data if isinstance(data, dict) else None
