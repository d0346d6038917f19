"""Talking to Infiniti's import endpoint: the only user of httpx.

One ``ImportClient`` per inbox keeps a connection pool (keep-alive across the
files of a batch). ``upload`` streams the file from disk and turns whatever
comes back into a ``Reply``; failures that produced no usable reply become
``HoldError`` (fix the config) or ``TransientError`` (try later), translated
here so no httpx or ssl exception travels further.

Every request has one overall deadline (``request_deadline``): httpx's timeouts
apply to each socket operation, so a server trickling a byte a second never
trips them. Of a reply, at most ``MAX_REPLY_BYTES`` is read; reply.py reads it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import socket
import ssl
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

import httpx

from dropbox_sync import __version__
from dropbox_sync.config import InboxConfig, password_of
from dropbox_sync.errors import HoldError, TransientError
from dropbox_sync.pipeline.archive_names import display_name
from dropbox_sync.pipeline.outcome import NOT_INFINITI
from dropbox_sync.pipeline.reply import MAX_REPLY_BYTES, Reply, read_reply
from dropbox_sync.pipeline.workfiles import open_claimed
from dropbox_sync.redact import redact_url, scrub
from dropbox_sync.tls import client_context

__all__ = ["ImportClient", "Reply", "request_deadline"]

USER_AGENT = f"dropbox-sync/{__version__}"
# The slowest upload we wait for: 256 kbit/s, below any school's line. Sending a
# file may take its size at this rate on top of connect_timeout + timeout.
SLOWEST_SEND_RATE = 32 * 1024  # bytes per second
ProgressCallback = Callable[[int], None]


def request_deadline(inbox: InboxConfig, size: int) -> float:
    """Seconds one upload of ``size`` bytes may take in all: connecting, sending the file at
    no less than SLOWEST_SEND_RATE, the server's work and its whole reply."""
    return inbox.connect_timeout + inbox.timeout + size / SLOWEST_SEND_RATE


class ImportClient:
    def __init__(self, inbox: InboxConfig, *, transport: httpx.BaseTransport | None = None) -> None:
        self.inbox = inbox
        # A transport passed in (tests only) makes httpx ignore verify= and the
        # proxy environment: only MockTransport-based tests do that.
        self._http = _CookielessClient(
            verify=client_context(inbox.ca_bundle, verify=inbox.verify_tls),
            # httpx.BasicAuth sets the header on the first request: no 401
            # round trip, which would mean sending a large file twice.
            auth=httpx.BasicAuth(inbox.username, password_of(inbox).reveal()),
            timeout=httpx.Timeout(inbox.timeout, connect=inbox.connect_timeout),
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            follow_redirects=False,
            # trust_env: HTTPS_PROXY / NO_PROXY (and on Windows the system
            # proxy settings httpx reads) apply unless 'proxy' names one.
            trust_env=True,
            proxy=inbox.proxy,
            transport=transport,
        )
        # Every socket this client opened (kept-alive ones serve later requests), so a
        # request's deadline can end it whatever phase it is in.
        self._sockets: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        self._sockets_lock = threading.Lock()
        self._watchdog = _Watchdog()
        self._urls: dict[str, httpx.URL] = {}  # each route's URL parsed once, not per file

    def close(self) -> None:
        self._watchdog.close()
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def upload(
        self,
        path: Path,
        *,
        filename: str | None = None,
        url: str | None = None,
        progress: ProgressCallback | None = None,
        on_sent: Callable[[], None] | None = None,
    ) -> Reply:
        """POST ``path`` as the first (only) file part to ``url`` (default: the inbox's).
        ``on_sent``: called on this thread once the whole request is out, before the reply is
        read (the server's turn); it must not raise, and should be short next to the deadline."""
        url = url or self.inbox.url
        safe_url = redact_url(url)
        # Infiniti ignores the file name, but httpx must encode it: a name
        # that is not valid UTF-8 (Linux keeps those as surrogates) would
        # make building the request fail.
        name = display_name(filename or path.name)
        with open_claimed(path) as raw:
            stream = _HashingReader(raw, progress)
            # Backed by a real file: httpx streams it in 64 KiB chunks and takes
            # Content-Length from fstat, so memory stays flat for any size.
            files = {"file": (name, stream, "text/csv")}
            budget = request_deadline(self.inbox, os.fstat(raw.fileno()).st_size)
            started = time.monotonic()
            with _Deadline(budget, self._sockets, self._sockets_lock, self._watchdog, on_sent) as deadline:
                try:
                    target = self._urls.get(url) or self._urls.setdefault(url, httpx.URL(url))
                    with self._http.stream(
                        "POST", target, files=files, extensions={"trace": deadline.trace}
                    ) as response:
                        content, truncated = _read_capped(response)
                except httpx.HTTPError as exc:
                    if deadline.expired:
                        raise TransientError(
                            f"{safe_url} did not finish the upload and its reply within {budget:.0f} s "
                            "(connect_timeout + timeout + the file at 32 KiB/s)",
                            read_timeout=True,
                        ) from exc
                    if deadline.sent and _unreadable_reply(exc):
                        # The whole file reached the server, which answered in a way HTTP cannot read
                        # (a header too big, a broken chunk or encoding): the import may have happened,
                        # so it counts like any reply that is not Infiniti's: a few tries, then a hold.
                        raise TransientError(
                            f"{safe_url} answered, but its reply cannot be read ({scrub(str(exc))}) ({NOT_INFINITI})",
                            foreign=True,
                        ) from exc
                    raise _translate(exc, safe_url) from exc
        _refuse_redirect(response, safe_url)
        reply = read_reply(
            response.status_code,
            content,
            content_type=response.headers.get("Content-Type", ""),
            retry_after=response.headers.get("Retry-After"),
            truncated=truncated,
            seconds=time.monotonic() - started,
        )
        return dataclasses.replace(reply, sha256=stream.hexdigest())


class _NoCookies(httpx.Cookies):
    """A jar that keeps nothing and sends nothing (see ``_CookielessClient``)."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None

    def set_cookie_header(self, request: httpx.Request) -> None:
        return None


_NO_COOKIES = _NoCookies()


class _CookielessClient(httpx.Client):
    """An httpx client without a cookie jar. Infiniti's import is authenticated by Basic Auth
    on every request; a cookie a server (or a proxy before it) sets must not be kept and
    replayed on the next upload, where a hostile reply could tag or steer the requests that
    follow. httpx has no switch for it (encode/httpx#2992, still open): a ``CookieJar`` that
    refuses everything would still cost the parse httpx does before asking the jar, a tenth
    of the client's CPU per small file, so the client's ``cookies`` is an empty jar that
    never changes. Nothing of ours sets cookies on the client."""

    @property  # type: ignore[override]
    def cookies(self) -> httpx.Cookies:
        return _NO_COOKIES


class _Deadline:
    """Ends a request that outlives its budget by shutting its socket down from the
    client's watchdog thread: a blocked read or write then fails at once, in any phase
    (headers, body, a trickled reply). Sockets are learnt from httpcore's documented
    ``trace`` request extension (connection.connect_tcp / start_tls events carry the
    network stream)."""

    def __init__(
        self,
        seconds: float,
        sockets: weakref.WeakSet[socket.socket],
        lock: threading.Lock,
        watchdog: _Watchdog,
        on_sent: Callable[[], None] | None = None,
    ) -> None:
        self.on_sent = on_sent
        self.expired = False
        self.sent = False  # the whole request, file included, went out
        self.seconds = seconds
        self._sockets = sockets
        self._lock = lock
        self._watchdog = watchdog

    def __enter__(self) -> Self:
        self._watchdog.arm(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._watchdog.disarm(self)  # returns only once an expiry under way has finished

    def trace(self, event: str, info: dict[str, Any]) -> None:
        if event.endswith("send_request_body.complete"):  # httpcore's http11. and http2. events
            self.sent = True
            if self.on_sent is not None:
                self.on_sent()
        if event.endswith(("connect_tcp.complete", "start_tls.complete")):
            sock = info["return_value"].get_extra_info("socket")
            if sock is not None:
                with self._lock:
                    self._sockets.add(sock)

    def expire(self) -> None:
        self.expired = True
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            try:
                # The plain socket call, also for an SSLSocket: its own shutdown() would
                # tear down TLS state under the thread that is reading.
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass  # already closed


class _Watchdog:
    """The thread that expires a client's request deadlines. One thread serves a batch of
    uploads (a thread started and joined per request cost more than the rest of our
    per-file work). Arming and disarming only set fields: the thread looks every ``TICK``
    seconds (a deadline is at least 2 s: connect_timeout and timeout are >= 1), so a burst
    of files does not wake it twice per file. It ends once nothing has been armed for a
    ``TICK``, or when the client closes, so an idle client holds no thread."""

    TICK = 0.1

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._armed: _Deadline | None = None
        self._due = 0.0
        self._last_armed = 0.0
        self._thread: threading.Thread | None = None
        self._closed = False

    def arm(self, deadline: _Deadline) -> None:
        with self._cond:
            self._last_armed = time.monotonic()
            self._armed, self._due = deadline, self._last_armed + deadline.seconds
            if self._thread is None:
                self._closed = False
                self._thread = threading.Thread(target=self._run, name="upload-deadline", daemon=True)
                self._thread.start()

    def disarm(self, deadline: _Deadline) -> None:
        with self._cond:  # expire() runs holding it: after this, none is under way
            if self._armed is deadline:
                self._armed = None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _run(self) -> None:
        with self._cond:
            try:
                while not self._closed:
                    now = time.monotonic()
                    if self._armed is not None and now >= self._due:
                        armed, self._armed = self._armed, None
                        armed.expire()
                    elif self._armed is None and now - self._last_armed >= self.TICK:
                        return
                    else:
                        self._cond.wait(self.TICK)
            finally:
                self._thread = None


def _read_capped(response: httpx.Response) -> tuple[bytes, bool]:
    """At most MAX_REPLY_BYTES of the (decoded) body, and whether there was more;
    the rest is never read (leaving the block closes the connection)."""
    buffer = bytearray()
    for chunk in response.iter_bytes():
        buffer += chunk
        if len(buffer) > MAX_REPLY_BYTES:
            return bytes(buffer[:MAX_REPLY_BYTES]), True
    return bytes(buffer), False


class _HashingReader:
    """A file wrapper that hashes what httpx reads (so the result's sha256 is of
    exactly the bytes sent, without a second pass over a large file) and
    reports progress for the progress bar."""

    def __init__(self, raw, progress: ProgressCallback | None) -> None:
        self._raw = raw
        self._progress = progress
        self._digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        chunk = self._raw.read(size)
        self._digest.update(chunk)
        if self._progress is not None:
            self._progress(len(chunk))
        return chunk

    def seek(self, offset: int, whence: int = 0) -> int:
        # httpx rewinds the file before streaming it: start the digest over.
        position = self._raw.seek(offset, whence)
        if position == 0:
            self._digest = hashlib.sha256()
        return position

    def hexdigest(self) -> str:
        return self._digest.hexdigest()

    def __getattr__(self, name: str):
        return getattr(self._raw, name)


def _refuse_redirect(response: httpx.Response, safe_url: str) -> None:
    if 300 <= response.status_code < 400:
        where = scrub(response.headers.get("Location", "?"))
        raise HoldError(
            f"{safe_url} answered HTTP {response.status_code}, a redirect to {where}: put the final address in 'url'",
            status=response.status_code,
        )


# httpcore's words when the connection ends before any byte of a reply: a passing fault
# (a server restarting), not a reply. Any other protocol error means bytes came back unreadable.
_NO_REPLY = "Server disconnected without sending a response"


def _unreadable_reply(exc: httpx.HTTPError) -> bool:
    return isinstance(exc, httpx.RemoteProtocolError | httpx.DecodingError) and _NO_REPLY not in str(exc)


def _translate(exc: httpx.HTTPError, safe_url: str) -> Exception:
    """An httpx failure as HoldError (config must change) or TransientError."""
    untrusted = _untrusted_certificate(exc)
    if untrusted is not None:
        return HoldError(
            f"TLS to {safe_url} failed: certificate not trusted ({untrusted}). If the server uses a "
            "private or school proxy CA, install it in the OS trust store or set ca_bundle to its PEM file"
        )
    if isinstance(exc, httpx.ReadTimeout):
        return TransientError(f"{safe_url} did not answer in time (timeout)", read_timeout=True)
    if isinstance(exc, httpx.TimeoutException):
        return TransientError(f"{safe_url} timed out ({type(exc).__name__})")
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return HoldError(f"{safe_url} cannot be used: {scrub(str(exc))}")
    handshake = _tls_error(exc)
    if handshake is not None:
        # A connection dropped mid-handshake (a server restarting, a load balancer
        # without a backend) says nothing about certificates: try again later.
        return TransientError(f"TLS connection to {safe_url} failed before a reply ({handshake})")
    reason = scrub(str(exc)) or type(exc).__name__
    return TransientError(f"cannot reach {safe_url}: {reason}")


def _causes(exc: BaseException):
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _untrusted_certificate(exc: BaseException) -> str | None:
    """Why the server's certificate was refused, if that is what failed: the only TLS
    failure that holds the inbox, since only a config (or server) fix helps."""
    for cause in _causes(exc):
        if isinstance(cause, ssl.SSLCertVerificationError):
            return scrub(str(cause.verify_message or cause.reason or cause))
    if "CERTIFICATE_VERIFY_FAILED" in str(exc):
        return scrub(str(exc))
    return None


def _tls_error(exc: BaseException) -> str | None:
    for cause in _causes(exc):
        if isinstance(cause, ssl.SSLError):
            return scrub(f"{type(cause).__name__}: {cause.reason or cause}")
    return None
