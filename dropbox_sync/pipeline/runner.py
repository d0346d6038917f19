"""The whole job: every inbox of a config, in one process.

``Pipeline.run`` keeps a worker thread per inbox (``worker.py``) cycling
until the stop event is set, with watchdog observers waking them early and a
supervisor rebuilding dead observers; ``Pipeline.once`` cycles each inbox
until every file present has been dealt with (scheduled-task mode).

An inbox is worked only under its lock (``inboxlock.py``): an inbox another
process works is left alone, with that process named (``once`` gives up on it,
``run`` looks again every few seconds and takes over when it is free).

Health (systemd's watchdog pings only while ``healthy()``): a worker waiting
for its own next pass (a hold waits ``hold_retry_seconds``, a retry up to
``retry_max_seconds``) is not stuck; it is stuck only when it is later than
``WAKE_GRACE`` for that pass, or silent in a pass for longer than
``InboxWorker.wedged`` allows.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from loguru import logger

from dropbox_sync import paths
from dropbox_sync.config import Config
from dropbox_sync.pipeline.discover import FirstLook
from dropbox_sync.pipeline.health import InboxSnapshot
from dropbox_sync.pipeline.inboxlock import InboxLock
from dropbox_sync.pipeline.outcome import FileReport, Outcome
from dropbox_sync.pipeline.watcher import Watcher
from dropbox_sync.pipeline.worker import MISSING_FOLDER_RECHECK, InboxWorker
from dropbox_sync.roster.memory import Roster
from dropbox_sync.state import status
from dropbox_sync.state.journal import Journal

__all__ = ["FileReport", "InboxSnapshot", "InboxWorker", "OnceResult", "Outcome", "Pipeline"]

SUPERVISE_EVERY = 5.0
LOCK_RECHECK = 5.0  # seconds between looks at an inbox another process works
WAKE_GRACE = 60.0  # seconds a worker may be late for its own next pass before it counts as stuck


@dataclass(frozen=True)
class OnceResult:
    reports: list[FileReport]
    held: dict[str, str]  # inbox -> why it was not worked to the end (files held, folder missing)

    @property
    def failed(self) -> list[FileReport]:
        return [r for r in self.reports if r.outcome is Outcome.FAILED]


class Pipeline:
    """Every inbox of a config, in one process."""

    def __init__(
        self,
        config: Config,
        *,
        journal: Journal | None = None,
        state_dir: Path | None = None,
        listeners: list[Callable[[FileReport], None]] | None = None,
        worker_factory: Callable[..., InboxWorker] = InboxWorker,
    ) -> None:
        self.config = config
        roster = Roster(state_dir / paths.ROSTER_FILE) if state_dir is not None else None
        self.workers = [
            worker_factory(inbox, journal=journal, listeners=list(listeners or []), roster=roster)
            for inbox in config.inboxes
        ]
        self.ready = threading.Event()  # set once every observer runs (for sd_notify READY)
        self.state_dir = state_dir
        # What the process is doing, in words the report pages use:
        # starting, watching, stopped (run) or checking, checked (once).
        self.activity = "starting"
        self._threads: list[threading.Thread] = []
        self._locks = {w.name: InboxLock(state_dir, w.name, w.inbox.path) for w in self.workers} if state_dir else {}
        self._elsewhere: dict[str, str] = {}  # inbox -> who else works it, while they do
        self._wake_at: dict[str, float] = {}  # inbox -> when its worker, now waiting, means to look again

    def write_status(self, mode: str) -> None:
        """Rewrite status.json (for ``status`` and monitoring); never fatal."""
        if self.state_dir is None:
            return
        if self._locks and self._elsewhere.keys() >= self._locks.keys():
            return  # another process works every inbox: its status.json is the one that counts
        try:
            status.write_status_file(self.state_dir, self.snapshots(), mode=mode)
        except Exception as exc:  # noqa: BLE001 - a status file must never stop the service
            logger.warning("cannot write {}: {}", self.state_dir / paths.STATUS_FILE, exc)

    def snapshots(self) -> list[InboxSnapshot]:
        snapshots = []
        for worker in self.workers:
            snapshot = worker.snapshot()
            elsewhere = self._elsewhere.get(worker.name)
            snapshots.append(dataclasses.replace(snapshot, held=elsewhere) if elsewhere else snapshot)
        return snapshots

    def healthy(self) -> bool:
        """Every inbox worker is alive and showing signs of life (drives systemd's watchdog)."""
        if not self.ready.is_set():
            return False
        alive = all(t.is_alive() for t in self._threads)
        return alive and not any(self._stuck(w) for w in self.workers)

    def sleeping(self, worker: InboxWorker) -> bool:
        """The worker is between passes, waiting for its next one."""
        return worker.name in self._wake_at

    def _stuck(self, worker: InboxWorker) -> bool:
        wake_at = self._wake_at.get(worker.name)
        if wake_at is None:  # in a pass: the worker's own rule (signs of life, upload time)
            return worker.wedged()
        return worker.clock() > wake_at + WAKE_GRACE

    def _owns(self, worker: InboxWorker) -> bool:
        """Hold the inbox's lock, taking it if free; log once when another process holds it."""
        lock = self._locks.get(worker.name)
        if lock is None or lock.held:
            return True
        try:
            acquired = lock.acquire()
        except OSError as exc:  # the state dir is not writable: work as before locks, and say so
            logger.warning(
                'inbox "{}": cannot take its lock {} ({}); working it without one',
                worker.name,
                lock.path,
                exc.strerror or exc,
            )
            self._locks.pop(worker.name)
            return True
        if acquired:
            if self._elsewhere.pop(worker.name, None) is not None:
                logger.info('inbox "{}": the other dropbox-sync process has let go of it; working it now', worker.name)
            return True
        holder = lock.holder()
        reason = (
            f"another dropbox-sync process works this inbox ({holder.describe() if holder else 'unknown'}); "
            "left alone until it stops"
        )
        if self._elsewhere.get(worker.name) != reason:
            logger.warning('inbox "{}": {}', worker.name, reason)
        self._elsewhere[worker.name] = reason
        return False

    def _let_go(self, worker: InboxWorker) -> None:
        worker.close()
        lock = self._locks.get(worker.name)
        if lock is not None:
            lock.release()

    def run(self, stop: threading.Event) -> None:
        """Watch and send until ``stop`` is set; then stop within stop_timeout."""
        by_name = {w.name: w for w in self.workers}
        watcher = Watcher(
            self.config.inboxes,
            lambda name: by_name[name].wake.set(),
            lambda name, event: by_name[name].writes.notice(event),
        )
        watcher.start()
        threads = [
            threading.Thread(target=self._loop, args=(w, stop), name=f"inbox-{w.name}", daemon=True)
            for w in self.workers
        ]
        self._threads = threads
        for thread in threads:
            thread.start()
        for worker in self.workers:
            logger.info(
                'inbox "{}": watching {} ({} observer) -> {}',
                worker.name,
                worker.inbox.path,
                watcher.kind(worker.name),
                worker.inbox.safe_url,
            )
        self.activity = "watching"
        self.ready.set()
        self.write_status("run")
        try:
            while not stop.wait(SUPERVISE_EVERY):
                watcher.supervise()
                self.write_status("run")
        finally:
            for worker in self.workers:
                worker.wake.set()
            watcher.stop()
            self._join(threads)

    def _loop(self, worker: InboxWorker, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                self._wake_at.pop(worker.name, None)
                if not self._owns(worker):
                    delay = LOCK_RECHECK
                else:
                    try:
                        delay = worker.cycle(stop)
                    except Exception:  # noqa: BLE001 - one bad pass must not end the watch
                        logger.exception('inbox "{}": unexpected error; carrying on', worker.name)
                        delay = MISSING_FOLDER_RECHECK
                worker.reports.clear()  # only `once` reads them; a service runs for months
                self._wake_at[worker.name] = worker.clock() + delay
                worker.wake.wait(delay)
                worker.wake.clear()
        finally:
            self._let_go(worker)

    def _join(self, threads: list[threading.Thread]) -> None:
        deadline = time.monotonic() + max((w.inbox.stop_timeout for w in self.workers), default=0)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                logger.warning(
                    "{}: upload still running at stop; abandoned. The file stays in sending/ "
                    "and is sent again at the next start.",
                    thread.name,
                )
        self.activity = "stopped"
        self.write_status("stopped")

    def once(self, stop: threading.Event, *, look: FirstLook | None = None) -> OnceResult:
        """Deal with every file now in the inboxes, then return (scheduled-task mode).
        ``look``: the inboxes as the process found them at its start (``discover.FirstLook``)."""
        held: dict[str, str] = {}
        for worker in self.workers:
            seen = look.of(worker.name) if look is not None else None
            if seen is not None:
                worker.seen_before(seen[1], seen[0])
        self.activity = "checking"
        threads = [
            threading.Thread(target=self._once_inbox, args=(w, stop, held), name=f"once-{w.name}") for w in self.workers
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.activity = "checked"
        self.write_status("once")
        return OnceResult([r for w in self.workers for r in w.reports], held)

    def _once_inbox(self, worker: InboxWorker, stop: threading.Event, held: dict[str, str]) -> None:
        """Cycle until nothing is left; a hold ends at once, retries end after once_retry_seconds."""
        inbox = worker.inbox
        patience = inbox.settle_seconds + inbox.once_retry_seconds
        last_progress = worker.clock()
        done = 0
        try:
            if not self._owns(worker):
                held[worker.name] = self._elsewhere[worker.name]
                return
            while not stop.is_set():
                try:
                    delay = worker.cycle(stop)
                    wake_at = worker.clock() + delay  # the checks below take time of their own
                except Exception as exc:  # noqa: BLE001 - report it like any other stuck inbox
                    logger.exception('inbox "{}": unexpected error', worker.name)
                    held[worker.name] = f"unexpected error: {exc}"
                    return
                if worker.snapshot().folder_missing:  # already logged by the worker; nothing to wait for
                    held[worker.name] = (
                        f"folder {inbox.path} is missing (share not mounted, or not made yet); "
                        "its files, if any, were not sent"
                    )
                    return
                if len(worker.reports) != done:
                    done = len(worker.reports)
                    last_progress = worker.clock()
                if worker.hold_reason is not None:
                    held[worker.name] = worker.hold_reason
                    return
                if not worker.has_work():
                    return
                retrying = worker.retry.since is not None
                started = worker.retry.since if retrying else last_progress
                remaining = started + patience - worker.clock()
                if remaining < 0:
                    reasons = sorted(set(worker.waiting.values())) or ["files did not settle"]
                    held[worker.name] = "; ".join(reasons)
                    return
                # What the first upload needs, made while the files settle.
                worker.warm_up()
                # No observer in this mode: look again when the soonest file
                # could have settled, but never past the patience deadline.
                stop.wait(max(0.0, min(wake_at - worker.clock(), remaining + 0.01)))
        finally:
            self._let_go(worker)
