"""The configuration as frozen typed objects: ``Config``, its inboxes (``InboxConfig``), their ``Route`` list.

Made only by ``parser.parse`` (then ``config.check_files`` and
``config.resolve_secrets`` return changed copies); the rest of the program
trusts them and never looks at raw TOML.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path

from dropbox_sync.config import mapping, policy
from dropbox_sync.config.notify_settings import NotifySettings
from dropbox_sync.credentials import PasswordSource
from dropbox_sync.redact import Secret, redact_url


@dataclass(frozen=True)
class Route:
    """Files whose name matches ``patterns`` go to ``url``."""

    patterns: tuple[str, ...]
    url: str  # without user:password@
    # [inbox.columns]/[inbox.values.X], or the route's own: None = upload the file as it is
    mapping: mapping.ColumnMapping | None = None
    # delta, full_sync_days, leavers, leaver_values, change_guard: the inbox's, or the route's own
    policy: policy.RosterPolicy = policy.DEFAULT

    @functools.cached_property  # asked several times per file; a frozen object's stays true
    def safe_url(self) -> str:
        return redact_url(self.url)


@dataclass(frozen=True)
class InboxConfig:
    name: str
    path: Path
    url: str  # the first route's URL, without user:password@
    username: str
    password_source: PasswordSource = dataclasses.field(repr=False)
    ca_bundle: Path | None
    verify_tls: bool
    proxy: str | None  # None: HTTPS_PROXY/NO_PROXY from the environment (httpx trust_env)
    settle_seconds: float
    include: tuple[str, ...]
    exclude: tuple[str, ...]
    done_marker: str  # suffix such as ".done"; "" = settle by size and mtime only
    rescan_seconds: float
    observer: str
    poll_seconds: float
    timeout: float
    connect_timeout: float
    max_file_size: int
    once_retry_seconds: float
    hold_retry_seconds: float
    retry_first_seconds: float
    retry_max_seconds: float
    stop_timeout: float
    keep_days: float
    # In the order they are sent within a batch; one catch-all route when the
    # inbox has a plain 'url' and no [[inbox.route]] tables.
    routes: tuple[Route, ...] = ()
    shrink_guard: float = 0.0  # 0 = off; else hold a file with fewer rows than this share of the last
    source_encoding: str = ""  # "" = the file is UTF-8 already
    report: str = "report.html"  # the page for people in the inbox (report.py); "" = none
    report_imports: int = 50  # imports the page lists, newest first
    password: Secret | None = dataclasses.field(default=None, repr=False)  # set by resolve_secrets

    @functools.cached_property  # asked several times per file; a frozen object's stays true
    def safe_url(self) -> str:
        return redact_url(self.url)


@dataclass(frozen=True)
class Config:
    source: Path | None
    inboxes: tuple[InboxConfig, ...]
    state_dir: Path | None  # None = the platform's site state dir
    log_dir: Path | None
    log_level: str
    log_format: str
    notify: NotifySettings | None = None  # [notify]: email on failures (notify.py)
    warnings: tuple[str, ...] = ()  # found by parse, logged by load: a config that works but is risky
