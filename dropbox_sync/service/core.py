"""The one service entry point every host shares: systemd, launchd and the Windows SCM.

``run_service`` loads the config, starts daily file logging in the site log
dir, opens the journal and runs the pipeline until the stop event is set. A
host (adapter) only sets that event (DESIGN §7.3: signal handlers and service
adapters set a flag; ``session.Session`` owns the shutdown order) and hears about the
run through a ``Reporter``: ``ready`` once every observer runs, ``tick`` at a
steady pace (status text, watchdog pings), ``stopping`` as soon as a stop is
requested, ``failed`` when the run cannot start.

Paths are absolute throughout: a Windows service starts in System32 and a
launchd job in /, so nothing here may depend on the working directory
(DESIGN §8.10).
"""

from __future__ import annotations

import io
import math
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from loguru import logger

from dropbox_sync import log

STOP_MARGIN = 15.0  # past stop_timeout: the last email (notify.FLUSH_BUDGET), then the journal and logs
READY_POLL = 0.1  # how often the monitor looks for "observers running" while starting
TICK_SECONDS = 10.0  # status refresh when no watchdog asks for faster


class Reporter:
    """What a host wants to hear about the run; every hook is optional."""

    tick_seconds: float = TICK_SECONDS

    def starting(self, config) -> None:  # the config is loaded; the stop budget is known
        pass

    def ready(self, pipeline) -> None:  # every observer runs
        pass

    def tick(self, pipeline, healthy: bool) -> None:  # every tick_seconds while running
        pass

    def stopping(self) -> None:  # a stop was requested; the drain begins
        pass

    def failed(self, error: BaseException) -> None:  # the run could not start or broke
        pass


class DiscardStream(io.TextIOBase):
    """A console for hosts that have none (pythonservice.exe, launchd with logs in files).

    Under a Windows service ``sys.stderr`` is None; log.py tolerates a broken
    console but not a missing one, so hosts pass this instead.
    """

    def write(self, text: str) -> int:
        return len(text)

    def isatty(self) -> bool:
        return False


def console_for_host() -> TextIO:
    """stderr when the process has one, else a sink that drops the text."""
    stream = sys.stderr
    if stream is None or getattr(stream, "closed", False):
        return DiscardStream()
    return stream


def stop_budget(config) -> float:
    """Seconds a host must allow for a stop: the longest stop_timeout plus a margin."""
    longest = max((inbox.stop_timeout for inbox in config.inboxes), default=0.0)
    return float(math.ceil(longest + STOP_MARGIN))


def status_line(snapshots: Sequence, healthy: bool = True) -> str:
    """One line for systemctl status / logs, e.g. "2 inboxes, 0 held, 3 waiting"."""
    count = len(snapshots)
    held = sum(1 for s in snapshots if s.held)
    waiting = sum(len(s.waiting) for s in snapshots)
    parts = [f"{count} inbox{'es' if count != 1 else ''}", f"{held} held", f"{waiting} waiting"]
    sending = [s.uploading for s in snapshots if s.uploading]
    if sending:
        parts.append("sending " + ", ".join(sending))
    missing = [s.name for s in snapshots if s.folder_missing]
    if missing:
        parts.append("folder missing: " + ", ".join(missing))
    line = ", ".join(parts)
    return line if healthy else line + " - NOT HEALTHY (an inbox worker is stuck or dead)"


def start_logging(config, *, verbose: bool = False, console: TextIO | None = None) -> Path:
    """Daily log files in the configured or site log dir; returns that dir."""
    return log.setup_from_config(config, verbose=verbose, console=console)


def run_service(
    config_path: Path,
    stop: threading.Event,
    *,
    reporter: Reporter | None = None,
    console: TextIO | None = None,
    verbose: bool = False,
    pipeline_factory: Callable[..., object] | None = None,
) -> None:
    """Run every inbox until ``stop`` is set; raise (ConfigError, OSError, ...) if the run cannot start.

    ``stop`` is set on the way out whatever happened, so helper threads end.
    """
    from dropbox_sync import config as config_module
    from dropbox_sync.session import Session

    reporter = reporter or Reporter()
    try:
        cfg = config_module.load(config_path.absolute())
        log_dir = start_logging(cfg, verbose=verbose, console=console)
        reporter.starting(cfg)
        # Opened here so a journal SQLite cannot open is a start failure the host hears about.
        session = Session(cfg, pipeline_factory=pipeline_factory)
    except Exception as exc:  # config, permissions, the journal: the host must hear why
        reporter.failed(exc)
        raise
    logger.info("service starting: config {}, logs in {}", config_path, log_dir)
    try:
        # The shutdown order is the session's (session.py); the host's adapter only sets ``stop``.
        session.run(stop, monitor=lambda pipeline, flag: _monitor(pipeline, flag, reporter))
    except Exception as exc:
        logger.exception("the service stopped on an unexpected error")
        reporter.failed(exc)
        raise
    finally:
        stop.set()
        session.close()
    logger.info("service stopped")


def _monitor(pipeline, stop: threading.Event, reporter: Reporter) -> None:
    """Tell the host when the pipeline is ready, then tick until stop; never raises."""
    try:
        while not stop.is_set():
            if pipeline.ready.wait(READY_POLL):
                reporter.ready(pipeline)
                break
        was_healthy = True
        while not stop.wait(reporter.tick_seconds):
            healthy = pipeline.healthy()
            if healthy != was_healthy:
                (logger.info if healthy else logger.error)("health: {}", status_line(pipeline.snapshots(), healthy))
                was_healthy = healthy
            reporter.tick(pipeline, healthy)
        reporter.stopping()
    except Exception:  # noqa: BLE001 - a reporting fault must not take the service down
        logger.exception("service monitor failed; the service keeps running without status reports")
