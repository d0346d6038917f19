"""An open folder whose operations take plain names inside it, never paths.

Every work folder, inbox and state folder is reached through a ``Folder``: on POSIX a
directory file descriptor, so each open, stat, rename and unlink uses the ``dir_fd=``
forms and a folder swapped for a link after it was opened is never reached through its
name; on Windows (no ``dir_fd``) its path. Which folders may be opened, and how strictly,
is workdirs.py's to say. Opens never follow a final link (``O_NOFOLLOW``), temporaries
are made ``O_CREAT | O_EXCL`` under unpredictable dot-names, and writes are whole or not
at all (temporary, fsync, rename).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path
from typing import Any, BinaryIO, Self

from dropbox_sync.redact import to_json

TEMPORARY_SUFFIX = ".tmp"
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
DIRECTORY = getattr(os, "O_DIRECTORY", 0)
CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_BINARY = getattr(os, "O_BINARY", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # POSIX only; Windows has no FIFOs in folders


class Folder:
    """An open folder: its operations take plain names (never paths) inside it."""

    def __init__(self, path: Path, fd: int | None) -> None:
        self.path = path  # for messages, and the Windows branch
        self.fd = fd

    # -- reading ----------------------------------------------------------------

    def names(self) -> list[str]:
        return os.listdir(self.fd if self.fd is not None else self.path)

    def lstat(self, name: str) -> os.stat_result:
        """The entry itself, never what a link points at."""
        if self.fd is not None:
            return os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        return os.lstat(self.path / name)

    def exists(self, name: str) -> bool:
        try:
            self.lstat(name)
        except FileNotFoundError:
            return False
        return True

    def is_regular(self, name: str) -> bool:
        try:
            return stat.S_ISREG(self.lstat(name).st_mode)
        except OSError:
            return False

    def open_read(self, name: str) -> BinaryIO:
        """A regular file for reading; a link fails (ELOOP) instead of being followed, and
        anything else that is not a regular file is refused: O_NONBLOCK makes opening a
        FIFO return at once rather than wait for a writer."""
        fd = self._open(name, os.O_RDONLY | _NONBLOCK)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OSError(errno.EINVAL, "not a regular file", str(self.path / name))
        if _NONBLOCK:
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")

    def read_bytes(self, name: str) -> bytes:
        with self.open_read(name) as handle:
            return handle.read()

    # -- writing ----------------------------------------------------------------

    def create_temporary(self, label: str = "") -> tuple[str, BinaryIO]:
        """A new file under an unpredictable dot-name ending ``.tmp`` (swept after a crash)."""
        name = f".{secrets.token_hex(12)}{label}{TEMPORARY_SUFFIX}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        return name, os.fdopen(self._open(name, flags, 0o666), "wb")

    def write_atomically(
        self, name: str, data: bytes, *, temporary: tuple[str, BinaryIO] | None = None, mode: int | None = None
    ) -> None:
        """Write ``name`` whole or not at all: temporary file, fsync, rename over.
        ``temporary``: one made ahead by ``create_temporary`` in this folder (used up here);
        ``mode``: its permissions on POSIX, whatever the umask (the report page is for the share)."""
        temporary, handle = temporary or self.create_temporary()
        try:
            with handle:
                if mode is not None and os.name == "posix":
                    os.fchmod(handle.fileno(), mode)
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            self.replace(temporary, name)
        except BaseException:
            # The error being raised is the one to tell; a temporary the OS will not remove
            # (held by another program) is a dot-name .tmp, swept at the next start.
            with contextlib.suppress(OSError):
                self.unlink(temporary, missing_ok=True)
            raise

    def write_json(self, name: str, data: dict[str, Any], *, temporary: tuple[str, BinaryIO] | None = None) -> None:
        """A JSON file, scrubbed of every registered secret before it is encoded."""
        text = to_json(data)
        # backslashreplace: a file name that is not valid UTF-8 is kept as an
        # escape instead of failing the whole result.
        self.write_atomically(name, text.encode("utf-8", "backslashreplace"), temporary=temporary)

    def replace(self, name: str, new_name: str) -> None:
        """Rename within this folder, replacing whatever entry holds ``new_name`` (a link is
        replaced, never written through)."""
        self._rename(name, self, new_name, replace=True)

    def rename(self, name: str, target: Folder, new_name: str) -> None:
        """Move an entry (a link is moved as a link) into ``target``; never overwrites."""
        self._rename(name, target, new_name, replace=False)

    def unlink(self, name: str, *, missing_ok: bool = False) -> None:
        try:
            if self.fd is not None:
                os.unlink(name, dir_fd=self.fd)
            else:
                os.unlink(self.path / name)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals --------------------------------------------------------------

    def _open(self, name: str, flags: int, mode: int = 0o777) -> int:
        flags |= NOFOLLOW | _BINARY | CLOEXEC
        if self.fd is not None:
            return os.open(name, flags, mode, dir_fd=self.fd)
        return os.open(self.path / name, flags, mode)

    def _rename(self, name: str, target: Folder, new_name: str, *, replace: bool) -> None:
        if self.fd is not None and target.fd is not None:
            # POSIX rename replaces silently: callers pick free names in folders
            # only this account can write to (the ownership check).
            os.rename(name, new_name, src_dir_fd=self.fd, dst_dir_fd=target.fd)
        elif replace:
            os.replace(self.path / name, target.path / new_name)
        else:
            os.rename(self.path / name, target.path / new_name)  # Windows: refuses to overwrite
