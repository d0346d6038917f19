"""``dropbox-sync retry``: put files from failed/ back into their inbox.

The file gets its original name back (the timestamp prefix goes), so the
pipeline treats it like a fresh drop. Its old result stays in failed/ as
history. A name already waiting in the inbox is not overwritten.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from dropbox_sync.config import Config, InboxConfig
from dropbox_sync.errors import UnsafeFolder
from dropbox_sync.pipeline import archive_names, claim, discover, workdirs


def retry_failed(cfg: Config, wanted: Sequence[str]) -> tuple[list[tuple[str, InboxConfig]], list[str]]:
    """Move failed files back; returns (moved (original name, inbox), problems)."""
    moved: list[tuple[str, InboxConfig]] = []
    problems: list[str] = []
    names = {Path(w).name for w in wanted}
    unmatched = set(names)
    for inbox in cfg.inboxes:
        try:
            moved += _retry_inbox(inbox, names, unmatched, problems)
        except (OSError, UnsafeFolder) as exc:
            problems.append(f"{inbox.name}: failed/ not read: {getattr(exc, 'strerror', None) or exc}")
    problems.extend(f"{name}: not found in any failed/ folder" for name in sorted(unmatched))
    return moved, problems


def _retry_inbox(
    inbox: InboxConfig, names: set[str], unmatched: set[str], problems: list[str]
) -> list[tuple[str, InboxConfig]]:
    moved = []
    # strict=False: a person runs this, perhaps as another account than the service;
    # a failed/ that is a link is refused all the same (workdirs.py).
    with workdirs.inbox_folders(inbox.path, strict=False) as folders:
        failed = folders.optional(workdirs.FAILED)
        for path in discover.listed_files(inbox.path / workdirs.FAILED) if failed else []:
            original = claim.original_of(path)
            if not failed.is_regular(path.name) or (names and path.name not in names and original not in names):
                continue  # links and the like were filed there unread; they are not sent again
            unmatched -= {path.name, original}
            if folders.inbox.exists(original):
                problems.append(f"{inbox.name}: {path.name} not moved: {original} is already waiting in the inbox")
                continue
            try:
                failed.rename(path.name, folders.inbox, original)
            except OSError as exc:
                problems.append(f"{inbox.name}: {path.name} not moved: {exc.strerror or exc}")
                continue
            failed.unlink(archive_names.original_path(path).name, missing_ok=True)
            failed.unlink(archive_names.sent_path(path).name, missing_ok=True)  # made again when it is sent again
            moved.append((original, inbox))
    return moved
