"""What is going on, per inbox: for ``dropbox-sync status`` and for monitoring tools.

The running service rewrites ``status.json`` in the state dir every few
seconds (atomically, so a reader never sees half of it); ``status`` combines
it with the folders (what is waiting now) and the journal (last success and
failure, counts today). Without a running service the folders and journal
still answer; only "held, and why" needs the service's (or the last once's)
word.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger

from dropbox_sync import __version__, paths, when
from dropbox_sync.config import Config, InboxConfig
from dropbox_sync.errors import StateFileDamaged, UnsafeFolder
from dropbox_sync.pipeline import archive_names, workdirs, workfiles
from dropbox_sync.pipeline.discover import Discovery, discover, listed_files
from dropbox_sync.pipeline.inboxlock import InboxLock
from dropbox_sync.pipeline.settle import Observation
from dropbox_sync.state import held, statefiles
from dropbox_sync.state.journal import Attempt, Journal

if TYPE_CHECKING:  # pipeline imports this module to write status.json
    from dropbox_sync.pipeline.health import InboxSnapshot

FRESH_SECONDS = 30.0  # a status.json older than this is from a service that is not running


def write_status_file(state_dir: Path, snapshots: Iterable[InboxSnapshot], *, mode: str) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    data = {
        "updated": _now().isoformat(timespec="seconds"),
        "pid": os.getpid(),
        "mode": mode,
        "version": __version__,
        "inboxes": {
            s.name: {
                "held": s.held,
                "folder_missing": s.folder_missing,
                "uploading": s.uploading,
                "waiting": s.waiting,
                "held_files": held.status_entries(s.path),
            }
            for s in snapshots
        },
    }
    workfiles.write_json_atomically(state_dir / paths.STATUS_FILE, data)


def read_status_file(state_dir: Path) -> dict[str, Any] | None:
    """The last status.json, every field of the shape ``write_status_file`` gives it; None if
    there is none or it is damaged (it is rewritten every few seconds, so it is not set aside)."""
    try:
        data = statefiles.load_json_object(state_dir / paths.STATUS_FILE)
    except StateFileDamaged as exc:
        logger.warning("{}; ignored (the service rewrites it every few seconds)", exc)
        return None
    if data is None:
        return None
    inboxes = data.get("inboxes") if isinstance(data.get("inboxes"), dict) else {}
    return {
        "updated": _text_or_none(data.get("updated")),
        "pid": data.get("pid") if type(data.get("pid")) is int else None,
        "mode": _text_or_none(data.get("mode")),
        "version": _text_or_none(data.get("version")),
        "inboxes": {name: _reported_inbox(entry) for name, entry in inboxes.items() if isinstance(entry, dict)},
    }


def _reported_inbox(entry: dict[str, Any]) -> dict[str, Any]:
    waiting = entry.get("waiting") if isinstance(entry.get("waiting"), dict) else {}
    return {
        "held": _text_or_none(entry.get("held")),
        "folder_missing": entry.get("folder_missing") is True,
        "uploading": _text_or_none(entry.get("uploading")),
        "waiting": {k: v for k, v in waiting.items() if isinstance(v, str)},
    }


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def gather(cfg: Config, state_dir: Path, journal: Journal | None) -> dict[str, Any]:
    """Everything ``status`` shows, as plain data (also the ``--json`` output)."""
    service = read_status_file(state_dir)
    updated = when.parse_iso(service.get("updated")) if service else None
    age = (_now() - updated).total_seconds() if updated else None
    running = bool(service and service.get("mode") == "run" and age is not None and age < FRESH_SECONDS)
    today = _now().replace(hour=0, minute=0, second=0, microsecond=0).isoformat()
    inboxes = []
    for inbox in cfg.inboxes:
        reported = (service or {}).get("inboxes", {}).get(inbox.name, {})
        inboxes.append(_inbox_status(inbox, reported, journal, today))
        holder = InboxLock(state_dir, inbox.name, inbox.path).held_elsewhere()
        inboxes[-1]["worked_by"] = dataclasses.asdict(holder) if holder else None
    return {
        "service": {
            "running": running,
            "mode": (service or {}).get("mode"),
            "pid": (service or {}).get("pid"),
            "updated": (service or {}).get("updated"),
        },
        "inboxes": inboxes,
    }


def _inbox_status(inbox: InboxConfig, reported: dict[str, Any], journal: Journal | None, today: str) -> dict:
    status: dict[str, Any] = {
        "name": inbox.name,
        "path": str(inbox.path),
        "url": inbox.safe_url,
        "held": reported.get("held"),
        "folder_missing": not inbox.path.is_dir(),
    }
    try:
        workdirs.check_inbox(inbox.path, create=False, strict=False)
    except UnsafeFolder as exc:  # a work folder is a link or a file: say so even before the service does
        status["held"] = status["held"] or str(exc)
    except OSError:
        pass  # missing or unlistable: folder_missing says so
    found = discover_quietly(inbox)
    status["waiting"] = waiting(inbox, reported.get("waiting", {}), found)
    status["not_sent"] = [
        {"file": archive_names.display_name(item.name), "reason": item.reason} for item in found.skipped
    ]
    status["held_files"] = held.status_entries(inbox.path)  # none if held/ is a link or a file: "held" says so
    status["failed_files"] = _count_files(inbox.path / workdirs.FAILED)
    if journal is not None:
        last_success = journal.last(inbox.name, "processed")
        status["last_success"] = _attempt(last_success)
        status["last_changes"] = _last_changes(inbox, last_success)
        status["last_failure"] = _attempt(journal.last(inbox.name, "failed"))
        status["today"] = journal.counts_since(inbox.name, today)
    return status


def waiting(
    inbox: InboxConfig, reasons: dict[str, str], found: Discovery | None = None, *, limit: int | None = None
) -> list[dict[str, Any]]:
    """The files an inbox has not dealt with yet (sending/ first, then the queue), and why;
    the first ``limit`` of them when given (``count_waiting`` counts them all).

    ``reasons``: what the worker said about each (its snapshot's ``waiting``)."""
    found = discover_quietly(inbox) if found is None else found
    marker = inbox.done_marker
    # The scan's own look at each inbox file is reused: a page shown during a burst of
    # 10,000 files costs a look at the few it lists, not one per file.
    files: Iterable[tuple[Path, Observation | None, str | None]] = itertools.chain(
        ((path, None, None) for path in found.claimed),
        ((inbox.path / c.name, c.observation, None) for c in found.waiting),
        (
            (
                inbox.path / c.name,
                c.observation,
                f"waits for its done marker {archive_names.display_name(c.name)}{marker}",
            )
            for c in found.unfinished
        ),
    )
    return [
        _waiting_entry(path, seen, reason or reasons.get(path.name))
        for path, seen, reason in itertools.islice(files, limit)
    ]


def count_waiting(found: Discovery) -> int:
    return len(found.claimed) + len(found.waiting) + len(found.unfinished)


def discover_quietly(inbox: InboxConfig) -> Discovery:
    """``discover`` for a look from outside the service: a folder that cannot be listed shows as empty."""
    try:
        return discover(inbox, strict=False)  # perhaps run as another account than the service
    except (OSError, UnsafeFolder):
        return Discovery()  # missing, unlistable or a link: folder_missing or held says so


def _waiting_entry(path: Path, seen: Observation | None, reason: str | None) -> dict[str, Any]:
    where = "sending/" if path.parent.name == workdirs.SENDING else "inbox"
    if seen is None:
        try:
            seen = workfiles.observe_claimed(path)
        except (OSError, UnsafeFolder):
            seen = None
    waited = max(0.0, _now().timestamp() - seen.mtime_ns / 1e9) if seen else None
    return {
        "file": archive_names.display_name(path.name),
        "where": where,
        "seconds_since_modified": waited,
        "reason": reason or ("claimed, to be sent next" if where == "sending/" else "queued"),
    }


def _count_files(folder: Path) -> int:
    try:
        return sum(1 for path in listed_files(folder) if path.is_file())
    except (OSError, UnsafeFolder):
        return 0


def _attempt(attempt: Attempt | None) -> dict[str, Any] | None:
    if attempt is None:
        return None
    return {"time": attempt.finished, "file": attempt.original, "archived_as": attempt.file, "summary": attempt.summary}


def _last_changes(inbox: InboxConfig, attempt: Attempt | None) -> dict[str, Any] | None:
    """What the last import changed (its result's ``changes``); leavers named when the route
    reports or deactivates them (leavers = "report" | "deactivate")."""
    if attempt is None:
        return None
    saved = workfiles.read_result(inbox.path / workdirs.PROCESSED / attempt.file) or {}
    ours = saved.get("dropbox_sync")
    changes = ours.get("changes") if isinstance(ours, dict) else None
    if not isinstance(changes, dict):
        return None
    found: dict[str, Any] = {"file": attempt.original, "time": attempt.finished}
    for key in ("added", "changed", "unchanged", "leavers", "sent_rows"):
        found[key] = changes.get(key) if type(changes.get(key)) is int else None
    listed = changes.get("leaver_users")
    if changes.get("leavers_policy") in ("report", "deactivate") and isinstance(listed, list):
        found["leaver_users"] = [name for name in listed if isinstance(name, str)]
    return found


def _changes_lines(changes: dict[str, Any]) -> list[str]:
    counts = ", ".join(
        f"{changes[key]} {key}" for key in ("added", "changed", "unchanged", "leavers") if changes.get(key) is not None
    )
    lines = [f"  last import changed: {counts}; {changes.get('sent_rows')} row(s) sent ({changes['file']})"]
    leavers = changes.get("leaver_users") or []
    if leavers:
        more = f", ... ({changes['leavers']} in all)" if (changes.get("leavers") or 0) > len(leavers[:20]) else ""
        lines.append(f"    leavers (not in the export): {', '.join(leavers[:20])}{more}")
    return lines


def render_text(data: dict[str, Any]) -> str:
    service = data["service"]
    if service["running"]:
        lines = [f"service: running (pid {service['pid']}, updated {service['updated']})"]
    elif service["updated"]:
        lines = [f"service: not running (last word {service['updated']}, from '{service['mode']}')"]
    else:
        lines = ["service: no status yet (never run with this state dir)"]
    for inbox in data["inboxes"]:
        lines.append("")
        lines.append(f"inbox {inbox['name']}: {inbox['path']} -> {inbox['url']}")
        if inbox["folder_missing"]:
            lines.append("  FOLDER MISSING")
        worker = inbox.get("worked_by")
        lines.append(
            f"  worked by: pid {worker['pid']} on {worker['host']}, '{worker['command']}', since {worker['since']}"
            if worker
            else "  worked by: no dropbox-sync process right now"
        )
        lines.append(f"  HELD: {inbox['held']}" if inbox["held"] else "  held: no")
        lines.append(f"  waiting: {len(inbox['waiting'])}")
        for entry in inbox["waiting"]:
            age = entry["seconds_since_modified"]
            since = f"{when.duration(age)} since last change" if age is not None else "gone"
            lines.append(f"    {entry['where']:<8} {entry['file']}  ({since}; {entry['reason']})")
        if inbox["not_sent"]:
            lines.append(f"  not sent: {len(inbox['not_sent'])}")
        for entry in inbox["not_sent"]:
            lines.append(f"    inbox    {entry['file']}  (it {entry['reason']})")
        if inbox["held_files"]:
            count = len(inbox["held_files"])
            lines.append(f"  HELD FOR APPROVAL: {count} file(s) in held/, not sent until a person decides")
        for entry in inbox["held_files"]:
            lines.append(f"    held/    {entry['file']}  (since {entry['held_since']}; {entry['reason']})")
            lines.append(f"             what to do: {entry['what_to_do']}")
        for key, label in (("last_success", "last success"), ("last_failure", "last failure")):
            if key in inbox:
                last = inbox[key]
                lines.append(f"  {label}: " + (f"{last['time']} {last['file']}: {last['summary']}" if last else "none"))
        if inbox.get("last_changes"):
            lines += _changes_lines(inbox["last_changes"])
        if "today" in inbox:
            counts = inbox["today"]
            lines.append(
                f"  today: {counts.get('processed', 0)} processed, {counts.get('failed', 0)} failed, "
                f"{counts.get('retry', 0)} retries, {counts.get('held', 0)} holds"
            )
        lines.append(f"  in failed/: {inbox['failed_files']} file(s)")
    return "\n".join(lines)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
