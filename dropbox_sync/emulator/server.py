"""TCP/TLS transport: one thread per connection, every one of them stoppable.

The stdlib server would wrap the listening socket in TLS, doing each handshake
in the accept loop, where one silent client stalls everyone. Here the accept
loop only accepts; the handshake runs in the connection's own thread. Live
connections are tracked so `close_connections` can wake threads blocked in a
read (keep-alive idle, handshake, slow upload) when the emulator stops.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import ssl
import sys
import threading
from http.server import HTTPServer
from socketserver import TCPServer
from typing import Any

from loguru import logger

from dropbox_sync.emulator.handler import Context, ImportHandler

_Address = tuple[Any, ...]


class ImportServer(HTTPServer):
    # A port in use must be an error, not a second listener: Windows'
    # SO_REUSEADDR would let us steal a bound port, so only set it elsewhere
    # (where it just skips TIME_WAIT after a restart).
    allow_reuse_address = sys.platform != "win32"
    allow_reuse_port = False
    request_queue_size = 64
    daemon_threads = True

    def __init__(self, host: str, port: int, context: Context, tls: ssl.SSLContext | None) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.context = context
        self._tls = tls
        self._lock = threading.Lock()
        self._closing = False
        self._connections: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._counter = itertools.count(1)
        super().__init__((host, port), ImportHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls getfqdn(), a reverse DNS lookup that can
        # take seconds on a machine without DNS; the name is not needed.
        TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    def process_request(self, request: Any, client_address: _Address) -> None:
        thread = threading.Thread(
            target=self._serve_connection,
            args=(request, client_address),
            name=f"emulator-conn-{next(self._counter)}",
            daemon=True,
        )
        with self._lock:
            if self._closing:
                request.close()
                return
            self._threads.add(thread)
            self._connections.add(request)
        thread.start()

    def _serve_connection(self, sock: socket.socket, client_address: _Address) -> None:
        conn: socket.socket | None = sock
        try:
            conn = self._secure(sock)
            if conn is not None:
                self.finish_request(conn, client_address)
        except Exception:
            self.handle_error(conn, client_address)
        finally:
            if conn is not None:
                self.shutdown_request(conn)
            with self._lock:
                self._connections.discard(sock)
                if conn is not None:
                    self._connections.discard(conn)
                self._threads.discard(threading.current_thread())

    def _secure(self, sock: socket.socket) -> socket.socket | None:
        """The TLS socket after its handshake (None if stopping), or sock for plain HTTP."""
        if self._tls is None:
            return sock
        conn = self._tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        # wrap_socket detached sock: track the new object, and re-check the
        # stop flag under the same lock so a concurrent sweep cannot miss it.
        with self._lock:
            self._connections.discard(sock)
            self._connections.add(conn)
            closing = self._closing
        try:
            if closing:
                raise ConnectionAbortedError("emulator stopping")
            conn.settimeout(ImportHandler.timeout)
            conn.do_handshake()
        except BaseException:
            with self._lock:
                self._connections.discard(conn)
            conn.close()
            if closing:
                return None
            raise
        return conn

    def handle_error(self, request: Any, client_address: _Address) -> None:
        # Resets, broken pipes and failed handshakes are the clients' business:
        # one debug line, no traceback (loguru's diagnose would print frame
        # variables, and a handler frame holds the request headers).
        exc = sys.exc_info()[1]
        logger.debug("emulator: connection from {} ended: {}: {}", client_address[0], type(exc).__name__, exc)

    def close_connections(self) -> None:
        """Refuse new connections and wake every thread blocked on a live one."""
        with self._lock:
            self._closing = True
            live = list(self._connections)
        for conn in live:
            # The plain socket call: SSLSocket.shutdown would tear down TLS
            # state under the feet of the thread reading it.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(conn, socket.SHUT_RDWR)

    def join_threads(self, timeout: float) -> list[threading.Thread]:
        """Join connection threads; returns those still alive after timeout."""
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout)
        return [t for t in threads if t.is_alive()]
