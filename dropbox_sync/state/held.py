"""Files the shrink guard put in held/: listing them, approving, discarding.

A held file waits for a person. ``status`` (and status.json, the email digest)
lists each with its reason and the two commands that end the wait:
``dropbox-sync approve NAME`` sends it next; ``dropbox-sync discard NAME`` files
it in failed/ with a result saying who discarded it and when. NAME is the
archived name or the name as dropped, as for ``retry``.
"""

from __future__ import annotations

import datetime as dt
import getpass
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dropbox_sync import __version__
from dropbox_sync.config import Config, InboxConfig
from dropbox_sync.errors import UnsafeFolder
from dropbox_sync.pipeline import archive, archive_names, claim, discover, result, workdirs, workfiles
from dropbox_sync.state.journal import Attempt, Journal, iso_utc


@dataclass(frozen=True)
class HeldFile:
    inbox: InboxConfig
    path: Path  # in held/
    reason: str
    endpoint: str  # the route it would go to ("" if unknown)

    @property
    def original(self) -> str:
        return archive_names.display_name(claim.original_of(self.path))


def what_to_do(name: str) -> str:
    return f"if the export is right: dropbox-sync approve {name}; if not: dropbox-sync discard {name}"


def held_files(inbox: InboxConfig) -> list[HeldFile]:
    """The files waiting in an inbox's held/, oldest first."""
    return [HeldFile(inbox, path, reason, endpoint) for path, reason, endpoint in files_in(inbox.path)]


def status_entries(inbox_path: Path) -> list[dict[str, Any]]:
    """The held files of one inbox for status, status.json and the digest."""
    entries = []
    for path, reason, _ in shown_files(inbox_path):
        since = archive_names.archived_at(path.name)
        original = archive_names.display_name(claim.original_of(path))
        entries.append(
            {
                "file": archive_names.display_name(path.name),
                "original": original,
                "held_since": iso_utc(since) if since else None,
                "reason": reason,
                "what_to_do": what_to_do(original),
            }
        )
    return entries


def shown_files(inbox_path: Path) -> list[tuple[Path, str, str]]:
    """``files_in`` for status, status.json and report.html: none when held/ is a link or a
    file, which holds the inbox with its own reason; one bad folder must not stop the
    status of every inbox, nor the page that says why."""
    try:
        return files_in(inbox_path)
    except UnsafeFolder:
        return []


def files_in(inbox_path: Path) -> list[tuple[Path, str, str]]:
    """(file, reason, endpoint) of each file in ``inbox_path``/held/, oldest first."""
    found = []
    for path in discover.listed_files(inbox_path / workdirs.HELD):
        if path.is_symlink() or not path.is_file():
            continue  # nothing of ours; never followed
        saved = workfiles.read_result(path) or {}
        facts = saved.get("dropbox_sync") if isinstance(saved.get("dropbox_sync"), dict) else {}
        reason = saved.get("summary") if isinstance(saved.get("summary"), str) else "held for approval"
        found.append((path, reason, str(facts.get("endpoint") or "")))
    return found


def find(cfg: Config, wanted: Sequence[str]) -> tuple[list[HeldFile], list[str]]:
    """Held files named by archived name or by the name as dropped; and the problems."""
    found: list[HeldFile] = []
    problems: list[str] = []
    everything = [item for inbox in cfg.inboxes for item in held_files(inbox)]
    for want in wanted:
        name = Path(want).name
        matches = [i for i in everything if i.path.name == name] or [
            i for i in everything if claim.original_of(i.path) == name
        ]
        if not matches:
            problems.append(f"{name}: not found in any held/ folder")
        elif len(matches) > 1:
            listed = ", ".join(i.path.name for i in matches)
            problems.append(f"{name}: {len(matches)} held files have this name ({listed}); give the one you mean")
        elif matches[0] not in found:  # named twice (by both its names, say): dealt with once
            found.append(matches[0])
    return found, problems


def newer_import(journal: Journal | None, item: HeldFile) -> Attempt | None:
    """A file imported on the same route after this one was held, if any: approving
    this one would overwrite that newer data. The journal knows the order (the
    names' timestamps only to the second). So do the folders, for a file imported but not
    filed yet: its journal row is written when it is filed, or at the next start after a crash
    left it in sending/ with its result."""
    found = None
    if journal is not None:
        found = journal.imported_after(item.inbox.name, item.endpoint, archive_names.display_name(item.path.name))
    return found or _imported_in_sending(item)


def _imported_in_sending(item: HeldFile) -> Attempt | None:
    """A file in sending/ whose saved result records an import on the held file's route
    after it was held (every such file, when the held file's result does not say when)."""
    ours = (workfiles.read_result(item.path) or {}).get("dropbox_sync")
    held_at = ours.get("finished") if isinstance(ours, dict) else None
    try:
        claimed = discover.claimed_files(item.inbox.path, strict=False)
    except (OSError, UnsafeFolder):
        return None
    for path in reversed(claimed):  # the newest claim first
        saved = workfiles.read_result(path)
        attempt = result.recorded_attempt(item.inbox.name, path.name, saved) if saved is not None else None
        if (
            attempt is not None
            and attempt.outcome == "processed"
            and attempt.route == item.endpoint
            and (not isinstance(held_at, str) or attempt.finished > held_at)
        ):
            return attempt
    return None


def discard(item: HeldFile, journal: Journal | None, *, now: dt.datetime, who: str | None = None) -> Path:
    """File a held file in failed/ with a result saying who discarded it and when."""
    who = who or _user()
    saved = workfiles.read_result(item.path) or {}
    facts = saved.get("dropbox_sync") if isinstance(saved.get("dropbox_sync"), dict) else {}
    when = iso_utc(now)
    summary = f"Not imported: discarded by {who} at {when} while held for approval ({item.reason})"
    result = {
        "success": False,
        "summary": summary,
        "dropbox_sync": {
            **facts,
            "version": __version__,
            "inbox": item.inbox.name,
            "file": item.original,
            "archived_as": archive_names.display_name(item.path.name),
            "outcome": "failed",
            "stage": "discarded",
            "discarded_by": who,
            "discarded_at": when,
            "held_reason": item.reason,
        },
    }
    workfiles.write_json_atomically(archive_names.result_path(item.path), result)
    target = archive.archive(item.path, workdirs.FAILED)
    if journal is not None:
        journal.record(
            Attempt(
                item.inbox.name,
                archive_names.display_name(target.name),
                item.original,
                facts.get("sha256"),
                facts.get("bytes"),
                when,
                when,
                None,
                "failed",
                summary,
                item.endpoint,
                facts.get("rows"),
            )
        )
    return target


def _user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name (a service account without one)
        return f"uid {os.getuid()}" if hasattr(os, "getuid") else "unknown user"
