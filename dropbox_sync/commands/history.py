"""``dropbox-sync history``: past imports from the journal, newest first, for people.

The query is ``Journal.history`` (report.html uses it too); this module only
reads the command line's DATE and lays the entries out as text or JSON.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from dropbox_sync.config import Config
from dropbox_sync.errors import UsageError
from dropbox_sync.state.journal import HistoryEntry


def parse_since(text: str) -> dt.datetime:
    """``2026-11-25`` (from local midnight) or ``2026-11-25T08:00`` / ``... 08:00`` (local unless it has an offset)."""
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f'--since "{text}": expected a date like 2026-11-25 or a time like 2026-11-25T08:00') from None
    return moment if moment.tzinfo is not None else moment.astimezone()


def as_json(entries: Iterable[HistoryEntry], cfg: Config) -> list[dict[str, Any]]:
    folders = {inbox.name: inbox.path for inbox in cfg.inboxes}
    out = []
    for entry in entries:
        item = entry.to_dict()
        inbox_path = folders.get(entry.inbox)
        # Where it was filed; it may have moved since (approve, retry, retention).
        item["path"] = str(inbox_path / entry.folder / entry.archived_as) if inbox_path else None
        out.append(item)
    return out


def render_text(entries: list[HistoryEntry], cfg: Config) -> str:
    if not entries:
        return "no imports recorded yet"
    folders = {inbox.name: inbox.path for inbox in cfg.inboxes}
    lines = []
    for entry in entries:
        when = _local(entry.finished)
        lines.append(f"{when}  {entry.inbox}  {entry.file}  {_outcome(entry)}")
        lines.append(f"    {_counts(entry)}")
        inbox_path = folders.get(entry.inbox)
        where = inbox_path / entry.folder / entry.archived_as if inbox_path else entry.archived_path
        lines.append(f"    filed as {where}")
    return "\n".join(lines)


def _outcome(entry: HistoryEntry) -> str:
    if entry.outcome == "guarded":
        return "HELD for approval (see dropbox-sync status)"
    if entry.outcome == "processed":
        return "imported"
    if entry.failed and (entry.created or entry.updated):
        return f"PARTLY FAILED: {entry.failed} row(s) not imported"
    if entry.failed:
        return "FAILED: no row imported"
    return "FAILED: not imported"


def _counts(entry: HistoryEntry) -> str:
    if entry.created is None and entry.updated is None and entry.failed is None:
        return entry.summary  # not an import summary: the reason it was stopped
    parts = [
        f"{getattr(entry, key)} {key}" for key in ("created", "updated", "failed") if getattr(entry, key) is not None
    ]
    return "users: " + ", ".join(parts)


def _local(iso: str) -> str:
    try:
        moment = dt.datetime.fromisoformat(iso)
    except ValueError:
        return iso
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")
