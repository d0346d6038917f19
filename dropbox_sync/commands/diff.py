"""``dropbox-sync diff FILE``: what a file would change against the roster memory; sends nothing.

It runs the pipeline's own preparation (``prepare.prepare``, the same stages as ``run``)
with the roster opened read-only, so it never changes the memory, and prints: added,
changed (each column that changed, old and new), unchanged, leavers, and the rows the
upload would hold. ``preview`` prints the same summary (``describe``).
"""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path
from typing import TextIO

from dropbox_sync.config import InboxConfig
from dropbox_sync.pipeline.prepare import prepare
from dropbox_sync.pipeline.prepared import Rejection
from dropbox_sync.roster.changeset import LISTED, Changes
from dropbox_sync.roster.memory import Roster

OK, PROBLEMS = 0, 1


def run_diff(inbox: InboxConfig, path: Path, roster: Roster, *, out: TextIO, now: dt.datetime | None = None) -> int:
    with tempfile.TemporaryDirectory(prefix="dropbox-sync-diff-") as scratch:
        prepared = prepare(inbox, path, scratch=Path(scratch), roster=roster, now=now, approved=True)
        if isinstance(prepared, Rejection):
            print(f"FAIL  {path}: would go to failed/: {prepared.summary}", file=out)
            return PROBLEMS
        try:
            print(f"{path}: inbox {inbox.name}, to {prepared.route.safe_url}", file=out)
            if prepared.changes is None:
                print("no username column: not a users import, nothing to compare", file=out)
                return OK
            for line in describe(prepared.changes, full=True):
                print(line, file=out)
        finally:
            prepared.discard()
    return OK


def describe(changes: Changes, *, full: bool = False) -> list[str]:
    """The diff for people: counts, what would be sent and why; with ``full`` every listed user."""
    policy = changes.policy
    lines = [f"changes: {changes.counts()} (the roster remembers {changes.remembered} users on this route)"]
    if changes.note:
        lines.append(f"note  {changes.note}")
    if changes.nothing_to_send:
        lines.append("would send: nothing (no changes since the last import); filed in processed/")
    elif changes.whole:
        lines.append(f"would send: the whole file, {changes.sent_rows} row(s) ({changes.whole})")
    else:
        lines.append(f"would send: {changes.sent_rows} row(s), only the changes")
    if changes.over_guard:
        lines.append(
            f"HELD  would wait in held/ for approval: {changes.moving} of the {changes.remembered} users "
            f"would change or be deactivated (change_guard = {policy.change_guard:g})"
        )
    if changes.leavers:
        what = {
            "keep": 'kept active (leavers = "keep")',
            "report": 'reported (leavers = "report")',
            "deactivate": f"deactivated with {', '.join(f'{k}={v}' for k, v in policy.leaver_values)}",
        }
        lines.append(f"leavers are {what[policy.leavers]}")
    if not full:
        return lines
    for item in changes.added_listed:
        lines.append(f"added      {item['username']} (line {item['line']})")
    for item in changes.changed_listed:
        columns = "; ".join(f"{name}: {v['old']!r} -> {v['new']!r}" for name, v in item.get("columns", {}).items())
        lines.append(f"changed    {item['username']} (line {item['line']}): {columns}")
    for username in changes.leavers[:LISTED]:
        lines.append(f"leaver     {username}")
    for kind, listed, total in (
        ("added", changes.added_listed, changes.added),
        ("changed", changes.changed_listed, changes.changed),
        ("leavers", changes.leavers[:LISTED], len(changes.leavers)),
    ):
        if total > len(listed):
            lines.append(f"... and {total - len(listed)} more {kind} not listed")
    return lines
