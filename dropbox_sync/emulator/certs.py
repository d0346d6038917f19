"""The emulator's own certificate authority and server certificate.

The CA is kept in the state directory and reused, so a technician who trusted
`ca.pem` once keeps trusting the emulator across restarts; the server
certificate is issued afresh on every start for the names it serves.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from collections.abc import Iterable
from pathlib import Path

import trustme

CA_FILE = "ca.pem"
CA_KEY_FILE = "ca-key.pem"
DEFAULT_NAMES = ("127.0.0.1", "::1", "localhost")
_WILDCARDS = {"", "0.0.0.0", "::"}


def _load_or_create_ca(state_dir: Path) -> trustme.CA:
    cert_path, key_path = state_dir / CA_FILE, state_dir / CA_KEY_FILE
    if cert_path.is_file() and key_path.is_file():
        try:
            return trustme.CA.from_pem(cert_path.read_bytes(), key_path.read_bytes())
        except ValueError:
            pass  # unreadable leftovers: make a new CA below
    ca = trustme.CA(organization_name="dropbox-sync Infiniti emulator")
    _write_private(key_path, ca.private_key_pem.bytes())
    cert_path.write_bytes(ca.cert_pem.bytes())
    return ca


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _normalise(name: str) -> str:
    name = name.strip("[]")
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name.lower()


def server_names(host: str, extra: Iterable[str] = ()) -> list[str]:
    """Names the certificate must be valid for: loopback, the bound host, extras."""
    names: list[str] = []
    for name in (*DEFAULT_NAMES, host, *extra):
        name = _normalise(name)
        if name not in _WILDCARDS and name not in names:
            names.append(name)
    return names


def server_context(state_dir: Path, host: str, extra_names: Iterable[str] = ()) -> tuple[ssl.SSLContext, Path]:
    """A server-side TLS context and the path of the CA PEM clients should trust."""
    ca = _load_or_create_ca(state_dir)
    leaf = ca.issue_cert(*server_names(host, extra_names))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    leaf.configure_cert(ctx)
    return ctx, state_dir / CA_FILE
