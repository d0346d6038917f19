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

This module holds ``load``, ``read_toml`` and ``resolve_secrets``; the objects are
in ``config/model.py``, ``parse`` in ``config/parser.py`` (with the typed value
checks of ``config/values.py``).
"""

from __future__ import annotations

import dataclasses
import os
import re
import stat
import tomllib
import urllib.parse
from pathlib import Path
from typing import Any

from loguru import logger

from dropbox_sync import credentials
from dropbox_sync.config.model import Config, InboxConfig, Route
from dropbox_sync.config.notify_settings import resolve_settings
from dropbox_sync.config.parser import INBOX_DEFAULTS, parse, reject_duplicate_inboxes, source_label
from dropbox_sync.errors import ConfigError
from dropbox_sync.paths import BACKSLASH_HINT
from dropbox_sync.redact import Secret, register_basic_auth

# The public names of the three steps and their objects (they live in config/model.py
# and config/parser.py; callers keep importing them from here).
__all__ = [
    "INBOX_DEFAULTS",
    "Config",
    "InboxConfig",
    "Route",
    "check_files",
    "load",
    "parse",
    "password_of",
    "read_toml",
    "resolve_secrets",
]


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
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: {_not_utf8(exc)}; save it as UTF-8 (in Notepad: Save as, Encoding UTF-8)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path.name}: not valid TOML: {exc}{_backslash_hint(text, str(exc))}") from None


def _not_utf8(exc: UnicodeDecodeError) -> str:
    data = bytes(exc.object)
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return 'is saved as UTF-16 (Notepad\'s "Unicode")'
    line = data.count(b"\n", 0, exc.start) + 1
    return f'is not UTF-8: line {line} has byte 0x{data[exc.start]:02x} (saved as "ANSI"?)'


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


def check_files(cfg: Config) -> Config:
    """What ``parse`` leaves to the disk: paths resolved (symlinks, a share that does not
    answer kept as written), a ``ca_bundle`` that exists, an inbox path that is no file;
    then the warnings said at every start."""
    where = source_label(cfg.source)
    inboxes = []
    for inbox in cfg.inboxes:
        label = f'{where}: inbox "{inbox.name}"'
        path = _resolved(inbox.path)
        # The form only: a missing folder is an unmounted share or a folder not made yet; the
        # worker waits for it (and `status`, `once`, `check` say so), the other inboxes go on.
        if path.is_file():
            raise ConfigError(f"{label}: path is a file, not a folder: {path}")
        inboxes.append(dataclasses.replace(inbox, path=path, ca_bundle=_existing(inbox.ca_bundle, label)))
    reject_duplicate_inboxes(tuple(inboxes), where)
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
        _warn_if_readable_by_others(cfg.source, source_label(cfg.source))


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
    secret = inbox.password if inbox.password is not None else credentials.resolve(inbox.password_source)
    register_basic_auth(inbox.username, secret.reveal())  # the Authorization header's token is a secret too
    return secret


def _register_proxy_password(proxy: str) -> None:
    parts = urllib.parse.urlsplit(proxy)
    if parts.password:  # scrubbed from logs from now on, and the proxy's Basic token with it
        register_basic_auth(urllib.parse.unquote(parts.username or ""), urllib.parse.unquote(parts.password))


def _warn_if_readable_by_others(path: Path, where: str) -> None:
    """An inline password in a file everyone can read is not much of a secret."""
    if os.name != "posix":
        return  # Windows ACLs: see docs/security.md for the icacls line that locks the file down
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        logger.warning(
            "{} holds a password but other users can read it: chmod 600 {} (or use password_env, "
            "password_file or password_keyring)",
            where.rstrip(":"),
            path,
        )
