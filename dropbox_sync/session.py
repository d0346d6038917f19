"""The pipeline with what it needs around it: journal, status.json, email notifier.

``run``, ``once`` and every service host (Windows, systemd, launchd) open
the pipeline through ``pipeline_session`` so they cannot drift apart: the
notifier hears every report and is stopped (sending what is pending) before
the journal it reads is closed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from dropbox_sync import paths
from dropbox_sync.config import Config


@contextlib.contextmanager
def pipeline_session(cfg: Config, *, pipeline_factory: Callable[..., object] | None = None) -> Iterator[object]:
    from dropbox_sync import notify
    from dropbox_sync.journal import Journal
    from dropbox_sync.pipeline import Pipeline

    state_dir = cfg.state_dir or paths.state_dir()
    journal = Journal(state_dir / "journal.sqlite3")
    notifier = None
    try:
        notifier = notify.from_config(cfg, journal=journal, state_dir=state_dir)
        listeners = [notifier.on_report] if notifier is not None else []
        yield (pipeline_factory or Pipeline)(cfg, journal=journal, state_dir=state_dir, listeners=listeners)
    finally:
        if notifier is not None:
            notifier.stop()
        journal.close()
