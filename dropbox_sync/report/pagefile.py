"""The report page's file in the inbox: recognising it, and writing it without trusting the folder.

The inbox is shared ground (DESIGN §9): anyone who may drop a file may also
put a link where ``report.html`` should be, or at the name of our temporary.
So the page goes through the work-folder rules of ``workdirs.py``: a
temporary with an unguessable name, created exclusively without following
links, flushed, then renamed over the page (a rename replaces whatever entry
holds the name, a planted link included, and never writes through it), all
through one handle on the inbox folder (POSIX).

Discovery never takes these files as imports (``discover.is_reserved`` asks ``is_page_file``).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from dropbox_sync.pipeline import workdirs
from dropbox_sync.pipeline.folder import TEMPORARY_SUFFIX

PAGE_MODE = 0o644  # for the people who can reach the inbox; it holds no secret (see docs/security.md)


def _temporary_suffix(page: str) -> str:
    return f".{page}{TEMPORARY_SUFFIX}".lower()  # Folder names it .<random>.<page>.tmp


def is_page_file(name: str, page: str) -> bool:
    """The report page, or one of its temporaries (case-insensitive, as on a Windows share)."""
    if not page:
        return False
    lowered = name.lower()
    return lowered == page.lower() or (lowered.startswith(".") and lowered.endswith(_temporary_suffix(page)))


def write_page(folder: Path, page: str, text: str) -> None:
    """Replace ``folder/page`` with ``text`` atomically; never follows a link. Raises OSError."""
    with workdirs.open_trusted(folder) as inbox:
        # Its temporary is named after the page (``is_page_file``), so a crash's is known.
        named = inbox.create_temporary(f".{page}")
        inbox.write_atomically(page, text.encode("utf-8"), temporary=named, mode=PAGE_MODE)


def remove_stale_temporaries(folder: Path, page: str) -> None:
    """Temporaries of the page a crash left behind (only ours: a dot-name ending .<page>.tmp)."""
    if not page:
        return
    with contextlib.suppress(OSError), workdirs.open_trusted(folder) as inbox:
        for name in inbox.names():
            if name.lower() != page.lower() and is_page_file(name, page) and inbox.is_regular(name):
                with contextlib.suppress(OSError):
                    inbox.unlink(name)
