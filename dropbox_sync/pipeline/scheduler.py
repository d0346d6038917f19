"""The contract between an inbox's scheduler (``worker.InboxWorker``) and the transaction of
each of its files (``transaction.FileTransaction``): what a transaction reads and changes of
its inbox, and the scheduler's answers to what an attempt means for the inbox.

The scheduler owns the order of files, why each one waits, the retry and hold state, the
health deadline, history (the journal) and reports; the transaction owns one file's way
from the inbox to its archive folder, the HTTP client and the roster's lessons.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from dropbox_sync.config import InboxConfig
from dropbox_sync.pipeline.backoff import RetryState
from dropbox_sync.pipeline.client import ImportClient
from dropbox_sync.pipeline.health import Health
from dropbox_sync.pipeline.outcome import FileReport, Outcome
from dropbox_sync.pipeline.retention import Retention
from dropbox_sync.pipeline.settle import Clock, Observation, Settler
from dropbox_sync.pipeline.writers import Aftercare, WriterGate
from dropbox_sync.roster.memory import Roster
from dropbox_sync.state.journal import Attempt, Journal


class Scheduler(Protocol):
    """What a file's transaction needs of its inbox's scheduler (``worker.InboxWorker``):
    the inbox's parts, why each file waits, the retry count, and what an attempt means for
    the inbox (settled yet? a hold, a retry, a local fault, all clear), history and reports."""

    inbox: InboxConfig
    journal: Journal | None
    roster: Roster | None
    clock: Clock
    wall: Callable[[], dt.datetime]
    client_factory: Callable[[InboxConfig], ImportClient]
    settler: Settler
    gate: WriterGate
    aftercare: Aftercare
    waiting: dict[str, str]  # file name -> why it is not sent yet (the scheduler may replace it)
    retry: RetryState
    held_locally: bool
    retention: Retention
    health: Health

    def settled(self, key: Any, path: Path, observation: Observation, *, probe: bool = True) -> bool: ...
    def hold(
        self, claimed: Path, original: str, started: dt.datetime, reason: str, status: int | None, facts: dict[str, Any]
    ) -> Outcome: ...
    def transient(
        self,
        claimed: Path,
        original: str,
        started: dt.datetime,
        reason: str,
        status: int | None,
        retry_after: float | None,
        read_timeout: bool,
        facts: dict[str, Any],
        *,
        foreign: bool = False,
    ) -> Outcome: ...
    def local_hold(self, reason: str) -> Outcome: ...
    def clear_retry(self) -> None: ...
    def report(self, report: FileReport) -> None: ...
    def journal_attempt(self, attempt: Attempt, *, unless_there: bool = False) -> None: ...
