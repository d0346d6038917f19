"""Basic Auth against the emulator's accounts, changeable while it runs."""

from __future__ import annotations

import base64
import binascii
import enum
import hmac
import threading
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_ACCOUNTS: Mapping[str, tuple[str, bool]] = {"autoimport": ("demo-password", True)}


class Verdict(enum.Enum):
    ALLOWED = "allowed"
    UNAUTHORISED = "unauthorised"
    FORBIDDEN = "forbidden"


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    def __repr__(self) -> str:  # keeps the password out of logs and tracebacks
        return f"Credentials(username={self.username!r}, password=***)"


def parse_basic(header: str | None) -> Credentials | None:
    """Decode an Authorization header; None when absent or not Basic."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic" or not token:
        return None
    try:
        raw = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        # Old clients send Latin-1; accept it rather than call them unauthorised.
        decoded = raw.decode("latin-1")
    username, sep, password = decoded.partition(":")
    if not sep:
        return None
    return Credentials(username, password)


class Accounts:
    def __init__(self, accounts: Mapping[str, tuple[str, bool]] | None = None) -> None:
        self._lock = threading.Lock()
        self._accounts: dict[str, tuple[str, bool]] = {}
        self.replace(DEFAULT_ACCOUNTS if accounts is None else accounts)

    def replace(self, accounts: Mapping[str, tuple[str, bool]]) -> None:
        checked = {str(user): (str(pw), bool(admin)) for user, (pw, admin) in accounts.items()}
        with self._lock:
            self._accounts = checked

    def set_password(self, username: str, password: str) -> None:
        with self._lock:
            if username not in self._accounts:
                raise KeyError(f"no such account: {username}")
            _, admin = self._accounts[username]
            self._accounts[username] = (password, admin)

    def usernames(self) -> list[str]:
        with self._lock:
            return list(self._accounts)

    def check(self, credentials: Credentials | None) -> Verdict:
        if credentials is None:
            return Verdict.UNAUTHORISED
        with self._lock:
            entry = self._accounts.get(credentials.username)
        if entry is None:
            # Compare anyway so an unknown user costs the same as a wrong password.
            hmac.compare_digest(b"", credentials.password.encode("utf-8"))
            return Verdict.UNAUTHORISED
        password, admin = entry
        if not hmac.compare_digest(password.encode("utf-8"), credentials.password.encode("utf-8")):
            return Verdict.UNAUTHORISED
        return Verdict.ALLOWED if admin else Verdict.FORBIDDEN
