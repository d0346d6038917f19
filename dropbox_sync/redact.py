"""Keeping secrets out of everything we print or write.

Passwords are wrapped in ``Secret`` (its repr is ``***``) and registered here
when the config is loaded; ``scrub`` then blanks any registered secret in any
text, which the log sinks, result files and error messages all go through.
URLs are shown without their ``user:password@`` part by ``redact_url``.
"""

from __future__ import annotations

import threading
import urllib.parse

MASK = "***"

_lock = threading.Lock()
_secrets: set[str] = set()


class Secret:
    """A password that refuses to show itself in reprs, f-strings and tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        register_secret(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def register_secret(value: str) -> None:
    """Remember a secret so ``scrub`` removes it wherever it turns up."""
    # Very short secrets would blank ordinary words; a 1-2 character password
    # is refused by config validation anyway.
    if value and len(value) >= 3:
        with _lock:
            _secrets.add(value)
            # httpx and curl show the password percent-encoded inside URLs.
            _secrets.add(urllib.parse.quote(value, safe=""))


def scrub(text: str) -> str:
    """Return ``text`` with every registered secret replaced by ``***``."""
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def redact_url(url: str) -> str:
    """``https://user:pw@host/x`` -> ``https://host/x`` (query kept)."""
    try:
        parts = urllib.parse.urlsplit(url)
        if "@" not in parts.netloc:
            return scrub(url)
        netloc = parts.netloc.rpartition("@")[2]
        return scrub(urllib.parse.urlunsplit(parts._replace(netloc=netloc)))
    except ValueError:
        return scrub(url)
