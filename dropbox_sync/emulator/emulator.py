"""The Emulator: Infiniti's non-interactive import server, started and stopped as one object."""

from __future__ import annotations

import ipaddress
import shutil
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from loguru import logger

from dropbox_sync.emulator import certs
from dropbox_sync.emulator.accounts import Accounts
from dropbox_sync.emulator.faults import FaultQueue
from dropbox_sync.emulator.handler import Context
from dropbox_sync.emulator.importer import DEFAULT_LIBRARY_GROUPS, DEFAULT_SYSTEM_GROUPS, Importer
from dropbox_sync.emulator.server import ImportServer
from dropbox_sync.emulator.store import DEFAULT_TENANT, Store, UploadRecord, UserRecord

_T = TypeVar("_T")

USERS_PATH = "/api/import/users"
USER_GROUPS_PATH = "/api/import/userGroups"
_DB_FILE = "emulator.sqlite3"
_JOIN_SECONDS = 10.0
_POLL_SECONDS = 0.05  # how soon the accept loop notices stop()


def _url_host(host: str) -> str:
    """The host a local client should dial: wildcards become loopback."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    try:
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]"
    except ValueError:
        pass
    return host


class Emulator:
    """A real HTTP(S) server that answers like Infiniti's import endpoints.

    State (users, upload records, the CA) lives in `state_dir`, so a restart
    with the same directory keeps "created" versus "updated" honest.
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: bool = True,
        accounts: Mapping[str, tuple[str, bool]] | None = None,
        library_groups: Iterable[str] = DEFAULT_LIBRARY_GROUPS,
        system_groups: Iterable[str] = DEFAULT_SYSTEM_GROUPS,
        keep_uploads: bool = False,
        hang_seconds: float = 300.0,
        cert_hosts: Iterable[str] = (),
    ) -> None:
        self.state_dir = Path(state_dir)
        self.host = host
        self.tls = tls
        self.keep_uploads = keep_uploads
        self.hang_seconds = hang_seconds
        self.library_groups = tuple(library_groups)
        self.system_groups = tuple(system_groups)
        self.ca_file: Path | None = None
        self._requested_port = port
        self._cert_hosts = tuple(cert_hosts)
        self._accounts = Accounts(accounts)
        self._faults = FaultQueue()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._store: Store | None = None
        self._server: ImportServer | None = None
        self._accept_thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> Emulator:
        with self._lock:
            if self._server is not None:
                raise RuntimeError("emulator already started")
            self._start()
        logger.info("emulator: listening on {}", self.base_url)
        return self

    def _start(self) -> None:
        tmp_dir = self.state_dir / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        # Temp files left by a killed run are of no use to anyone.
        for leftover in tmp_dir.glob("upload-*.part"):
            leftover.unlink(missing_ok=True)
        tls_context = None
        if self.tls:
            tls_context, self.ca_file = certs.server_context(self.state_dir, self.host, self._cert_hosts)
        store = Store(self.state_dir / _DB_FILE, self.state_dir / "uploads")
        self._stopping.clear()
        context = Context(
            store=store,
            importer=Importer(store, self.library_groups, self.system_groups),
            accounts=self._accounts,
            faults=self._faults,
            tmp_dir=tmp_dir,
            keep_uploads=self.keep_uploads,
            stopping=self._stopping,
            hang_seconds=self.hang_seconds,
        )
        try:
            server = ImportServer(self.host, self._requested_port, context, tls_context)
        except BaseException:
            store.close()
            raise
        self._store, self._server = store, server
        self._accept_thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": _POLL_SECONDS},
            name="emulator-accept",
            daemon=True,
        )
        self._accept_thread.start()

    def stop(self) -> None:
        """Stop accepting, wake and join every connection thread, close state. Idempotent."""
        with self._lock:
            server, store, accept = self._server, self._store, self._accept_thread
            self._server = self._store = self._accept_thread = None
        if server is None:
            return
        self._stopping.set()  # ends hangs and long imports
        server.shutdown()
        if accept is not None:
            accept.join(_JOIN_SECONDS)
        server.server_close()
        server.close_connections()
        stuck = server.join_threads(_JOIN_SECONDS)
        if stuck:
            logger.warning("emulator: {} connection thread(s) did not stop", len(stuck))
        if store is not None:
            store.close()
        logger.info("emulator: stopped")

    def __enter__(self) -> Emulator:
        # `with Emulator(...).start() as emu:` is fine too.
        return self if self._server is not None else self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- where it listens ----------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("emulator not started")
        return self._server.server_port

    @property
    def base_url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{_url_host(self.host)}:{self.port}"

    def import_url(self, endpoint: str = "users", tenant: str | None = None) -> str:
        """URL of /api/import/<endpoint>, with ?tenantId= when a tenant is given."""
        url = f"{self.base_url}/api/import/{endpoint}"
        return f"{url}?tenantId={tenant}" if tenant is not None else url

    # -- what it saw and holds -----------------------------------------------

    def uploads(self) -> list[UploadRecord]:
        """Every POST recorded in this state directory, oldest first (also after stop)."""
        return self._read(Store.uploads)

    def users(self, tenant: str | None = None) -> list[UserRecord]:
        """The users a tenant holds (None: the default tenant), by username."""
        return self._read(lambda store: store.users(DEFAULT_TENANT if tenant is None else tenant))

    def _read(self, query: Callable[[Store], _T]) -> _T:
        store = self._store
        if store is not None:
            return query(store)
        # Not running: read the state directory directly, so a test can look after stop().
        self.state_dir.mkdir(parents=True, exist_ok=True)
        store = Store(self.state_dir / _DB_FILE, self.state_dir / "uploads")
        try:
            return query(store)
        finally:
            store.close()

    # -- test controls -------------------------------------------------------

    def inject(
        self, fault: str, count: int = 1, *, retry_after: int | None = None, hang_seconds: float | None = None
    ) -> None:
        """Make the next `count` import requests fail with `fault` (see faults.FAULTS)."""
        self._faults.inject(fault, count, retry_after=retry_after, hang_seconds=hang_seconds)

    def clear_faults(self) -> None:
        self._faults.clear()

    def set_accounts(self, accounts: Mapping[str, tuple[str, bool]]) -> None:
        self._accounts.replace(accounts)

    def set_password(self, username: str, password: str) -> None:
        self._accounts.set_password(username, password)

    def account_names(self) -> list[str]:
        return self._accounts.usernames()

    def copy_ca(self, destination: Path) -> Path:
        """Copy the CA PEM for clients that want it elsewhere."""
        if self.ca_file is None:
            raise RuntimeError("no CA: the emulator is not using TLS or not started")
        return Path(shutil.copyfile(self.ca_file, destination))
