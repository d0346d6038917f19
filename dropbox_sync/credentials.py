"""Password sources: where a password comes from, and reading it when a command sends.

The config parser only records the source (``PasswordSource``: the inline text,
an environment variable's name, a file's path, a keyring entry, or the
``user:password@`` of a URL). Nothing is read then, so ``status``, ``check``,
``retry``, ``approve`` and ``service status`` work on a machine (or as an
account) that cannot see the password. ``resolve`` reads it, registers it with
the scrubber (redact.py) and raises ``ConfigError`` naming the key; only the
commands that send call it, through ``config.resolve_secrets``.

The inbox's ``password*`` keys and [notify]'s ``smtp_password*`` keys are the
same sources under other names: both are parsed and read here, once.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dropbox_sync.errors import ConfigError
from dropbox_sync.paths import path_value
from dropbox_sync.redact import Secret

INLINE, ENV, FILE, KEYRING, URL = "inline", "env", "file", "keyring", "url"
KEYRING_SERVICE = "dropbox-sync"
MIN_LENGTH = 3  # shorter ones would blank ordinary words when scrubbed (redact.py)


@dataclass(frozen=True)
class PasswordSource:
    """Where one password comes from; ``resolve`` reads it."""

    where: str  # 'config.toml: inbox "students"', for messages
    key: str  # the config key that gave it (password_env, smtp_password_file, url, ...)
    kind: str  # INLINE, ENV, FILE, KEYRING or URL
    # The password itself (INLINE, URL), the variable's name (ENV), the file's
    # absolute path (FILE), the inbox name (KEYRING): never shown.
    value: str = dataclasses.field(repr=False)
    username: str = ""  # KEYRING: the account set-password stored it under

    def fail(self, problem: str) -> ConfigError:
        return ConfigError(f"{self.where}: {self.key} {problem}")

    @property
    def inline(self) -> bool:
        """The password is written in the config file itself."""
        return self.kind in (INLINE, URL)


def keyring_entry(inbox_name: str, username: str) -> tuple[str, str]:
    """(service, user) under which ``set-password`` stores an inbox's password."""
    return f"{KEYRING_SERVICE}/{inbox_name}", username


def parse_source(
    values: Mapping[str, Any],
    keys: Mapping[str, str],
    where: str,
    base_dir: Path,
    *,
    url_password: str | None = None,
    keyring_name: str = "",
    username: str = "",
) -> PasswordSource | None:
    """The one password source among ``keys`` (kind -> config key, in priority order), or None.

    Pure: checks the form only (one source, text where text is due); nothing is read.
    """
    given = {kind: key for kind, key in keys.items() if values.get(key) is not None}
    if kind_key := given.get(KEYRING):
        if values[kind_key] is False:  # password_keyring = false: the same as leaving it out
            del given[KEYRING]
        elif values[kind_key] is not True:
            raise ConfigError(f"{where}: {kind_key} must be true (or left out)")
    sources = list(given.items())
    if len(sources) > 1:
        raise ConfigError(f"{where}: {sources[1][1]} conflicts with {sources[0][1]}: give only one password source")
    if not sources:
        return PasswordSource(where, "url", URL, url_password) if url_password else None
    kind, key = sources[0]
    if kind == KEYRING:
        return PasswordSource(where, key, kind, keyring_name, username)
    text = values[key]
    if not isinstance(text, str):
        raise ConfigError(f"{where}: {key} must be text in quotes")
    if kind == FILE:
        text = str(path_value(text.strip(), base_dir, lambda problem: ConfigError(f"{where}: {key} {problem}")))
    elif kind == ENV:
        text = text.strip()
    source = PasswordSource(where, key, kind, text)
    if kind == INLINE and len(text) < MIN_LENGTH:
        raise source.fail(f"gives a password shorter than {MIN_LENGTH} characters")
    return source


def resolve(source: PasswordSource) -> Secret:
    """Read the password (environment, file, keyring) and register it for scrubbing."""
    if source.kind in (INLINE, URL):
        value = source.value
    elif source.kind == ENV:
        value = os.environ.get(source.value, "")
        if not value:
            raise source.fail(_unset_variable(source.value))
    elif source.kind == FILE:
        try:
            value = Path(source.value).read_text(encoding="utf-8-sig").strip("\r\n")
        except OSError as exc:
            raise source.fail(f"cannot be read: {exc.strerror or exc}") from None
    else:
        value = _from_keyring(source)
    if len(value) < MIN_LENGTH:
        raise source.fail(f"gives a password shorter than {MIN_LENGTH} characters")
    return Secret(value)  # registered with the scrubber before anything can print it


_VARIABLE_NAME = re.compile(r"[A-Z_][A-Z0-9_]*\Z")


def _unset_variable(variable: str) -> str:
    """Why password_env gave nothing, without echoing what may be the password itself."""
    if _VARIABLE_NAME.match(variable):
        return f"names environment variable {variable}, which is not set"
    # Not a conventional variable name: quite possibly the password itself put in
    # the wrong key. Never repeat it, and scrub it from everything from now on.
    Secret(variable)
    return (
        "names an environment variable that is not set (the value is not shown: it does not look like a "
        "variable name such as DROPBOX_SYNC_PASSWORD; if it is the password itself, put the password in "
        "that variable, or use password_file)"
    )


def _from_keyring(source: PasswordSource) -> str:
    try:
        import keyring
        import keyring.errors
    except ImportError:
        raise source.fail("needs the keyring extra: pip install 'dropbox-sync[keyring]'") from None
    try:
        value = keyring.get_password(*keyring_entry(source.value, source.username))
    except keyring.errors.KeyringError as exc:
        raise source.fail(f"the OS keyring cannot be read: {exc}") from None
    if not value:
        raise source.fail(
            f"no password stored: run 'dropbox-sync set-password {source.value}' as the account the service runs as"
        )
    return value


def is_loopback(host: str) -> bool:
    """A host on this machine: a password may travel there unencrypted."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
