"""The report page's file in the inbox: recognising it, and writing it without trusting the folder.

The inbox is shared ground (DESIGN §9): anyone who may drop a file may also
put a link where ``report.html`` should be, or at the name of our temporary.
So the page is written to a temporary with an unguessable name, created
exclusively and without following links, flushed, then renamed over the
page: a rename replaces whatever entry holds the name (a planted link
included) and never writes through it. On POSIX every step goes through one
handle on the inbox folder opened without following links, so a folder
swapped for a link between steps is refused rather than written into.

Discovery never takes these files as imports (``discover.is_reserved`` asks ``is_page_file``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

TEMP_SUFFIX = ".tmp"
PAGE_MODE = 0o644  # for the people who can reach the inbox; it holds no secret (see docs/security.md)
_POSIX = os.name == "posix"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)


def temp_prefix(page: str) -> str:
    return f".{page}."


def is_page_file(name: str, page: str) -> bool:
    """The report page, or one of its temporaries (case-insensitive, as on a Windows share)."""
    if not page:
        return False
    lowered, page = name.lower(), page.lower()
    return lowered == page or (lowered.startswith(temp_prefix(page)) and lowered.endswith(TEMP_SUFFIX))


def write_page(folder: Path, page: str, text: str) -> None:
    """Replace ``folder/page`` with ``text`` atomically; never follows a link. Raises OSError."""
    data = text.encode("utf-8")
    temporary = f"{temp_prefix(page)}{secrets.token_hex(8)}{TEMP_SUFFIX}"
    with _folder_handle(folder) as dir_fd:
        fd = os.open(_at(folder, temporary, dir_fd), os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW
                     | getattr(os, "O_BINARY", 0), PAGE_MODE, **_fd_kw(dir_fd))  # fmt: skip
        try:
            try:
                if _POSIX:
                    os.fchmod(fd, PAGE_MODE)  # not the service's umask: the page is for the share's readers
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(_at(folder, temporary, dir_fd), _at(folder, page, dir_fd),
                       **_fd_kw(dir_fd, "src_dir_fd"), **_fd_kw(dir_fd, "dst_dir_fd"))  # fmt: skip
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(_at(folder, temporary, dir_fd), **_fd_kw(dir_fd))
            raise


def remove_stale_temporaries(folder: Path, page: str) -> None:
    """Temporaries a crash left behind (only ours: the prefix and suffix are unguessable together)."""
    if not page:
        return
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            if entry.name != page and is_page_file(entry.name, page) and not entry.is_dir(follow_symlinks=False):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


@contextlib.contextmanager
def _folder_handle(folder: Path) -> Iterator[int | None]:
    if not _POSIX:
        # No dir_fd on Windows. The inbox path is the configured one; a link
        # planted at the page's own name is replaced by the rename, not followed.
        yield None
        return
    dir_fd = os.open(folder, os.O_RDONLY | _DIRECTORY | _NOFOLLOW)
    try:
        yield dir_fd
    finally:
        os.close(dir_fd)


def _at(folder: Path, name: str, dir_fd: int | None) -> str | Path:
    return name if dir_fd is not None else folder / name


def _fd_kw(dir_fd: int | None, key: str = "dir_fd") -> dict[str, int]:
    return {key: dir_fd} if dir_fd is not None else {}
