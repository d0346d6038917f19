"""The [notify] table of config.toml: SMTP server, login, addresses and timing.

Validated once with the rest of the config; every mistake is one line that
names the key, like config.py's. Parsing is pure: the SMTP password is kept as
its source (``credentials.PasswordSource``, the same sources as an inbox's
password) and read by ``resolve_settings`` when a command sends; it becomes a
``Secret``, scrubbed from every log (with its base64 AUTH forms).
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dropbox_sync import credentials
from dropbox_sync.credentials import ENV, FILE, INLINE, is_loopback
from dropbox_sync.errors import ConfigError
from dropbox_sync.paths import control_character, path_value
from dropbox_sync.redact import register_secret

if TYPE_CHECKING:
    from dropbox_sync.notify.mail import SmtpServer

# The SMTP password's sources, in priority order (credentials.parse_source).
PASSWORD_KEYS = {INLINE: "smtp_password", ENV: "smtp_password_env", FILE: "smtp_password_file"}

DEFAULTS: dict[str, Any] = {
    "smtp_host": None,
    "smtp_port": None,  # 587, or 465 with smtps
    "starttls": True,
    "smtps": False,
    "smtp_username": "",
    "smtp_password": None,
    "smtp_password_env": None,
    "smtp_password_file": None,
    "from": None,
    "to": None,
    "subject_prefix": "[dropbox-sync]",
    "digest_minutes": 15.0,
    "alert_after_minutes": 30.0,
    "stale_after_hours": 0.0,
    "ca_bundle": "",
    "smtp_timeout": 30.0,
}


@dataclass(frozen=True)
class NotifySettings:
    server: SmtpServer
    sender: str
    recipients: tuple[str, ...]
    subject_prefix: str
    digest_minutes: float
    alert_after_minutes: float
    stale_after_hours: float  # 0 = off


# -- settings ---------------------------------------------------------------------


MOST = 1_000_000  # in each key's unit; timedelta and socket timeouts overflow far above


def parse_settings(raw: Any, where: str, base_dir: Path) -> NotifySettings | None:
    """Validate the ``[notify]`` table (None if there is none); ConfigError names the key."""
    if raw is None:
        return None
    # Imported only for a [notify] table: the mail module pulls in smtplib, email and ssl,
    # which every config load (each command's start-up) would otherwise pay for.
    from dropbox_sync.notify.mail import SmtpServer

    where = f"{where}: [notify]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a table")
    for key in raw:
        if key not in DEFAULTS:
            raise ConfigError(f"{where}: unknown key '{key}'")
    values = {**DEFAULTS, **raw}

    def fail(key: str, problem: str) -> ConfigError:
        return ConfigError(f"{where}: {key} {problem}")

    def text(key: str) -> str:
        if not isinstance(values[key], str):
            raise fail(key, "must be text in quotes" if values[key] is not None else "is missing")
        return _one_line(values[key].strip(), fail, key)

    def flag(key: str) -> bool:
        if not isinstance(values[key], bool):
            raise fail(key, "must be true or false")
        return values[key]

    def number(key: str, unit: str) -> float:
        value = values[key]
        # TOML has nan and inf: a chained comparison refuses both (nan compares false).
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= MOST:
            raise fail(key, f"must be a number of {unit} from 0 to {MOST:,}")
        return float(value)

    host = text("smtp_host")
    if not host:
        raise fail("smtp_host", "is empty (the mail server, e.g. smtp.office365.com)")
    smtps = flag("smtps")
    starttls = flag("starttls") and not smtps
    port = values["smtp_port"] if values["smtp_port"] is not None else (465 if smtps else 587)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise fail("smtp_port", "must be a port number such as 587")
    username = text("smtp_username")
    password = credentials.parse_source(values, PASSWORD_KEYS, where, base_dir)
    if password is not None and not username:
        raise fail("smtp_username", "is missing: a password is set, so whose is it?")
    if username and password is None:
        raise fail("smtp_password_env", "is missing: set smtp_password_env, smtp_password_file or smtp_password")
    if username and not (starttls or smtps) and not is_loopback(host):
        raise fail(
            "starttls",
            "is false: the SMTP password would cross the network unencrypted. "
            "Use starttls = true (port 587) or smtps = true (port 465)",
        )
    ca_text = text("ca_bundle")
    # Present or not: config.check_files says, naming the key.
    ca_bundle = path_value(ca_text, base_dir, lambda problem: fail("ca_bundle", problem)) if ca_text else None
    timeout = number("smtp_timeout", "seconds")
    if timeout < 1:
        raise fail("smtp_timeout", "must be at least 1")
    return NotifySettings(
        server=SmtpServer(host, port, starttls, smtps, username, None, ca_bundle, timeout, password_source=password),
        sender=_address(text("from"), fail, "from"),
        recipients=_recipients(values["to"], fail),
        subject_prefix=text("subject_prefix"),
        digest_minutes=number("digest_minutes", "minutes"),
        alert_after_minutes=number("alert_after_minutes", "minutes"),
        stale_after_hours=number("stale_after_hours", "hours"),
    )


def resolve_settings(settings: NotifySettings) -> NotifySettings:
    """``settings`` with the SMTP password read and registered for scrubbing (config.resolve_secrets)."""
    server = settings.server
    if server.password_source is None or server.password is not None:
        return settings
    password = credentials.resolve(server.password_source)
    # AUTH PLAIN and AUTH LOGIN carry the password base64-encoded: blank those forms too.
    for form in (password.reveal(), f"\0{server.username}\0{password.reveal()}"):
        register_secret(base64.b64encode(form.encode()).decode())
    return dataclasses.replace(settings, server=dataclasses.replace(server, password=password))


def _one_line(value: str, fail: Callable[[str, str], ConfigError], key: str) -> str:
    """These values go into email headers, which cannot hold a line break (the email
    package refuses to build the message: no alert would ever go out)."""
    bad = control_character(value)
    if bad is not None:
        raise fail(key, f"holds a control character ({bad}): {value.encode('unicode_escape').decode('ascii')}")
    return value


def _address(value: str, fail: Callable[[str, str], ConfigError], key: str) -> str:
    import email.utils  # late, with the [notify] table that needs it (see parse_settings)

    _one_line(value, fail, key)
    _, address = email.utils.parseaddr(value)
    if "@" not in address or any(c.isspace() for c in address):
        raise fail(key, f"is not an email address: {value!r}")
    return value


def _recipients(value: Any, fail: Callable[[str, str], ConfigError]) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise fail("to", 'must be a list of email addresses, e.g. ["it@school.example"]')
    return tuple(_address(v.strip(), fail, "to") for v in value)
