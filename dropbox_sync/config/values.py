"""Typed reading of one merged inbox table: each value checked, every error naming the key.

``Reader`` gives text, flags, seconds, patterns, choices and sizes; the
functions below check the values that need more (URLs and their credentials,
the username, the proxy, the encoding, the report name). Pure, like ``parse``,
which calls them: problems become ``ConfigError``, warnings are collected.
"""

from __future__ import annotations

import math
import re
import urllib.parse
from pathlib import Path
from typing import Any

from dropbox_sync.credentials import is_loopback
from dropbox_sync.errors import ConfigError
from dropbox_sync.paths import path_value
from dropbox_sync.redact import redact_url

# No folders, no dot-name (our temporaries), nothing Windows forbids or reads as a stream (":").
_REPORT_NAME = re.compile(r'[^./\\:*?"<>|\x00-\x1f][^/\\:*?"<>|\x00-\x1f]*\.html?', re.IGNORECASE)
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4}

# Every wait ends up in a timer or a socket timeout: Windows takes at most ~49 days
# (threading.TIMEOUT_MAX), and inf or 1e300 overflow everywhere. 11.5 days is past any sane
# setting; days (keep_days, full_sync_days) stop at a century (timedelta's range is far above).
MAX_SECONDS = 1_000_000
MAX_DAYS = 36_500


class Reader:
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
            raise self.fail(key, "must be a size such as 512MB or a number of bytes")
        unit = (match.group(2) or "").lower().rstrip("b")
        binary = unit.endswith("i")  # KiB, MiB: powers of 1024
        factor = 1024 ** "kmgt".index(unit[0]) * 1024 if binary else _SIZE_UNITS[unit]
        return int(float(match.group(1)) * factor)


def read_inbox_path(read: Reader, base_dir: Path) -> Path:
    """The inbox's ``path``, made absolute against the config's folder (``paths.path_value``)."""
    text = read.text("path")
    if not text.strip():
        raise read.fail("path", "is empty")
    return path_value(text, base_dir, lambda problem: read.fail("path", problem))  # check_files: not a file


def read_fraction(read: Reader, key: str) -> float:
    """A fraction from 0 (off) to below 1 (``shrink_guard``)."""
    value = read.values.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise read.fail(key, "must be a fraction from 0 (off) to below 1, e.g. 0.5")
    return float(value)


def read_encoding(read: Reader) -> str:
    """``source_encoding`` as Python's canonical codec name; "" for none (UTF-8 expected)."""
    import codecs

    name = read.text("source_encoding").strip()
    if not name:
        return ""
    try:
        return codecs.lookup(name).name
    except LookupError:
        raise read.fail("source_encoding", f"is not an encoding Python knows: {name} (try cp1252)") from None


def read_report_name(read: Reader) -> str:
    """A plain .html name in the inbox itself: never a path, a hidden name, or something the scan takes."""
    name = read.text("report").strip()
    if name and not _REPORT_NAME.fullmatch(name):
        raise read.fail("report", 'must be a file name ending in .html, such as "report.html" (or "" for none)')
    return name


def read_count(read: Reader, key: str, minimum: int, maximum: int) -> int:
    """A whole number from ``minimum`` to ``maximum`` (a bool is not one)."""
    value = read.values.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise read.fail(key, f"must be a whole number from {minimum} to {maximum}")
    return value


def split_url(read: Reader, raw: str, key: str) -> tuple[str, str | None, str | None]:
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
        read.warnings.append(
            f"{read.where.rstrip(':')}: the url contains credentials; they are used for Basic "
            "Auth and hidden from logs. Prefer username and password_env in the config."
        )
    return clean, user, password


def read_username(read: Reader, url_user: str | None) -> str:
    """The Infiniti account: ``username``, else the user in the url; never empty, never with ':'."""
    if read.values.get("username") is not None:
        username = read.text("username")
    elif url_user:
        username = url_user
    else:
        raise read.fail("username", "is missing (the Infiniti account with system administration rights)")
    if not username or ":" in username:
        raise read.fail("username", "must be non-empty and contain no ':'")
    return username


def read_proxy(read: Reader) -> str | None:
    """The ``proxy`` URL (http, https or socks5), or None for a direct connection."""
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


def check_transport_security(read: Reader, url: str, verify_tls: bool) -> None:
    """Basic Auth sends the password in the clear unless TLS protects it."""
    host = urllib.parse.urlsplit(url).hostname or ""
    if urllib.parse.urlsplit(url).scheme == "http" and not is_loopback(host):
        raise read.fail(
            "url",
            "uses plain http:// to a remote host: the password would cross the network unencrypted. Use https://",
        )
    warning = (
        f"{read.where.rstrip(':')} verify_tls = false: the server's certificate is NOT checked; use ca_bundle instead"
    )
    if not verify_tls and warning not in read.warnings:
        # Said at every start, loudly: it is meant for rehearsals only.
        read.warnings.append(warning)
