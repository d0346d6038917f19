"""The pipeline with what it needs around it: journal, status.json, email notifier, report pages.

``run``, ``once`` and every service host (Windows, systemd, launchd) open
the pipeline through ``pipeline_session`` so they cannot drift apart: the
notifier and the report pages hear every report, and are stopped (sending
what is pending, writing each page's final state) before the journal they
read is closed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from dropbox_sync import paths
from dropbox_sync.config import Config, resolve_secrets


@contextlib.contextmanager
def pipeline_session(cfg: Config, *, pipeline_factory: Callable[..., object] | None = None) -> Iterator[object]:
    from dropbox_sync import notify, report
    from dropbox_sync.journal import Journal
    from dropbox_sync.pipeline import Pipeline

    cfg = resolve_secrets(cfg)  # everything in a session may send: the passwords are read first
    state_dir = cfg.state_dir or paths.state_dir()
    journal = Journal(state_dir / paths.JOURNAL_FILE)
    notifier = pages = None
    try:
        notifier = notify.from_config(cfg, journal=journal, state_dir=state_dir)
        pages = report.from_config(cfg, journal=journal)
        listeners = [hears.on_report for hears in (notifier, pages) if hears is not None]
        pipeline = (pipeline_factory or Pipeline)(cfg, journal=journal, state_dir=state_dir, listeners=listeners)
        if pages is not None:
            pages.start(pipeline)
        yield pipeline
    finally:
        if notifier is not None:
            notifier.stop()
        if pages is not None:
            pages.stop()
        journal.close()
