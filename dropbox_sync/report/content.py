"""What report.html shows, gathered as plain data for the template.

``gather`` reads an inbox's live state (the worker's snapshot: held, uploading,
waiting), its journal (the recent imports, the last success), the result file
of each import (its failed rows and roster changes, read once and cached: an
archived result does not change) and the held/ folder. Every file it reads
lives in a shared folder: no link is followed, only regular files are read,
and sizes are bounded. Rendering and writing the page are ``page.py``'s.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dropbox_sync import __version__, when
from dropbox_sync.config import InboxConfig
from dropbox_sync.pipeline import archive_names, claim, rows, workdirs, workfiles
from dropbox_sync.state import held, status

if TYPE_CHECKING:
    from dropbox_sync.pipeline.health import InboxSnapshot
    from dropbox_sync.state.journal import Attempt, HistoryEntry, Journal

MAX_FAILED_ROWS = 20  # per import; the rest are in the result and the failed-rows CSV
MAX_HELD = 100  # held files listed
MAX_WAITING = 100  # waiting files listed (a burst of 10,000 is counted, not listed)
MAX_RESULT_BYTES = 64 * 1024 * 1024  # a result bigger than this is not read for its rows
MAX_CHANGED_NAMES = 10  # usernames named per kind of roster change; the counts are complete
OUTCOME_TEXT = {"processed": "Imported", "failed": "Failed", "guarded": "Held for approval"}


def gather(
    inbox: InboxConfig,
    snapshot: InboxSnapshot | None,
    activity: str,
    journal: Journal | None,
    now: dt.datetime,
    cache: dict | None = None,
) -> dict[str, Any]:
    """Everything the template shows, as plain data; ``cache`` keeps what was read from result
    files (pass the same dict on every call for one page: an archived result does not change)."""
    cache = {} if cache is None else cache
    reasons = snapshot.waiting if snapshot else {}
    found = status.discover_quietly(inbox)
    imports = journal.history(inbox.name, limit=inbox.report_imports) if journal else []
    success = journal.last(inbox.name, "processed") if journal else None
    return {
        "inbox": inbox.name,
        "written": _moment(now, now),
        "zone": when.zone_text(now),
        "version": __version__,
        "activity": activity,
        "held": snapshot.held if snapshot else None,
        "hold_retry": when.duration(inbox.hold_retry_seconds),
        "uploading": snapshot.uploading if snapshot else None,
        "waiting": [_waiting(entry) for entry in status.waiting(inbox, reasons, found, limit=MAX_WAITING)],
        "waiting_count": status.count_waiting(found),
        "last_success": _last_success(success, now),
        "held_files": _held_files(inbox, now),
        "imports": [_import(inbox, attempt, now, cache) for attempt in imports],
        "limit": inbox.report_imports,
    }


def _waiting(entry: dict[str, Any]) -> dict[str, Any]:
    age = entry["seconds_since_modified"]
    return {**entry, "since": when.duration(age) if age is not None else ""}


def _moment(moment: dt.datetime | None, now: dt.datetime) -> dict[str, str] | None:
    if moment is None:
        return None
    local = moment.astimezone()
    return {
        "iso": local.isoformat(timespec="seconds"),
        "text": local.strftime("%a %d %b %Y, %H:%M:%S %Z"),
        "short": local.strftime("%d %b %Y %H:%M %Z"),
        "ago": when.duration((now - moment).total_seconds()),
    }


def _last_success(attempt: Attempt | None, now: dt.datetime) -> dict[str, Any] | None:
    if attempt is None:
        return None
    finished = when.parse_iso(attempt.finished)
    return {"file": attempt.original, "summary": attempt.summary, "when": _moment(finished, now)}


def _import(inbox: InboxConfig, entry: HistoryEntry, now: dt.datetime, cache: dict) -> dict[str, Any]:
    folder = entry.folder
    archived = inbox.path / folder / entry.archived_as
    result = archive_names.result_path(archived)
    links = [
        (label, _href(folder, path.name))
        for label, path in (
            ("file", archived),
            ("result", result),
            ("failed rows (CSV)", archive_names.failed_rows_path(archived)),
        )
        if _is_file(path)
    ]
    facts = _result_facts(inbox, archived, result, cache) if _is_file(result) else _Facts()
    return {
        "file": entry.file,
        "archived_as": entry.archived_as,
        "when": _moment(when.parse_iso(entry.finished), now),
        "outcome": entry.outcome,
        "outcome_text": OUTCOME_TEXT.get(entry.outcome, entry.outcome),
        "summary": entry.summary,
        "created": entry.created,
        "updated": entry.updated,
        "failed": entry.failed,
        "links": links,
        "failed_rows": facts.failed_rows if entry.outcome == "failed" else [],
        "more_failed_rows": facts.more_failed_rows if entry.outcome == "failed" else 0,
        "changes": facts.changes,
    }


@dataclass(frozen=True)
class _Facts:
    """What the page takes from a result file besides the journal's line."""

    failed_rows: list[rows.FailedRow] = field(default_factory=list)
    more_failed_rows: int = 0
    changes: list[str] = field(default_factory=list)  # the roster changes, in words


def _result_facts(inbox: InboxConfig, archived: Path, result: Path, cache: dict) -> _Facts:
    """Read an archived file's result once: archived files and their results do not change."""
    try:
        info = os.lstat(result)
    except OSError:
        return _Facts()
    key = (str(result), info.st_size, info.st_mtime_ns)
    if key not in cache:
        data = _read_json(result) if info.st_size <= MAX_RESULT_BYTES else {}
        ours = data.get("dropbox_sync") if isinstance(data.get("dropbox_sync"), dict) else {}
        # Read as the upload read it: transcoded only when it was not UTF-8 (prepare.py).
        encoding = str(ours.get("transcoded_from") or "")
        failed, more = rows.failed_rows(
            data.get("details"), archived, encoding=encoding, limit=MAX_FAILED_ROWS, traced=ours.get("export_rows")
        )
        cache[key] = _Facts(failed, more, _changes(ours.get("changes")))
    return cache[key]


def _changes(changes: object) -> list[str]:
    """The roster changes of an import (the result's ``changes``, changeset.Changes.facts) in words:
    ``["3 added: ann, bob, cid", "1 changed: dan", "1996 unchanged", "2 leavers (deactivated): eve, fay"]``."""
    if not isinstance(changes, dict):
        return []

    def count(key: str) -> int:
        value = changes.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    def names(key: str) -> list[str]:
        listed = changes.get(key)
        listed = listed if isinstance(listed, list) else []
        return [str(item.get("username", "")) if isinstance(item, dict) else str(item) for item in listed]

    def part(number: int, label: str, listed: list[str]) -> str:
        shown = listed[:MAX_CHANGED_NAMES]
        text = f"{number} {label}"
        if shown:
            text += ": " + ", ".join(shown) + (", …" if number > len(shown) else "")
        return text

    leavers = "leaver" if count("leavers") == 1 else "leavers"
    if count("leavers") and changes.get("deactivated"):
        leavers += " (deactivated)"
    words = [
        part(count("added"), "added", names("added_users")),
        part(count("changed"), "changed", names("changed_users")),
        f"{count('unchanged')} unchanged",
        part(count("leavers"), leavers, names("leaver_users")),
    ]
    return [text for text in words if not text.startswith("0 ")]


def _held_files(inbox: InboxConfig, now: dt.datetime) -> list[dict[str, Any]]:
    found = []
    for path, reason, _ in held.shown_files(inbox.path)[:MAX_HELD]:
        name = path.name
        found.append(
            {
                "file": archive_names.display_name(claim.original_of(path)),
                "archived_as": archive_names.display_name(name),
                "since": _moment(archive_names.archived_at(name), now),
                "why": reason,
                "command": f"dropbox-sync approve {_quoted(archive_names.display_name(name))}",
                "href": _href(workdirs.HELD, name),
            }
        )
    return found


def _read_json(path: Path) -> dict[str, Any]:
    """A result file from a shared folder: no link followed, nothing but a regular file read."""
    try:
        with workfiles.open_untrusted(path) as handle:
            data = json.loads(handle.read(MAX_RESULT_BYTES + 1).decode("utf-8", "replace"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _is_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _href(folder: str, name: str) -> str:
    """A link relative to the page: works from a share, a mapped drive and a UNC path alike."""
    raw = name.encode("utf-8", "surrogateescape")
    return f"{folder}/{urllib.parse.quote(raw, safe='')}"


def _quoted(name: str) -> str:
    return f'"{name}"' if any(c in name for c in " '\"&()<>|^;$`") else name
