"""The one shape of a result file, whatever became of the file (DESIGN §4).

Top-level keys are the server's reply verbatim (``success``, ``summary``,
``details`` and whatever else it sent). A file stopped before the upload (pre-flight,
shrink guard, a link in ``sending/``) gets the same two keys of its own,
``success: false`` and a ``summary`` saying why, so office staff read one kind of
result. Our facts go under the one extra key ``dropbox_sync``, always the same keys:

    version, inbox, file, archived_as, outcome, stage, endpoint, http_status,
    sha256, bytes, rows, attempts, started, finished
    (+ transcoded_from, approved, warnings, mapping, export_rows when they apply;
    reply_bytes_read, reply_truncated, reply_problem when the reply could not be read
    whole: reply.py; changes: what the file changes against the roster memory, for every
    users file: {added, changed, unchanged, leavers, sent_rows, ...} (changeset.Changes.facts))
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

from dropbox_sync import __version__, when
from dropbox_sync.pipeline.archive_names import display_name
from dropbox_sync.pipeline.reply import summary_line
from dropbox_sync.state.journal import Attempt

# Stages: where the file's journey ended.
PREFLIGHT = "preflight"
SHRINK_GUARD = "shrink guard"
CHANGE_GUARD = "change guard"
NO_CHANGES = "no changes"  # delta found nothing to send: filed without an upload
UPLOAD = "upload"


def iso(moment: dt.datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def build(
    body: Mapping[str, Any],
    *,
    inbox: str,
    file: str,
    archived_as: str,
    outcome: str,
    stage: str,
    endpoint: str,
    http_status: int | None,
    facts: Mapping[str, Any],
    attempts: int,
    started: dt.datetime,
    finished: dt.datetime,
) -> dict[str, Any]:
    """The result of one file: ``body`` (the reply, or ours) plus our facts.

    ``facts`` come from the preparation (``prepared.Upload.facts`` or
    ``prepared.Rejection.facts``) and the upload; its ``endpoint``, the route's,
    wins over the inbox's."""
    ours: dict[str, Any] = {
        "version": __version__,
        "inbox": inbox,
        "file": file,
        "archived_as": archived_as,
        "outcome": outcome,
        "stage": stage,
        "endpoint": endpoint,
        "http_status": http_status,
        "sha256": None,
        "bytes": None,
        "rows": None,
        **facts,
        "attempts": attempts,
        "started": iso(started),
        "finished": iso(finished),
    }
    return {**body, "dropbox_sync": ours}


def attempt(
    inbox: str,
    file: str,
    original: str,
    started: dt.datetime,
    finished: dt.datetime,
    status: int | None,
    outcome: str,
    summary: str,
    facts: Mapping[str, Any],
) -> Attempt:
    """The journal's row of one attempt (any outcome, retries and holds too), from the same
    facts as the result: ``file`` is the claimed (archive) name."""
    return Attempt(
        inbox,
        display_name(file),
        original,
        facts.get("sha256"),
        facts.get("bytes"),
        iso(started),
        iso(finished),
        status,
        outcome,
        summary,
        facts.get("endpoint", ""),
        facts.get("rows"),
    )


TEXT_CHARS = 2000  # of a text read back from a result (a name, a URL): damage cannot make it more


def recorded_attempt(inbox: str, file: str, saved: Mapping[str, Any]) -> Attempt | None:
    """The journal's row of the attempt a saved result records (``file``: the claimed name), for
    a file found in sending/ with its result after a crash (``Filing.recovered``): the same
    fields ``attempt`` gives, read back from the result. None for a result without our facts.
    A result is a file in a shared folder, so it is read like one: its times must be times
    (else no row: a row that sorts and shows as garbage spoils every history and page after
    it), its texts are shown safely and cut short, its outcome is where the file is filed."""
    ours = saved.get("dropbox_sync")
    finished = _moment(ours.get("finished")) if isinstance(ours, Mapping) else None
    if finished is None:
        return None

    def text(key: str) -> str | None:
        value = ours.get(key)
        return display_name(value)[:TEXT_CHARS] if isinstance(value, str) and value else None

    def number(key: str) -> int | None:
        value = ours.get(key)
        return value if type(value) is int else None

    outcome = recorded_outcome(saved)
    sha256 = ours.get("sha256")
    status = number("http_status")
    return Attempt(
        inbox,
        display_name(file),
        text("file") or display_name(file),
        sha256 if isinstance(sha256, str) and re.fullmatch("[0-9a-f]{64}", sha256) else None,
        number("bytes"),
        _moment(ours.get("started")) or finished,
        finished,
        status,
        outcome,
        summary_line(saved.get("summary", f"HTTP {status}")),
        text("endpoint") or "",
        number("rows"),
    )


def recorded_outcome(saved: Mapping[str, Any]) -> str:
    """The final outcome a saved result records, "processed", "failed" or "guarded": ours first
    (the server's ``success`` may be odd, "true" as text); a result without ours goes by the
    server's ``success``, an outcome we do not know is a failure. Where a recovered file is
    filed (``Filing.recovered``), and its journal row (``recorded_attempt``)."""
    ours = saved.get("dropbox_sync")
    recorded = ours.get("outcome") if isinstance(ours, Mapping) else None
    if recorded in ("processed", "failed", "guarded"):
        return recorded
    return "failed" if recorded else ("processed" if saved.get("success") is True else "failed")


def _moment(value: object) -> str | None:
    """A time read back from a result, as ``iso`` writes it (ours round-trip exactly); None if not one."""
    moment = when.parse_iso(value)
    return iso(moment.astimezone(dt.UTC)) if moment is not None else None
