"""What a file report leaves in the notifier's memory for the next emails.

A failed (or guarded) file becomes an entry of the digest, with Infiniti's
summary and failed rows read from its result file; a held one opens or updates
a hold episode; a file that reached the server ends the inbox's hold (a note
for the digest if the hold was alerted); a processed one is the inbox's last
success and may report users who left the export. Everything here works on the
``State`` alone: deciding what is due and sending is ``notify.Notifier``'s.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dropbox_sync.notify.messages import span
from dropbox_sync.notify.notify_state import LEAVERS, MAX_FILES, FailedFile, Hold, State
from dropbox_sync.pipeline.rows import failed_details
from dropbox_sync.when import iso_utc, parse_iso, show_local

if TYPE_CHECKING:  # the pipeline is heavy, and config.parse imports the notifier
    from dropbox_sync.pipeline.outcome import FileReport

MAX_ROWS = 20  # failed rows shown per file; the rest are in the result file


def take_in(state: State, report: FileReport, when: dt.datetime) -> None:
    """Record in ``state`` what ``report`` (a file that finished at ``when``) means for the emails."""
    if report.outcome.value == "held":
        hold = state.holds.get(report.inbox)
        if hold is None:
            state.holds[report.inbox] = Hold(iso_utc(when), report.summary)
        else:
            hold.reason = report.summary
        return
    if report.outcome.value == "guarded":  # never reached the server: says nothing of a hold
        _add_failed(state, report, when)
        return
    _hold_cleared(state, report.inbox, when)
    if report.outcome.value == "processed":
        state.last_success[report.inbox] = iso_utc(when)
        _add_leavers(state, report, when)
    else:
        _add_failed(state, report, when)


def _hold_cleared(state: State, inbox: str, when: dt.datetime) -> None:
    hold = state.holds.pop(inbox, None)
    if hold is not None and hold.alerted:
        since = parse_iso(hold.since) or when
        state.add_note(
            f'inbox "{inbox}": uploads work again since {show_local(when)}, after {span(when - since)} '
            f"held. The reason was: {hold.reason}",
            iso_utc(when),
        )


def _add_leavers(state: State, report: FileReport, when: dt.datetime) -> None:
    """The students an import found missing from the export, when its route reports or
    deactivates them (the result's ``changes``, changes.py)."""
    facts = _read_result(report.result_file).get("dropbox_sync")
    changes = facts.get("changes") if isinstance(facts, dict) else None
    if not isinstance(changes, dict) or changes.get("leavers_policy") not in ("report", "deactivate"):
        return
    count = changes.get("leavers")
    if type(count) is not int or count <= 0:
        return
    names = [name for name in changes.get("leaver_users") or [] if isinstance(name, str)][:50]
    shown = ", ".join(names) + (f", ... ({count} in all)" if count > len(names) else "")
    what = (
        "deactivated in Infiniti"
        if changes["leavers_policy"] == "deactivate"
        else 'still active in Infiniti (leavers = "report")'
    )
    state.add_note(
        f'inbox "{report.inbox}": {report.original}: {count} user(s) no longer in the export, {what}: {shown}',
        iso_utc(when),
        LEAVERS,
    )


def _add_failed(state: State, report: FileReport, when: dt.datetime) -> None:
    if len(state.failed) >= MAX_FILES:
        state.failed_overflow += 1
        return
    result = _read_result(report.result_file)
    facts = result.get("dropbox_sync") if isinstance(result.get("dropbox_sync"), dict) else {}
    rows = failed_details(result.get("details"))
    summary = result.get("summary") if isinstance(result.get("summary"), str) else report.summary
    state.failed.append(
        FailedFile(
            inbox=report.inbox,
            original=report.original,
            summary=summary,
            when=iso_utc(when),
            archived=_text(report.archived) if report.archived else "",
            stage=str(facts.get("stage", "upload")),
            rows=[[n, outcome] for n, outcome in rows[:MAX_ROWS]],
            more_rows=max(0, len(rows) - MAX_ROWS),
        )
    )


def _read_result(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # moved by `retry` already, or unreadable: the summary still says why
    return data if isinstance(data, dict) else {}


def _text(path: Path) -> str:
    # A name that is not valid UTF-8 reaches us with surrogates; show U+FFFD instead.
    return str(path).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
