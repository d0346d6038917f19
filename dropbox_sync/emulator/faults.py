"""Failures a real deployment throws at a client, on demand.

Tests queue faults with `Emulator.inject`; each import request takes the next
one (after its body has been read in full, so the client sees the fault as the
reply and not as a write error). A faulted request imports nothing.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections import deque
from dataclasses import dataclass

from dropbox_sync.emulator import replies, wording
from dropbox_sync.emulator.replies import Reply

RESET = "reset"
HANG = "hang"
FAULTS = frozenset({"503", RESET, HANG, "html502", "429", "401", "403", "500"})

# What nginx sends when the application behind it is down.
_NGINX_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)


@dataclass(frozen=True)
class Fault:
    name: str
    retry_after: int | None = None
    hang_seconds: float | None = None


class FaultQueue:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: deque[Fault] = deque()

    def inject(
        self, name: str, count: int = 1, *, retry_after: int | None = None, hang_seconds: float | None = None
    ) -> None:
        if name not in FAULTS:
            raise ValueError(f"unknown fault {name!r}; choose from {', '.join(sorted(FAULTS))}")
        if count < 1:
            raise ValueError("count must be at least 1")
        fault = Fault(name, retry_after, hang_seconds)
        with self._lock:
            self._queue.extend([fault] * count)

    def take(self) -> Fault | None:
        with self._lock:
            return self._queue.popleft() if self._queue else None

    def pending(self) -> list[Fault]:
        with self._lock:
            return list(self._queue)

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()


def fault_reply(fault: Fault) -> Reply | None:
    """The HTTP reply for a fault, or None for the faults that never reply."""
    retry = (("Retry-After", str(fault.retry_after)),) if fault.retry_after is not None else ()
    match fault.name:
        case "503":
            return replies.text(503, "Service Unavailable", headers=retry)
        case "429":
            wait = fault.retry_after if fault.retry_after is not None else 1
            return replies.text(429, "Too Many Requests", headers=(("Retry-After", str(wait)),))
        case "html502":
            return replies.text(502, _NGINX_502, "text/html")
        case "401":
            return replies.unauthorised()
        case "403":
            return replies.forbidden()
        case "500":
            return replies.failure(500, wording.SERVER_ERROR)
    return None


def reset(conn: socket.socket) -> None:
    """Close so the peer gets a TCP RST: linger 0 discards the send queue."""
    with contextlib.suppress(OSError):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()
