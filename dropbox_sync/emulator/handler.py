"""The HTTP side of an import: route, authenticate, receive, import, reply, record."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

from loguru import logger

from dropbox_sync.emulator import replies, wording
from dropbox_sync.emulator.accounts import Accounts, Verdict, parse_basic
from dropbox_sync.emulator.faults import HANG, RESET, Fault, FaultQueue, fault_reply, reset
from dropbox_sync.emulator.importer import Importer
from dropbox_sync.emulator.replies import Reply
from dropbox_sync.emulator.store import DEFAULT_TENANT, Store, UploadRecord, utc_now
from dropbox_sync.emulator.upload import ReceivedFile, body_chunks, drain, receive_first_file
from dropbox_sync.errors import BadUpload, ClientGone, ImportAborted

IMPORT_PATHS = frozenset({"/api/import/users", "/api/import/userGroups"})
CLIENT_GONE = "Client disconnected before the upload was complete."
STOPPED = "Emulator stopped before replying."
IDLE_TIMEOUT = 300.0  # an abandoned keep-alive connection frees its thread eventually


@dataclass
class Context:
    """What every request handler shares; owned by the Emulator."""

    store: Store
    importer: Importer
    accounts: Accounts
    faults: FaultQueue
    tmp_dir: Path
    keep_uploads: bool
    stopping: threading.Event
    hang_seconds: float


class _Server(Protocol):
    """What a handler needs of its server (server.ImportServer): the shared context.
    A protocol, so this module need not import the server, which imports it."""

    context: Context


@dataclass
class _Facts:
    received_at: str
    path: str
    tenant: str | None
    username: str | None


def _tenant(query: str) -> str | None:
    values = parse_qs(query, keep_blank_values=True).get("tenantId")
    return values[0] if values and values[0] else None


class ImportHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Small replies would otherwise sit ~40 ms waiting for the client's delayed ACK.
    disable_nagle_algorithm = True
    server_version = "InfinitiEmulator/1.0"
    sys_version = ""
    timeout = IDLE_TIMEOUT
    server: _Server  # type: ignore[assignment]  # narrower than BaseHTTPRequestHandler's BaseServer

    def log_message(self, format: str, *args: object) -> None:
        """Silenced: one loguru line per upload says what matters, without secrets."""

    @property
    def ctx(self) -> Context:
        return self.server.context

    # -- routing -------------------------------------------------------------

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        credentials = parse_basic(self.headers.get("Authorization"))
        facts = _Facts(utc_now(), url.path, _tenant(url.query), credentials.username if credentials else None)
        fault: Fault | None = None
        try:
            chunks = body_chunks(self.rfile, self.headers)
            if url.path not in IMPORT_PATHS:
                drain(chunks)
                self._finish(facts, replies.not_found())
                return
            fault = self.ctx.faults.take()
            if fault is not None:
                self._faulted(facts, chunks, fault)
                return
            verdict = self.ctx.accounts.check(credentials)
            if verdict is not Verdict.ALLOWED:
                drain(chunks)
                self._finish(facts, replies.unauthorised() if verdict is Verdict.UNAUTHORISED else replies.forbidden())
                return
            self._import(facts, chunks)
        except BadUpload as bad:
            # The body may be only partly read: this connection cannot be reused.
            self.close_connection = True
            self._finish(facts, replies.bad_request(bad.summary))
        except ClientGone:
            self.close_connection = True
            self._finish(facts, None, summary=CLIENT_GONE, fault=fault.name if fault else None)

    def _not_post(self) -> None:
        path = urlsplit(self.path).path
        try:
            drain(body_chunks(self.rfile, self.headers))
        except (BadUpload, ClientGone):
            self.close_connection = True
        self._send(replies.method_not_allowed() if path in IMPORT_PATHS else replies.not_found())

    do_GET = do_HEAD = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_post

    # -- the import ----------------------------------------------------------

    def _import(self, facts: _Facts, chunks: Iterator[bytes]) -> None:
        received = receive_first_file(chunks, self.headers.get("Content-Type", ""), self.ctx.tmp_dir)
        try:
            reply: Reply | None
            if received.path is None:
                reply = replies.bad_request(wording.NO_FILE)
            else:
                reply = self._run_import(received.path, facts.tenant)
            if reply is None:
                self.close_connection = True
                self._finish(facts, None, received, summary=STOPPED)
            else:
                self._finish(facts, reply, received)
        finally:
            received.discard()

    def _run_import(self, csv_path: Path, tenant: str | None) -> Reply | None:
        try:
            result = self.ctx.importer.run(csv_path, tenant or DEFAULT_TENANT, self.ctx.stopping.is_set)
        except ImportAborted:
            return None
        except Exception:
            logger.exception("emulator: import failed unexpectedly")
            return replies.failure(500, wording.SERVER_ERROR)
        return replies.json_reply(200, result.as_json())

    def _faulted(self, facts: _Facts, chunks: Iterator[bytes], fault: Fault) -> None:
        try:
            received = receive_first_file(chunks, self.headers.get("Content-Type", ""), self.ctx.tmp_dir)
        except BadUpload:
            self.close_connection = True  # the body may be only partly read
            received = ReceivedFile()
        try:
            if fault.name == RESET:
                self._finish(facts, None, received, fault=fault.name)
                self.close_connection = True
                reset(self.connection)
                self.rfile.close()
            elif fault.name == HANG:
                # Recorded first, so a test can tell the hang has begun.
                self._finish(facts, None, received, fault=fault.name)
                self.close_connection = True
                wait = fault.hang_seconds if fault.hang_seconds is not None else self.ctx.hang_seconds
                self.ctx.stopping.wait(wait)
            else:
                self._finish(facts, fault_reply(fault), received, fault=fault.name)
        finally:
            received.discard()

    # -- replying and recording ----------------------------------------------

    def _finish(
        self,
        facts: _Facts,
        reply: Reply | None,
        received: ReceivedFile | None = None,
        *,
        fault: str | None = None,
        summary: str | None = None,
    ) -> None:
        """Record the request, log one line, then send the reply (if any)."""
        received = received or ReceivedFile()
        record = UploadRecord(
            seq=0,
            received_at=facts.received_at,
            path=facts.path,
            tenant=facts.tenant,
            bytes=received.size,
            sha256=received.sha256,
            status=reply.status if reply else None,
            success=reply.success if reply else None,
            summary=reply.summary if reply and reply.summary is not None else summary,
            username=facts.username,
            fault=fault,
            filename=received.filename,
        )
        keep = received.path if self.ctx.keep_uploads else None
        record = self.ctx.store.add_upload(record, keep)
        if keep is not None:
            received.path = None
        logger.info(
            "emulator: upload #{} {} tenant={} bytes={} -> {} {}{}",
            record.seq,
            record.path,
            record.tenant or "(default)",
            record.bytes,
            record.status if record.status is not None else "no reply",
            record.summary or "",
            f" [fault {fault}]" if fault else "",
        )
        if reply is not None:
            self._send(reply)

    def _send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)
