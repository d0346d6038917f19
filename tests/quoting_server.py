"""An HTTPS import endpoint on 127.0.0.1 that quotes the caller's credentials back.

The emulator never does that (nor should Infiniti), but a server, proxy or
error page can: the reply then carries the password in every form a reply can
(raw, JSON-escaped, the Basic token) into our results, journal, status and
logs, which must scrub it. Only here because the emulator cannot misbehave
this way on cue.
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self

import trustme


class _Quoter(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        token = (self.headers.get("Authorization") or "").removeprefix("Basic ")
        user, _, password = base64.b64decode(token).decode("utf-8", "replace").partition(":")
        body = json.dumps(
            {
                "success": False,
                "summary": f"Login {user}:{password} refused (Authorization: Basic {token})",
                "details": [{"row": 1, "message": f"password {password!r} is wrong"}],
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class QuotingServer:
    """``with QuotingServer(folder) as server:`` -> ``server.url``, ``server.ca_file``."""

    def __init__(self, folder: Path) -> None:
        ca = trustme.CA()
        self.ca_file = folder / "quoting-ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(context)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Quoter)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self._server.server_address[1]}/api/import/users"
        self._thread = threading.Thread(target=self._server.serve_forever, name="quoting-server", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)
