"""systemd's notification protocol, sd_notify(3), in a few lines of stdlib.

The protocol is documented and stable: newline-separated ``KEY=VALUE``
assignments sent as one datagram to the AF_UNIX socket named by
``$NOTIFY_SOCKET``; a name starting with "@" is in the abstract namespace
(the "@" stands for a leading NUL byte). The watchdog interval comes from
``$WATCHDOG_USEC``, meant only for ``$WATCHDOG_PID`` when that is set
(sd_watchdog_enabled(3)). Writing it ourselves avoids a C dependency
(python-systemd) for ~30 lines.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

from loguru import logger

from dropbox_sync.redact import scrub


class Notifier:
    """Sends sd_notify messages; does nothing when not started by systemd."""

    def __init__(self, address: str | None) -> None:
        self.address = _socket_address(address) if address else None
        self._warned = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        environ = os.environ if environ is None else environ
        return cls(environ.get("NOTIFY_SOCKET") or None)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *assignments: str) -> bool:
        """Send ``KEY=VALUE`` lines as one datagram; True if it was delivered."""
        if self.address is None:
            return False
        message = scrub("\n".join(a.replace("\n", " ") for a in assignments)).encode("utf-8")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(message, self.address)
        except OSError as exc:
            if not self._warned:  # once: a vanished socket must not flood the log
                logger.warning("cannot notify systemd at {!r}: {}", self.address, exc.strerror or exc)
                self._warned = True
            return False
        return True


def _socket_address(address: str) -> str | bytes:
    if address.startswith("@"):
        return b"\0" + address[1:].encode("utf-8")
    return address


def watchdog_seconds(environ: Mapping[str, str] | None = None, pid: int | None = None) -> float | None:
    """The watchdog interval systemd expects pings within, or None if there is none for us."""
    environ = os.environ if environ is None else environ
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    owner = environ.get("WATCHDOG_PID")
    if owner and owner.strip() != str(os.getpid() if pid is None else pid):
        return None  # meant for another process (e.g. a parent that exec'd us)
    return usec / 1_000_000
