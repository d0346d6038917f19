"""The pipeline with what it needs around it: journal, status.json, email notifier, report pages.

``run``, ``once``, ``demo`` and every service host (Windows, systemd, launchd)
open the pipeline through a ``Session``, so they cannot drift apart. Its start
and its shutdown order are written here and nowhere else:

start
    1. the passwords are read (``config.resolve_secrets``): everything in a session may send
    2. the journal opens
    3. the notifier and the report pages, which read the journal, hear every report
    4. the pipeline

shutdown (``Session.run`` then ``Session.close``); signal handlers
(``shutdown.stop_on_signals``) and service adapters (the Windows SCM's SvcStop,
launchd's and systemd's SIGTERM) only set the stop flag:
    1. the pipeline's workers are woken and its observers stopped; each worker is
       joined within its inbox's ``stop_timeout`` (an upload still running then is
       abandoned: its file stays in sending/ and is sent again at the next start);
       status.json says "stopped" (``Pipeline.run`` returns)
    2. the host's monitor (sd_notify STOPPING, the SCM's status) ends
    3. the notifier sends what is pending (it reads the journal)
    4. the report pages are written a last time
    5. the journal closes
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

from dropbox_sync import paths
from dropbox_sync.config import Config, resolve_secrets

Monitor = Callable[[object, threading.Event], None]  # (pipeline, stop): tells a service host how we are


class Session:
    """One pipeline and its companions, started in order; ``close`` stops them in order."""

    def __init__(
        self, cfg: Config, *, pipeline_factory: Callable[..., object] | None = None, once: bool = False
    ) -> None:
        from dropbox_sync.pipeline.runner import Pipeline
        from dropbox_sync.report import page
        from dropbox_sync.state.journal import Journal

        cfg = resolve_secrets(cfg)
        state_dir = cfg.state_dir or paths.state_dir()
        self.journal = Journal(state_dir / paths.JOURNAL_FILE)
        self.notifier = self.pages = None
        self._closed = False
        try:
            if getattr(cfg, "notify", None) is not None:
                # Only a config with [notify] imports the notifier (smtplib, email): start-up of `once`.
                from dropbox_sync.notify import notifier

                self.notifier = notifier.from_config(cfg, journal=self.journal, state_dir=state_dir)
            # ``once``: pages written at its end, and during a long run (page.ONCE_RENDER_EVERY).
            every = page.ONCE_RENDER_EVERY if once else page.RENDER_EVERY
            self.pages = page.from_config(cfg, journal=self.journal, render_every=every)
            listeners = [hears.on_report for hears in (self.notifier, self.pages) if hears is not None]
            self.pipeline = (pipeline_factory or Pipeline)(
                cfg, journal=self.journal, state_dir=state_dir, listeners=listeners
            )
            if self.pages is not None:
                self.pages.start(self.pipeline, at_once=not once)
        except BaseException:
            self.close()
            raise

    def run(self, stop: threading.Event, *, monitor: Monitor | None = None) -> None:
        """Watch and send until ``stop`` is set (shutdown steps 1 and 2); then ``close``."""
        watch = None
        if monitor is not None:
            watch = threading.Thread(target=monitor, args=(self.pipeline, stop), name="service-monitor")
            watch.start()
        try:
            self.pipeline.run(stop)
        finally:
            stop.set()  # the monitor ends with the pipeline, whatever ended it
            if watch is not None:
                watch.join()

    def close(self) -> None:
        """Shutdown steps 3 to 5; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.notifier is not None:
                self.notifier.stop()
            if self.pages is not None:
                self.pages.stop()
        finally:
            self.journal.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@contextlib.contextmanager
def pipeline_session(
    cfg: Config, *, pipeline_factory: Callable[..., object] | None = None, once: bool = False
) -> Iterator[object]:
    """The pipeline of a ``Session``, closed in order on the way out (for ``once`` and tests)."""
    with Session(cfg, pipeline_factory=pipeline_factory, once=once) as session:
        yield session.pipeline
