"""Small misbehaving servers on 127.0.0.1, for what the emulator cannot do on cue.

``ScriptedServer`` reads each HTTP request in full, then answers with the next
scripted reply (the last one repeats): odd bodies and headers, a reply trickled
a byte at a time, a reply far too big. ``HandshakeDropper`` accepts TCP
connections and drops the first few in the middle of the TLS handshake (as a
load balancer without a backend does), then forwards the rest to a real server.
Both count what happened, so tests wait on conditions, never on time.
"""

from __future__ import annotations

import socket
import socketserver
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from tests.proxy import BackgroundServer, pipe

Body = bytes | Callable[[], Iterable[bytes]]


@dataclass(frozen=True)
class Scripted:
    """One reply: status line and headers, then the body (bytes, or chunks made on the fly)."""

    status: int = 200
    body: Body = b""
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),)
    # Seconds between single bytes; the pause IS the behaviour (a trickling server).
    trickle: float = 0.0
    trickle_headers: bool = False
    length: int | None = None  # Content-Length to claim (default: the body's, when it is bytes)


def json_bytes(text: str) -> bytes:
    return text.encode("utf-8", errors="surrogatepass")


@dataclass
class _Stats:
    requests: int = 0
    bytes_sent: list[int] = field(default_factory=list)  # per answered request
    heads: list[bytes] = field(default_factory=list)  # each request's line and headers, in order
    cut_short: int = 0  # replies the client stopped reading before their end


class _Handler(socketserver.BaseRequestHandler):
    server: ScriptedServer

    def handle(self) -> None:
        self.request.settimeout(30)
        if not self._read_request():
            return
        reply = self.server.next_reply()
        head, body = self.server.render(reply)
        sent = 0
        try:
            for chunk, slow in ((head, reply.trickle_headers), *((c, True) for c in body)):
                if reply.trickle and slow:
                    for index in range(len(chunk)):
                        self.request.sendall(chunk[index : index + 1])
                        sent += 1
                        if self.server.stopping.wait(reply.trickle):
                            return
                else:
                    self.request.sendall(chunk)
                    sent += len(chunk)
        except OSError:
            with self.server.lock:
                self.server.stats.cut_short += 1
        finally:
            with self.server.lock:
                self.server.stats.bytes_sent.append(sent)

    def _read_request(self) -> bool:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.request.recv(65536)
            if not chunk:
                return False
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        with self.server.lock:
            number = self.server.stats.requests + 1
        self.server.headers_read(number)
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(body) < length:
            chunk = self.request.recv(65536)
            if not chunk:
                return False
            body += chunk
        with self.server.lock:
            self.server.stats.requests += 1
            self.server.stats.heads.append(head)
        return True


class ScriptedServer(BackgroundServer):
    def __init__(self, *replies: Scripted) -> None:
        super().__init__(_Handler, "scripted-server")
        self.replies = list(replies)
        self.stats = _Stats()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/api/import/users"

    @property
    def base_url(self) -> str:  # so tests.support.write_config can point at it
        return f"http://127.0.0.1:{self.server_address[1]}"

    ca_file = None

    def next_reply(self) -> Scripted:
        with self.lock:
            return self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]

    def headers_read(self, number: int) -> None:
        """Request ``number`` (1-based) has its headers read, its body not yet: a subclass's hook."""

    @staticmethod
    def render(reply: Scripted) -> tuple[bytes, Iterable[bytes]]:
        """The status line and headers, and the body's chunks."""
        length = (
            reply.length if reply.length is not None else (len(reply.body) if isinstance(reply.body, bytes) else None)
        )
        lines = [f"HTTP/1.1 {reply.status} Scripted", "Connection: close", *(f"{k}: {v}" for k, v in reply.headers)]
        if length is not None:
            lines.append(f"Content-Length: {length}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return head, ([reply.body] if isinstance(reply.body, bytes) else reply.body())


class _Dropper(socketserver.BaseRequestHandler):
    server: HandshakeDropper

    def handle(self) -> None:
        with self.server.lock:
            drop = self.server.to_drop > 0
            self.server.to_drop -= drop
        if drop:
            self.request.settimeout(10)
            self.request.recv(65536)  # the ClientHello: the handshake has begun
            if self.server.how == "reset":
                # SO_LINGER 0: close() sends RST instead of FIN.
                self.request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            with self.server.lock:
                self.server.dropped += 1
            return
        with socket.create_connection(self.server.target, timeout=10) as upstream:
            pipe(self.request, upstream, self.server.stopping)


class HandshakeDropper(BackgroundServer):
    """Drops the first ``count`` connections after the ClientHello (``how``: "eof" or "reset")."""

    def __init__(self, target: tuple[str, int], count: int, how: str = "eof") -> None:
        super().__init__(_Dropper, "handshake-dropper")
        self.target = target
        self.to_drop = count
        self.how = how
        self.dropped = 0

    @property
    def port(self) -> int:
        return self.server_address[1]


class _EarlyAnswer(_Handler):
    server: EarlyAnswerServer

    def handle(self) -> None:
        with self.server.lock:
            self.server.connections += 1
            early = self.server.connections in self.server.early
            reset = self.server.connections in self.server.reset
        if reset:  # the whole request read, then RST instead of an answer
            self.request.settimeout(30)
            if self._read_request():
                self.request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
        if not early:
            super().handle()
            return
        self.request.settimeout(30)
        data = b""
        while b"\r\n\r\n" not in data:  # the headers only: the file is never read
            chunk = self.request.recv(4096)
            if not chunk:
                return
            data += chunk
        head, body = self.server.render(self.server.next_reply())
        self.request.sendall(head + b"".join(body))
        # SO_LINGER 0: close() with the body unread sends RST, and the client's blocked write fails.
        self.request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with self.server.lock:
            self.server.answered_early += 1


class EarlyAnswerServer(ScriptedServer):
    """A ``ScriptedServer`` that answers the connections numbered in ``early`` (1-based) as soon
    as it has their headers, then resets them without reading the file. Its receive buffer is
    small, so a file of a few hundred KiB cannot be all out before the answer comes: httpcore
    then drops the failed write and reads the answer (a server refusing a request early).
    The connections numbered in ``reset`` are read in full, then reset without an answer."""

    def __init__(self, *replies: Scripted, early: set[int], reset: frozenset[int] = frozenset()) -> None:
        super().__init__(*replies)
        self.RequestHandlerClass = _EarlyAnswer
        self.early = early
        self.reset = reset
        self.connections = 0
        self.answered_early = 0

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # inherited by accepted sockets
        super().server_bind()
