"""``parse``: an already read TOML document to the frozen config objects (``config/model.py``).

Pure: no file is opened, no password read, nothing registered or logged
(``$VARS`` in paths are expanded: they are part of how a path is written). A
password is kept as its source (``credentials.PasswordSource``). Every mistake
becomes one ``ConfigError`` line naming the file and the key. The keys an
``[[inbox]]`` may hold, and their defaults, are ``INBOX_DEFAULTS``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dropbox_sync import credentials
from dropbox_sync.config import mapping, policy
from dropbox_sync.config.model import Config, InboxConfig, Route
from dropbox_sync.config.notify_settings import parse_settings
from dropbox_sync.config.values import (
    MAX_DAYS,
    Reader,
    check_transport_security,
    read_count,
    read_encoding,
    read_fraction,
    read_inbox_path,
    read_proxy,
    read_report_name,
    read_username,
    split_url,
)
from dropbox_sync.credentials import ENV, FILE, INLINE, KEYRING
from dropbox_sync.errors import ConfigError, TemplateError
from dropbox_sync.paths import control_character, path_value
from dropbox_sync.pipeline import archive_names, workdirs

OBSERVER_KINDS = ("auto", "native", "polling")
MAX_REPORT_IMPORTS = 1000  # keeps report.html small enough for any browser and share
LOG_FORMATS = ("text", "json")

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


def parse(raw: Mapping[str, Any], *, source: Path | None = None, base_dir: Path | None = None) -> Config:
    """Validate an already parsed TOML document (``source`` names it in errors; relative
    paths are taken from ``base_dir``, by default the folder of ``source``). Pure: see above."""
    where = source_label(source)
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
    reject_duplicate_inboxes(inboxes, where)
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


def source_label(source: Path | None) -> str:
    """How messages name the config: its file name, or "config" for text with no file."""
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


def _inbox(
    values: dict[str, Any], table: Mapping[str, Any], index: int, where: str, base_dir: Path, warnings: list[str]
) -> InboxConfig:
    named = isinstance(table.get("name"), str)
    label = f'inbox "{archive_names.display_name(table["name"])}"' if named else f"inbox #{index}"
    _reject_unknown(table, INBOX_DEFAULTS, f"{where}: {label}")
    read = Reader(values, f"{where}: {label}", warnings)
    if values.get("path") is None:
        raise read.fail("path", "is missing (the folder to watch)")
    path = read_inbox_path(read, base_dir)
    name = read.text("name") if values.get("name") is not None else path.name
    if control_character(name) is not None:  # shown in logs, status, email subjects, lock names
        raise read.fail(
            "name",
            f"holds a control character ({control_character(name)}): {name.encode('unicode_escape').decode('ascii')}",
        )
    routes, url_user, url_password = _routes(read)
    url = routes[0].url
    username = read_username(read, url_user)
    password_source = credentials.parse_source(
        read.values,
        PASSWORD_KEYS,
        read.where,
        base_dir,
        url_password=url_password,
        keyring_name=name,
        username=username,
    )
    if password_source is None:
        raise read.fail("password_env", "is missing: set password_env, password_file or password")
    verify_tls = read.flag("verify_tls")
    for route in routes:
        check_transport_security(read, route.url, verify_tls)
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
        proxy=read_proxy(read),
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
        shrink_guard=read_fraction(read, "shrink_guard"),
        source_encoding=read_encoding(read),
        report=read_report_name(read),
        report_imports=read_count(read, "report_imports", 1, MAX_REPORT_IMPORTS),
    )


def _routes(read: Reader) -> tuple[tuple[Route, ...], str | None, str | None]:
    """The inbox's routes, and any credentials found in a URL."""
    tables = read.values.get("route")
    inbox_mapping = _mapping(read, read.values)
    if tables is None:
        if read.values.get("url") is None:
            raise read.fail("url", "is missing (the Infiniti import URL)")
        url, user, password = split_url(read, read.text("url"), "url")
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
        patterns = Reader(table, f"{read.where}: {label}").patterns("match")
        url, route_user, route_password = split_url(read, Reader(table, read.where).text("url"), f"{label} url")
        user, password = user or route_user, password or route_password
        routes.append(
            Route(patterns, url, _route_mapping(read, table, label, inbox_mapping), _policy(read, table, label))
        )
    return tuple(routes), user, password


def _mapping(read: Reader, table: Mapping[str, Any], label: str = "") -> mapping.ColumnMapping | None:
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


def _route_mapping(
    read: Reader, table: Mapping[str, Any], label: str, inbox_mapping: mapping.ColumnMapping | None
) -> mapping.ColumnMapping | None:
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


def _policy(read: Reader, table: Mapping[str, Any], label: str = "") -> policy.RosterPolicy:
    """The inbox's roster keys, each overridden by the route's own."""
    try:
        return policy.build({**read.values, **{k: v for k, v in table.items() if k in policy.KEYS}})
    except ConfigError as exc:
        raise ConfigError(f"{read.where}: {label + ' ' if label else ''}{exc}") from None


# The inbox's password sources, in priority order (credentials.parse_source).
PASSWORD_KEYS = {INLINE: "password", ENV: "password_env", FILE: "password_file", KEYRING: "password_keyring"}


def reject_duplicate_inboxes(inboxes: tuple[InboxConfig, ...], where: str) -> None:
    """``ConfigError`` for two inboxes with one name or one folder, or an inbox inside another's
    work folder; ``parse`` checks the paths as written, ``check_files`` again once resolved."""
    names: set[str] = set()
    folders: dict[str, str] = {}
    for inbox in inboxes:
        if inbox.name in names:
            raise ConfigError(f'{where}: inbox "{inbox.name}": name is used by another inbox')
        names.add(inbox.name)
        folder = os.path.normcase(str(inbox.path))
        if folder in folders:
            raise ConfigError(f'{where}: inbox "{inbox.name}": path is the same folder as inbox "{folders[folder]}"')
        folders[folder] = inbox.name
    # An inbox inside another's work folder would send again every file the other filed
    # there (to its own url) and move it out of the other's archive. A plain subfolder of an
    # inbox is fine: the scan is not recursive.
    for inbox in inboxes:
        for other in inboxes:
            for work in (workdirs.SENDING, workdirs.PROCESSED, workdirs.FAILED, workdirs.HELD):
                if inbox is not other and inbox.path.is_relative_to(other.path / work):
                    raise ConfigError(
                        f'{where}: inbox "{inbox.name}": path is inside {work}/ of inbox '
                        f'"{other.name}", where that inbox files what it has sent: {inbox.path}'
                    )
