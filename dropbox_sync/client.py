"""Talking to Infiniti's import endpoint: the only user of httpx.

One ``ImportClient`` per inbox keeps a connection pool (keep-alive across the
files of a batch). ``upload`` streams the file from disk and turns whatever
comes back into a ``Reply``; failures that produced no usable reply become
``HoldError`` (fix the config) or ``TransientError`` (try later), translated
here so no httpx or ssl exception travels further.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.utils
import hashlib
import json
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import truststore

from dropbox_sync import __version__
from dropbox_sync.archive import display_name, open_claimed
from dropbox_sync.config import InboxConfig
from dropbox_sync.errors import HoldError, TransientError
from dropbox_sync.redact import redact_url, scrub

USER_AGENT = f"dropbox-sync/{__version__}"
# A reply that is not JSON (a proxy's HTML error page) is kept this long in results.
TEXT_SNIPPET = 2000
ProgressCallback = Callable[[int], None]


@dataclass(frozen=True)
class Reply:
    """What the server answered, whatever it was."""

    status: int
    body: dict[str, Any] | None  # the JSON object, when the reply was one
    text: str  # start of the body when it was not JSON ("" otherwise)
    retry_after: float | None
    seconds: float
    sha256: str | None = None  # of the bytes sent, hashed as they went out

    @property
    def success(self) -> bool | None:
        """The server's verdict, or None if the reply carries none."""
        if self.body is None:
            return None
        value = self.body.get("success")
        return value if isinstance(value, bool) else None

    @property
    def summary(self) -> str:
        if self.body is not None and isinstance(self.body.get("summary"), str):
            return self.body["summary"]
        return self.text[:200].strip() or f"HTTP {self.status}"


def ssl_context(inbox: InboxConfig) -> ssl.SSLContext:
    """The OS trust store (so a school's proxy CA in Windows works), or ``ca_bundle``."""
    if inbox.ca_bundle is not None:
        return ssl.create_default_context(cafile=str(inbox.ca_bundle))
    if not inbox.verify_tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    # truststore's docs: libraries use truststore.SSLContext directly rather
    # than inject_into_ssl(), which would change every other user of ssl.
    return truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


class ImportClient:
    def __init__(self, inbox: InboxConfig, *, transport: httpx.BaseTransport | None = None) -> None:
        self.inbox = inbox
        # A transport passed in (tests only) makes httpx ignore verify= and the
        # proxy environment: only MockTransport-based tests do that.
        self._http = httpx.Client(
            verify=ssl_context(inbox),
            # httpx.BasicAuth sets the header on the first request: no 401
            # round trip, which would mean sending a large file twice.
            auth=httpx.BasicAuth(inbox.username, inbox.password.reveal()),
            timeout=httpx.Timeout(inbox.timeout, connect=inbox.connect_timeout),
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            follow_redirects=False,
            # trust_env: HTTPS_PROXY / NO_PROXY (and on Windows the system
            # proxy settings httpx reads) apply unless 'proxy' names one.
            trust_env=True,
            proxy=inbox.proxy,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ImportClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def upload(self, path: Path, *, filename: str | None = None, url: str | None = None,
               progress: ProgressCallback | None = None) -> Reply:  # fmt: skip
        """POST ``path`` as the first (only) file part to ``url`` (default: the inbox's)."""
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
            try:
                response = self._http.post(url, files=files)
            except httpx.HTTPError as exc:
                raise _translate(exc, safe_url) from exc
        return dataclasses.replace(_reply(response, safe_url), sha256=stream.hexdigest())


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


def _reply(response: httpx.Response, safe_url: str) -> Reply:
    seconds = response.elapsed.total_seconds() if response.is_closed else 0.0
    body = _json_object(response)
    retry_after = _retry_after(response.headers.get("Retry-After"))
    if 300 <= response.status_code < 400:
        where = scrub(response.headers.get("Location", "?"))
        raise HoldError(
            f"{safe_url} answered HTTP {response.status_code}, a redirect to {where}: "
            "put the final address in 'url'",
            status=response.status_code,
        )
    text = "" if body is not None else scrub(response.text[:TEXT_SNIPPET])
    return Reply(response.status_code, body, text, retry_after, seconds)


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        value = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _retry_after(value: str | None) -> float | None:
    """Retry-After is either seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())


def _translate(exc: httpx.HTTPError, safe_url: str) -> Exception:
    """An httpx failure as HoldError (config must change) or TransientError."""
    tls = _tls_failure(exc)
    if tls is not None:
        return HoldError(
            f"TLS to {safe_url} failed: {tls}. If the server uses a private or school "
            "proxy CA, install it in the OS trust store or set ca_bundle to its PEM file"
        )
    if isinstance(exc, httpx.ReadTimeout):
        return TransientError(f"{safe_url} did not answer in time (timeout)", read_timeout=True)
    if isinstance(exc, httpx.TimeoutException):
        return TransientError(f"{safe_url} timed out ({type(exc).__name__})")
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return HoldError(f"{safe_url} cannot be used: {scrub(str(exc))}")
    reason = scrub(str(exc)) or type(exc).__name__
    return TransientError(f"cannot reach {safe_url}: {reason}")


def _tls_failure(exc: BaseException) -> str | None:
    """The reason, if the chain of causes holds an SSL error."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return f"certificate not trusted ({current.verify_message or current.reason})"
        if isinstance(current, ssl.SSLError):
            return f"TLS error ({current.reason or current})"
        current = current.__cause__ or current.__context__
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text or "SSL" in text:
        return scrub(text)
    return None
