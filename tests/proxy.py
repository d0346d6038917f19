"""A real HTTP CONNECT proxy on 127.0.0.1, as a school's web proxy would be, for tests.

It only tunnels to loopback addresses and records every CONNECT target.
"""

from __future__ import annotations

import select
import socket
import socketserver
import threading
from typing import Self


class _Tunnel(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        request_line = self.rfile.readline(4096).decode("latin-1").strip()
        while self.rfile.readline(4096) not in (b"\r\n", b"\n", b""):
            pass  # headers (Proxy-Authorization etc.) are not needed here
        method, _, rest = request_line.partition(" ")
        target = rest.split(" ")[0]
        host, _, port = target.rpartition(":")
        if method != "CONNECT" or host.strip("[]") not in ("127.0.0.1", "::1", "localhost"):
            self.wfile.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return
        self.server.targets.append(target)  # type: ignore[attr-defined]
        try:
            upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
        except OSError:
            self.wfile.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        with upstream:
            self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self.wfile.flush()
            pipe(self.connection, upstream, self.server.stopping)  # type: ignore[attr-defined]


def pipe(client: socket.socket, upstream: socket.socket, stop: threading.Event) -> None:
    """Copy bytes both ways until either side closes or ``stop`` is set."""
    while not stop.is_set():
        ready, _, _ = select.select([client, upstream], [], [], 0.2)
        for source in ready:
            try:
                data = source.recv(65536)
            except OSError:
                return
            if not data:
                return
            (upstream if source is client else client).sendall(data)


class BackgroundServer(socketserver.ThreadingTCPServer):
    """A threaded TCP server on 127.0.0.1 run in a thread while in its ``with`` block."""

    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True

    def __init__(self, handler: type[socketserver.BaseRequestHandler], name: str) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, name=name)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stopping.set()
        self.shutdown()
        self.server_close()  # joins the handler threads (block_on_close)
        self._thread.join()


class ConnectProxy(BackgroundServer):
    def __init__(self) -> None:
        super().__init__(_Tunnel, "connect-proxy")
        self.targets: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"
