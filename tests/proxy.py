"""A real HTTP CONNECT proxy on 127.0.0.1, as a school's web proxy would be, for tests.

It only tunnels to loopback addresses and records every CONNECT target.
"""

from __future__ import annotations

import select
import socket
import socketserver
import threading


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
            self._pipe(self.connection, upstream)

    def _pipe(self, client: socket.socket, upstream: socket.socket) -> None:
        stop = self.server.stopping  # type: ignore[attr-defined]
        while not stop.is_set():
            ready, _, _ = select.select([client, upstream], [], [], 0.2)
            for source in ready:
                data = source.recv(65536)
                if not data:
                    return
                (upstream if source is client else client).sendall(data)


class ConnectProxy(socketserver.ThreadingTCPServer):
    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Tunnel)
        self.targets: list[str] = []
        self.stopping = threading.Event()
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="connect-proxy")  # fmt: skip

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> ConnectProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stopping.set()
        self.shutdown()
        self.server_close()  # joins the tunnel threads (block_on_close)
        self._thread.join()
