"""What became of an upload attempt: the verdict on a server reply, and the report of it.

The rules (DESIGN §5, Outcome): 401, 403, 404 hold the inbox (only a config
fix helps); 429 and every 5xx, or a reply that is not Infiniti's JSON, are
passing faults to retry; otherwise the server's ``success`` decides between
processed/ and failed/. A reply that is not Infiniti's and not a server fault
(a captive portal's 200, JSON of another shape) is retried only
FOREIGN_REPLIES_BEFORE_HOLD times in a row, then holds the inbox: whatever
answers may well have imported the file, so it must not be sent for ever.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from dropbox_sync.pipeline import archive_names
from dropbox_sync.pipeline.reply import Reply

HOLD_STATUSES = {
    401: "credentials were rejected",
    403: "the account lacks system administration rights",
    404: "the import URL does not exist; check its path: Infiniti imports at "
    "/api/import/users or /api/import/userGroups?tenantId=TENANT",
}
TOO_MANY_REQUESTS = 429
FOREIGN_REPLIES_BEFORE_HOLD = 3
NOT_INFINITI = "not an Infiniti import reply"


class Outcome(Enum):
    PROCESSED = "processed"
    FAILED = "failed"
    HELD = "held"  # inbox paused until the config or server is fixed
    RETRY = "retry"  # passing fault; the file waits, claimed
    NOT_READY = "not ready"  # changed or busy; settle again
    GUARDED = "guarded"  # far fewer rows than last time: in held/ until approved


@dataclass(frozen=True)
class FileReport:
    """What happened to one file, for people (demo, once) and tests."""

    inbox: str
    original: str
    outcome: Outcome
    summary: str
    archived: Path | None = None

    @property
    def result_file(self) -> Path | None:
        return archive_names.result_path(self.archived) if self.archived else None


def judge(reply: Reply) -> tuple[Outcome, str]:
    """The outcome a reply calls for, with the reason or summary to show."""
    if reply.status in HOLD_STATUSES:
        return Outcome.HELD, f"HTTP {reply.status}: {HOLD_STATUSES[reply.status]} ({reply.summary})"
    if reply.success is None:
        why = f": {reply.problem}" if reply.problem else ""  # e.g. "JSON nested too deep to read"
        return Outcome.RETRY, f"HTTP {reply.status}: {reply.summary} ({NOT_INFINITI}{why})"
    # A 5xx is the server's fault even with an Infiniti-shaped body: the file
    # must not land in failed/ for it, so it waits and is retried.
    if reply.status == TOO_MANY_REQUESTS or reply.status >= 500:
        return Outcome.RETRY, reply.summary
    return (Outcome.PROCESSED if reply.success else Outcome.FAILED), reply.summary


def is_foreign(reply: Reply) -> bool:
    """A reply with no verdict that is not a server fault: something other than Infiniti's
    import answered (or Infiniti's answer was unreadable). Counted towards a hold."""
    return reply.success is None and reply.status != TOO_MANY_REQUESTS and reply.status < 500


def foreign_hold_reason(reason: str) -> str:
    return (
        f"{reason}, {FOREIGN_REPLIES_BEFORE_HOLD} times in a row: the file may have been imported, "
        "but the reply does not say; check that 'url' is the import address (…/api/import/users) "
        "and that no proxy or login page answers in Infiniti's place"
    )
