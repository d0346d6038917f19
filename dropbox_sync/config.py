"""Reading and validating config.toml, once, into frozen typed objects.

Every mistake becomes one ``ConfigError`` line that names the file and the key
(``config.toml: inbox "students": settle_seconds must be a number``), so a
technician can fix it without reading a traceback. The rest of the program
trusts these objects and never looks at raw TOML.

Three steps, so that reading a config never needs the password:

- ``parse``: the TOML document to frozen objects. Pure: no file is opened, no
  password read, nothing registered or logged (``$VARS`` in paths are
  expanded: they are part of how a path is written). A password is kept as
  its source (``credentials.PasswordSource``).
- ``load``: ``read_toml`` (the one reader of config.toml, for every caller)
  + ``parse`` + what needs the disk: paths resolved, ``ca_bundle`` present,
  and the warnings (an inline password in a file others can read, verify_tls off).
- ``resolve_secrets``: reads every password (environment, file, keyring),
  registers it with the scrubber and raises ``ConfigError`` naming the key.
  Only the commands that send call it (run, once, send, check --online,
  service run, demo); ``status``, ``check``, ``retry``, ``approve`` and
  ``service status`` work without the password.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import stat
import tomllib
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loguru import logger

from dropbox_sync import archive, credentials, mapping, policy
from dropbox_sync.credentials import ENV, FILE, INLINE, KEYRING, PasswordSource, is_loopback
from dropbox_sync.errors import ConfigError, TemplateError
from dropbox_sync.notify_settings import NotifySettings, parse_settings, resolve_settings
from dropbox_sync.paths import BACKSLASH_HINT, path_value
from dropbox_sync.redact import Secret, redact_url

OBSERVER_KINDS = ("auto", "native", "polling")
MAX_REPORT_IMPORTS = 1000  # keeps report.html small enough for any browser and share
# No folders, no dot-name (our temporaries), nothing Windows forbids or reads as a stream (":").
_REPORT_NAME = re.compile(r'[^./\\:*?"<>|\x00-\x1f][^/\\:*?"<>|\x00-\x1f]*\.html?', re.IGNORECASE)
LOG_FORMATS = ("text", "json")


@dataclass(frozen=True)
class Route:
    """Files whose name matches ``patterns`` go to ``url``."""

    patterns: tuple[str, ...]
    url: str  # without user:password@
    # [inbox.columns]/[inbox.values.X], or the route's own: None = upload the file as it is
    mapping: mapping.ColumnMapping | None = None
    # delta, full_sync_days, leavers, leaver_values, change_guard: the inbox's, or the route's own
    policy: policy.RosterPolicy = policy.DEFAULT

    @property
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

    @property
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


# Keys an [[inbox]] (or [defaults]) may hold, with their defaults. None means
# "required, or derived" and is checked by hand below.
INBOX_DEFAULTS: dict[str, Any] = {
    "name": None,
    "path": None,
    "url": None,
    "username": None,
    "password": None,
    "password_env": None,
    "password_file": None,
    "password_keyring": False,
    "ca_bundle": "",
    "verify_tls": True,
    "proxy": "",
    "settle_seconds": 5.0,
    "include": ["*.csv"],
    "exclude": ["~$*", "*.tmp", "*.part", ".*"],
    "done_marker": "",
    "rescan_seconds": 60.0,
    "observer": "auto",
    "poll_seconds": 2.0,
    "timeout": 600.0,
    "connect_timeout": 15.0,
    "max_file_size": "512MB",
    "once_retry_seconds": 60.0,
    "hold_retry_seconds": 300.0,
    "retry_first_seconds": 1.0,
    "retry_max_seconds": 300.0,
    "stop_timeout": 20.0,
    "keep_days": 0.0,
    "route": None,
    "shrink_guard": 0.0,
    "source_encoding": "",
    "columns": None,
    "values": None,
    "report": "report.html",
    "report_imports": 50,
    **policy.DEFAULTS,
}
ROUTE_KEYS = {"match", "url", "columns", "values", *policy.KEYS}
TOP_LEVEL_KEYS = {"defaults", "inbox", "state_dir", "log_dir", "log_level", "log_format", "notify"}
LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4}


def load(path: Path) -> Config:
    """Read, parse and validate the config file at ``path``; passwords are not read (``resolve_secrets``)."""
    return check_files(parse(read_toml(path), source=path, base_dir=_resolved(path.absolute()).parent))


def read_toml(path: Path) -> dict[str, Any]:
    """The raw TOML document: the one reader of config.toml (``load``, and the service
    installer, which needs a few keys of a config that may not load yet: service/plan.py)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found (create one with 'dropbox-sync init')") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path.name}: not valid TOML: {exc}{_backslash_hint(text, str(exc))}") from None


_TOML_LINE = re.compile(r"\(at line (\d+), column \d+\)")
_BACKSLASH_IN_QUOTES = re.compile(r'"[^"\n]*\\')


def _backslash_hint(text: str, error: str) -> str:
    """When the line tomllib refused has a backslash inside double quotes: a Windows path."""
    found = _TOML_LINE.search(error)
    lines = text.splitlines()
    if found is None or not 0 < int(found.group(1)) <= len(lines):
        return ""
    if not _BACKSLASH_IN_QUOTES.search(lines[int(found.group(1)) - 1]):
        return ""
    return f". A Windows path? {BACKSLASH_HINT[0].upper()}{BACKSLASH_HINT[1:]}"


def parse(raw: Mapping[str, Any], *, source: Path | None = None, base_dir: Path | None = None) -> Config:
    """Validate an already parsed TOML document (``source`` names it in errors; relative
    paths are taken from ``base_dir``, by default the folder of ``source``). Pure: see above."""
    where = _where(source)
    if base_dir is None:
        base_dir = Path(os.path.abspath(source)).parent if source else Path.cwd()
    warnings: list[str] = []
    _reject_unknown(raw, TOP_LEVEL_KEYS, where)
    defaults = raw.get("defaults", {})
    if not isinstance(defaults, dict):
        raise ConfigError(f"{where}: [defaults] must be a table")
    _reject_unknown(defaults, INBOX_DEFAULTS, f"{where}: [defaults]")
    tables = raw.get("inbox", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ConfigError(f"{where}: 'inbox' must be [[inbox]] tables")
    if not tables:
        raise ConfigError(f"{where}: no [[inbox]] table: nothing to watch")
    inboxes = tuple(
        _inbox({**INBOX_DEFAULTS, **defaults, **table}, table, index, where, base_dir, warnings)
        for index, table in enumerate(tables, start=1)
    )
    _reject_duplicates(inboxes, where)
    log_level = str(raw.get("log_level", "INFO")).upper()
    if log_level not in LOG_LEVELS:
        raise ConfigError(f"{where}: log_level must be one of {', '.join(LOG_LEVELS)}")
    log_format = raw.get("log_format", "text")
    if log_format not in LOG_FORMATS:
        raise ConfigError(f"{where}: log_format must be one of {', '.join(LOG_FORMATS)}")
    notify = parse_settings(raw.get("notify"), where, base_dir)
    return Config(
        source=source,
        inboxes=inboxes,
        state_dir=_optional_dir(raw, "state_dir", where, base_dir),
        log_dir=_optional_dir(raw, "log_dir", where, base_dir),
        log_level=log_level,
        log_format=log_format,
        notify=notify,
        warnings=tuple(warnings),
    )


def check_files(cfg: Config) -> Config:
    """What ``parse`` leaves to the disk: paths resolved (symlinks, a share that does not
    answer kept as written), a ``ca_bundle`` that exists, an inbox path that is no file;
    then the warnings said at every start."""
    where = _where(cfg.source)
    inboxes = []
    for inbox in cfg.inboxes:
        label = f'{where}: inbox "{inbox.name}"'
        path = _resolved(inbox.path)
        # The form only: a missing folder is an unmounted share or a folder not made yet; the
        # worker waits for it (and `status`, `once`, `check` say so), the other inboxes go on.
        if path.is_file():
            raise ConfigError(f"{label}: path is a file, not a folder: {path}")
        inboxes.append(dataclasses.replace(inbox, path=path, ca_bundle=_existing(inbox.ca_bundle, label)))
    _reject_duplicates(tuple(inboxes), where)
    notify = cfg.notify
    if notify is not None and notify.server.ca_bundle is not None:
        server = dataclasses.replace(notify.server, ca_bundle=_existing(notify.server.ca_bundle, f"{where}: [notify]"))
        notify = dataclasses.replace(notify, server=server)
    cfg = dataclasses.replace(
        cfg,
        inboxes=tuple(inboxes),
        state_dir=cfg.state_dir and _resolved(cfg.state_dir),
        log_dir=cfg.log_dir and _resolved(cfg.log_dir),
        notify=notify,
    )
    _warn(cfg)
    return cfg


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except OSError:  # a share that does not answer: keep the path as written
        return path


def _existing(ca_bundle: Path | None, label: str) -> Path | None:
    if ca_bundle is None:
        return None
    ca_bundle = _resolved(ca_bundle)
    if not ca_bundle.is_file():
        raise ConfigError(f"{label}: ca_bundle file not found: {ca_bundle}")
    return ca_bundle


def _warn(cfg: Config) -> None:
    """Said at every start, loudly: each is a choice that weakens the protection of the password."""
    for warning in cfg.warnings:
        logger.warning("{}", warning)
    sources = [inbox.password_source for inbox in cfg.inboxes]
    if cfg.notify is not None and cfg.notify.server.password_source is not None:
        sources.append(cfg.notify.server.password_source)
    if cfg.source is not None and any(source.inline for source in sources):
        _warn_if_readable_by_others(cfg.source, _where(cfg.source))


def resolve_secrets(cfg: Config) -> Config:
    """``cfg`` with every password read and registered for scrubbing (ConfigError names the key).

    Only the commands that send call it; calling it again is harmless."""
    inboxes = []
    for inbox in cfg.inboxes:
        if inbox.proxy:
            _register_proxy_password(inbox.proxy)
        inboxes.append(dataclasses.replace(inbox, password=password_of(inbox)))
    notify = resolve_settings(cfg.notify) if cfg.notify is not None else None
    return dataclasses.replace(cfg, inboxes=tuple(inboxes), notify=notify)


def password_of(inbox: InboxConfig) -> Secret:
    """The inbox's password: as resolved by ``resolve_secrets``, else read now (ConfigError names the key)."""
    return inbox.password if inbox.password is not None else credentials.resolve(inbox.password_source)


def _register_proxy_password(proxy: str) -> None:
    password = urllib.parse.urlsplit(proxy).password
    if password:
        Secret(urllib.parse.unquote(password))  # scrubbed from logs from now on


def _where(source: Path | None) -> str:
    return source.name if source else "config"


def _reject_unknown(table: Mapping[str, Any], known: Any, where: str) -> None:
    for key in table:
        if key not in known:
            raise ConfigError(f"{where}: unknown key '{key}'")


def _optional_dir(raw: Mapping[str, Any], key: str, where: str, base_dir: Path) -> Path | None:
    value = raw.get(key, "")
    if not isinstance(value, str):
        raise ConfigError(f"{where}: {key} must be a text path")
    return path_value(value, base_dir, lambda problem: ConfigError(f"{where}: {key} {problem}")) if value else None


# Every wait ends up in a timer or a socket timeout: Windows takes at most ~49 days
# (threading.TIMEOUT_MAX), and inf or 1e300 overflow everywhere. 11.5 days is past any sane
# setting; days (keep_days, full_sync_days) stop at a century (timedelta's range is far above).
MAX_SECONDS = 1_000_000
MAX_DAYS = 36_500


class _Reader:
    """Typed access to one merged inbox table, naming the key on every error."""

    def __init__(self, values: dict[str, Any], where: str, warnings: list[str] | None = None) -> None:
        self.values = values
        self.where = where
        self.warnings = warnings if warnings is not None else []

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.where}: {key} {problem}")

    def text(self, key: str) -> str:
        value = self.values.get(key)
        if not isinstance(value, str):
            raise self.fail(key, "must be text in quotes")
        return value

    def flag(self, key: str) -> bool:
        value = self.values.get(key)
        if not isinstance(value, bool):
            raise self.fail(key, "must be true or false")
        return value

    def seconds(self, key: str, *, minimum: float = 0.0, maximum: float = MAX_SECONDS) -> float:
        value = self.values.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, "must be a number of seconds")
        if math.isnan(value):  # TOML has nan and inf: nan compares false to everything
            raise self.fail(key, "must be a number, not nan")
        if value < minimum:
            raise self.fail(key, f"must be at least {minimum:g}")
        if value > maximum:  # inf included
            raise self.fail(key, f"must be at most {maximum:g}")
        return float(value)

    def patterns(self, key: str) -> tuple[str, ...]:
        value = self.values.get(key)
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.fail(key, 'must be a list of file name patterns, e.g. ["*.csv"]')
        return tuple(value)

    def choice(self, key: str, choices: tuple[str, ...]) -> str:
        value = self.text(key)
        if value not in choices:
            raise self.fail(key, f"must be one of {', '.join(choices)}")
        return value

    def size(self, key: str) -> int:
        value = self.values.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
        match = _SIZE.match(value) if isinstance(value, str) else None
        if not match:
            raise self.fail(key, 'must be a size such as 512MB or a number of bytes')
        unit = (match.group(2) or "").lower().rstrip("b")
        binary = unit.endswith("i")  # KiB, MiB: powers of 1024
        factor = 1024 ** "kmgt".index(unit[0]) * 1024 if binary else _SIZE_UNITS[unit]
        return int(float(match.group(1)) * factor)


def _inbox(values: dict[str, Any], table: Mapping[str, Any], index: int, where: str, base_dir: Path,
           warnings: list[str]) -> InboxConfig:  # fmt: skip
    label = f'inbox "{table["name"]}"' if isinstance(table.get("name"), str) else f"inbox #{index}"
    _reject_unknown(table, INBOX_DEFAULTS, f"{where}: {label}")
    read = _Reader(values, f"{where}: {label}", warnings)
    if values.get("path") is None:
        raise read.fail("path", "is missing (the folder to watch)")
    path = _inbox_path(read, base_dir)
    name = read.text("name") if values.get("name") is not None else path.name
    routes, url_user, url_password = _routes(read)
    url = routes[0].url
    username = _username(read, url_user)
    password_source = credentials.parse_source(read.values, PASSWORD_KEYS, read.where, base_dir,
                                               url_password=url_password, keyring_name=name, username=username)
    if password_source is None:
        raise read.fail("password_env", "is missing: set password_env, password_file or password")
    verify_tls = read.flag("verify_tls")
    for route in routes:
        _check_transport_security(read, route.url, verify_tls)
    ca_bundle_text = read.text("ca_bundle")
    ca_bundle = path_value(ca_bundle_text, base_dir, lambda p: read.fail("ca_bundle", p)) if ca_bundle_text else None
    return InboxConfig(
        name=name,
        path=path,
        url=url,
        username=username,
        password_source=password_source,
        ca_bundle=ca_bundle,  # check_files: present
        verify_tls=verify_tls,
        proxy=_proxy(read),
        settle_seconds=read.seconds("settle_seconds"),
        include=read.patterns("include"),
        exclude=read.patterns("exclude"),
        done_marker=read.text("done_marker"),
        rescan_seconds=read.seconds("rescan_seconds", minimum=1),
        observer=read.choice("observer", OBSERVER_KINDS),
        poll_seconds=read.seconds("poll_seconds", minimum=0.1),
        timeout=read.seconds("timeout", minimum=1),
        connect_timeout=read.seconds("connect_timeout", minimum=1),
        max_file_size=read.size("max_file_size"),
        once_retry_seconds=read.seconds("once_retry_seconds"),
        hold_retry_seconds=read.seconds("hold_retry_seconds", minimum=0.1),
        retry_first_seconds=read.seconds("retry_first_seconds", minimum=0.01),
        retry_max_seconds=read.seconds("retry_max_seconds", minimum=0.1),
        stop_timeout=read.seconds("stop_timeout"),
        keep_days=read.seconds("keep_days", maximum=MAX_DAYS),
        routes=routes,
        shrink_guard=_fraction(read, "shrink_guard"),
        source_encoding=_encoding(read),
        report=_report_name(read),
        report_imports=_count(read, "report_imports", 1, MAX_REPORT_IMPORTS),
    )


def _inbox_path(read: _Reader, base_dir: Path) -> Path:
    text = read.text("path")
    if not text.strip():
        raise read.fail("path", "is empty")
    return path_value(text, base_dir, lambda problem: read.fail("path", problem))  # check_files: not a file


def _routes(read: _Reader) -> tuple[tuple[Route, ...], str | None, str | None]:
    """The inbox's routes, and any credentials found in a URL."""
    tables = read.values.get("route")
    inbox_mapping = _mapping(read, read.values)
    if tables is None:
        if read.values.get("url") is None:
            raise read.fail("url", "is missing (the Infiniti import URL)")
        url, user, password = _split_url(read, read.text("url"), "url")
        return (Route(("*",), url, inbox_mapping, _policy(read, {})),), user, password
    if read.values.get("url") is not None:
        raise read.fail("url", "conflicts with [[inbox.route]]: give each route its own url")
    if not isinstance(tables, list) or not tables or not all(isinstance(t, dict) for t in tables):
        raise read.fail("route", "must be [[inbox.route]] tables with match and url")
    routes, user, password = [], None, None
    for number, table in enumerate(tables, start=1):
        label = f"route #{number}"
        _reject_unknown(table, ROUTE_KEYS, f"{read.where}: {label}")
        for key in ("match", "url"):
            if key not in table:
                raise read.fail(f"{label} {key}", "is missing")
        patterns = _Reader(table, f"{read.where}: {label}").patterns("match")
        url, route_user, route_password = _split_url(read, _Reader(table, read.where).text("url"), f"{label} url")
        user, password = user or route_user, password or route_password
        routes.append(Route(patterns, url, _route_mapping(read, table, label, inbox_mapping),
                            _policy(read, table, label)))  # fmt: skip
    return tuple(routes), user, password


def _mapping(read: _Reader, table: Mapping[str, Any], label: str = "") -> mapping.ColumnMapping | None:
    """The ``columns``/``values`` of ``table`` (an inbox's or a route's), or None when it maps nothing."""
    columns, values = table.get("columns"), table.get("values")
    if columns is None:
        if values is not None:
            raise read.fail(f"{label} values".strip(), "needs [inbox.columns]: values replace what columns produce")
        return None
    try:
        return mapping.build(columns, values)
    except TemplateError as exc:
        raise read.fail(f"{label} {exc.key}".strip(), str(exc)) from None


def _route_mapping(read: _Reader, table: Mapping[str, Any], label: str,
                   inbox_mapping: mapping.ColumnMapping | None) -> mapping.ColumnMapping | None:  # fmt: skip
    """A route with its own ``columns`` uses only its own ``values``; a route without
    uses the inbox's columns, its own ``values`` replacing the inbox's column by column."""
    if table.get("columns") is not None or inbox_mapping is None:
        return _mapping(read, table, label)  # its own; values alone fail naming the route; or None
    route_values = table.get("values")
    if route_values is None:
        return inbox_mapping
    if not isinstance(route_values, dict):
        return _mapping(read, {"columns": read.values["columns"], "values": route_values}, label)
    merged = {**(read.values.get("values") or {}), **route_values}
    return _mapping(read, {"columns": read.values["columns"], "values": merged}, label)


def _policy(read: _Reader, table: Mapping[str, Any], label: str = "") -> policy.RosterPolicy:
    """The inbox's roster keys, each overridden by the route's own."""
    try:
        return policy.build({**read.values, **{k: v for k, v in table.items() if k in policy.KEYS}})
    except ConfigError as exc:
        raise ConfigError(f"{read.where}: {label + ' ' if label else ''}{exc}") from None


def _fraction(read: _Reader, key: str) -> float:
    value = read.values.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise read.fail(key, "must be a fraction from 0 (off) to below 1, e.g. 0.5")
    return float(value)


def _encoding(read: _Reader) -> str:
    import codecs

    name = read.text("source_encoding").strip()
    if not name:
        return ""
    try:
        return codecs.lookup(name).name
    except LookupError:
        raise read.fail("source_encoding", f"is not an encoding Python knows: {name} (try cp1252)") from None


def _report_name(read: _Reader) -> str:
    """A plain .html name in the inbox itself: never a path, a hidden name, or something the scan takes."""
    name = read.text("report").strip()
    if name and not _REPORT_NAME.fullmatch(name):
        raise read.fail("report", 'must be a file name ending in .html, such as "report.html" (or "" for none)')
    return name


def _count(read: _Reader, key: str, minimum: int, maximum: int) -> int:
    value = read.values.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise read.fail(key, f"must be a whole number from {minimum} to {maximum}")
    return value


def _split_url(read: _Reader, raw: str, key: str) -> tuple[str, str | None, str | None]:
    """Validate a URL and take any ``user:password@`` out of it."""
    raw = raw.strip()
    try:
        parts = urllib.parse.urlsplit(raw)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise read.fail(key, f"is not a valid URL: {redact_url(raw)}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise read.fail(key, f"must start with https:// and name a host: {redact_url(raw)}")
    user = urllib.parse.unquote(parts.username) if parts.username else None
    password = urllib.parse.unquote(parts.password) if parts.password else None
    # Registered for scrubbing by resolve_secrets (parse registers nothing); the URL
    # kept here has no user:password@ left to print.
    clean = redact_url(raw)
    if user or password:
        read.warnings.append(f"{read.where.rstrip(':')}: the url contains credentials; they are used for Basic "
                             "Auth and hidden from logs. Prefer username and password_env in the config.")  # fmt: skip
    return clean, user, password


def _username(read: _Reader, url_user: str | None) -> str:
    if read.values.get("username") is not None:
        username = read.text("username")
    elif url_user:
        username = url_user
    else:
        raise read.fail("username", "is missing (the Infiniti account with system administration rights)")
    if not username or ":" in username:
        raise read.fail("username", "must be non-empty and contain no ':'")
    return username


# The inbox's password sources, in priority order (credentials.parse_source).
PASSWORD_KEYS = {INLINE: "password", ENV: "password_env", FILE: "password_file", KEYRING: "password_keyring"}


def _warn_if_readable_by_others(path: Path, where: str) -> None:
    """An inline password in a file everyone can read is not much of a secret."""
    if os.name != "posix":
        return  # Windows ACLs: see docs/security.md for the icacls line that locks the file down
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        logger.warning("{} holds a password but other users can read it: chmod 600 {} (or use password_env, "
                       "password_file or password_keyring)", where.rstrip(":"), path)  # fmt: skip


def _proxy(read: _Reader) -> str | None:
    text = read.text("proxy").strip()
    if not text:
        return None
    try:
        parts = urllib.parse.urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise read.fail("proxy", f"is not a valid URL: {redact_url(text)}") from None
    if parts.scheme not in ("http", "https", "socks5") or not parts.hostname:
        raise read.fail("proxy", "must look like http://proxy.school.example:3128")
    return text  # its password, if any, is registered by resolve_secrets


def _check_transport_security(read: _Reader, url: str, verify_tls: bool) -> None:
    """Basic Auth sends the password in the clear unless TLS protects it."""
    host = urllib.parse.urlsplit(url).hostname or ""
    if urllib.parse.urlsplit(url).scheme == "http" and not is_loopback(host):
        raise read.fail(
            "url",
            "uses plain http:// to a remote host: the password would cross the network "
            "unencrypted. Use https://",
        )
    warning = (f"{read.where.rstrip(':')} verify_tls = false: the server's certificate is NOT checked; "
               "use ca_bundle instead")
    if not verify_tls and warning not in read.warnings:
        # Said at every start, loudly: it is meant for rehearsals only.
        read.warnings.append(warning)


def _reject_duplicates(inboxes: tuple[InboxConfig, ...], where: str) -> None:
    names: set[str] = set()
    folders: dict[str, str] = {}
    for inbox in inboxes:
        if inbox.name in names:
            raise ConfigError(f'{where}: inbox "{inbox.name}": name is used by another inbox')
        names.add(inbox.name)
        folder = os.path.normcase(str(inbox.path))
        if folder in folders:
            raise ConfigError(
                f'{where}: inbox "{inbox.name}": path is the same folder as inbox "{folders[folder]}"'
            )
        folders[folder] = inbox.name
    # An inbox inside another's work folder would send again every file the other filed
    # there (to its own url) and move it out of the other's archive. A plain subfolder of an
    # inbox is fine: the scan is not recursive.
    for inbox in inboxes:
        for other in inboxes:
            for work in (archive.SENDING, archive.PROCESSED, archive.FAILED, archive.HELD):
                if inbox is not other and inbox.path.is_relative_to(other.path / work):
                    raise ConfigError(f'{where}: inbox "{inbox.name}": path is inside {work}/ of inbox '
                                      f'"{other.name}", where that inbox files what it has sent: {inbox.path}')
