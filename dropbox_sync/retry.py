"""``dropbox-sync retry``: put files from failed/ back into their inbox.

The file gets its original name back (the timestamp prefix goes), so the
pipeline treats it like a fresh drop. Its old result stays in failed/ as
history. A name already waiting in the inbox is not overwritten.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from dropbox_sync import archive
from dropbox_sync.config import Config, InboxConfig


def retry_failed(cfg: Config, wanted: Sequence[str]) -> tuple[list[tuple[str, InboxConfig]], list[str]]:
    """Move failed files back; returns (moved (original name, inbox), problems)."""
    moved: list[tuple[str, InboxConfig]] = []
    problems: list[str] = []
    names = {Path(w).name for w in wanted}
    unmatched = set(names)
    for inbox in cfg.inboxes:
        for path in _failed_files(inbox):
            original = archive.original_of(path)
            if names and path.name not in names and original not in names:
                continue
            unmatched -= {path.name, original}
            target = inbox.path / original
            if target.exists():
                problems.append(f"{inbox.name}: {path.name} not moved: {original} is already waiting in the inbox")
                continue
            try:
                os.rename(path, target)
            except OSError as exc:
                problems.append(f"{inbox.name}: {path.name} not moved: {exc.strerror or exc}")
                continue
            archive.original_path(path).unlink(missing_ok=True)
            archive.sent_path(path).unlink(missing_ok=True)  # made again when it is sent again
            moved.append((original, inbox))
    problems.extend(f"{name}: not found in any failed/ folder" for name in sorted(unmatched))
    return moved, problems


def _failed_files(inbox: InboxConfig) -> list[Path]:
    return [p for p in archive.listed_files(inbox.path / archive.FAILED) if p.is_file() and not p.is_symlink()]
