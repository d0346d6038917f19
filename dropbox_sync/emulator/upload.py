"""Receiving a request body: streamed off the socket, first file part to disk.

Memory stays flat whatever the upload size: the body is read in 64 KiB pieces,
fed to python_multipart's streaming parser, and only the first part carrying a
filename is written (to a temp file) and hashed. Every other byte is discarded.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from dropbox_sync.emulator import wording
from dropbox_sync.errors import BadUpload, ClientGone

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

CHUNK = 64 * 1024


class Reader(Protocol):
    """The part of a buffered socket file the body readers use."""

    def read(self, size: int = -1, /) -> bytes: ...
    def readline(self, size: int = -1, /) -> bytes: ...


def body_chunks(rfile: Reader, headers: Message) -> Iterator[bytes]:
    """The request body, honouring chunked encoding or Content-Length."""
    if "chunked" in headers.get("Transfer-Encoding", "").lower():
        yield from _chunked(rfile)
        return
    try:
        remaining = int(headers.get("Content-Length", "0"))
    except ValueError:
        remaining = -1
    if remaining < 0:
        raise BadUpload("Invalid Content-Length.")
    while remaining > 0:
        data = rfile.read(min(CHUNK, remaining))
        if not data:
            raise ClientGone()
        remaining -= len(data)
        yield data


def _chunked(rfile: Reader) -> Iterator[bytes]:
    while True:
        line = rfile.readline(1024)
        if not line.endswith(b"\n"):
            raise ClientGone()
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise BadUpload("Invalid chunked encoding.") from None
        if size == 0:
            _skip_trailers(rfile)
            return
        while size > 0:
            data = rfile.read(min(CHUNK, size))
            if not data:
                raise ClientGone()
            size -= len(data)
            yield data
        if rfile.readline(1024) not in (b"\r\n", b"\n"):
            raise BadUpload("Invalid chunked encoding.")


def _skip_trailers(rfile: Reader) -> None:
    while True:
        line = rfile.readline(8192)
        if not line:
            raise ClientGone()
        if line in (b"\r\n", b"\n"):
            return


def drain(chunks: Iterator[bytes]) -> None:
    """Read and drop a body so the connection can carry the next request."""
    for _ in chunks:
        pass


@dataclass
class ReceivedFile:
    """The first file part; `path` is None when the body had no file part."""

    path: Path | None = None
    size: int = 0
    sha256: str | None = None
    filename: str | None = None
    field_name: str | None = None

    def discard(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path = None


@dataclass
class _FirstFileSink:
    tmp_dir: Path
    result: ReceivedFile = field(default_factory=ReceivedFile)
    ended: bool = False
    _header_field: bytearray = field(default_factory=bytearray)
    _header_value: bytearray = field(default_factory=bytearray)
    _disposition: bytes = b""
    _out: BinaryIO | None = None
    _hash: hashlib._Hash | None = None
    _done: bool = False  # the file part has been taken; ignore the rest

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda d, s, e: self._header_field.extend(d[s:e]),
            "on_header_value": lambda d, s, e: self._header_value.extend(d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def _part_begin(self) -> None:
        self._disposition = b""

    def _header_end(self) -> None:
        if bytes(self._header_field).strip().lower() == b"content-disposition":
            self._disposition = bytes(self._header_value)
        self._header_field.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        if self._done:
            return
        _, params = parse_options_header(self._disposition)
        if b"filename" not in params:
            return  # a plain form field: the vendor skips it
        fd, name = tempfile.mkstemp(prefix="upload-", suffix=".part", dir=self.tmp_dir)
        self._out = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()
        self.result.path = Path(name)
        self.result.filename = params[b"filename"].decode("utf-8", "replace")
        self.result.field_name = params.get(b"name", b"").decode("utf-8", "replace")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._out is None or self._hash is None:
            return
        piece = memoryview(data)[start:end]
        self._out.write(piece)
        self._hash.update(piece)
        self.result.size += end - start

    def _part_end(self) -> None:
        if self._out is not None and self._hash is not None:
            self._out.close()
            self.result.sha256 = self._hash.hexdigest()
            self._out = None
            self._done = True

    def _end(self) -> None:
        self.ended = True

    def abandon(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None
        self.result.discard()


def _boundary(content_type: str) -> bytes:
    ctype, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        raise BadUpload(wording.NOT_MULTIPART)
    return boundary


def receive_first_file(chunks: Iterator[bytes], content_type: str, tmp_dir: Path) -> ReceivedFile:
    """Consume the whole body; return its first file part, saved to tmp_dir.

    Raises BadUpload (after draining the body) when the body is not
    multipart/form-data or cannot be parsed, and ClientGone when it ends early.
    """
    try:
        boundary = _boundary(content_type)
    except BadUpload:
        drain(chunks)
        raise
    sink = _FirstFileSink(tmp_dir)
    try:
        parser = MultipartParser(boundary, sink.callbacks())
        for chunk in chunks:
            parser.write(chunk)
    except FormParserError:
        sink.abandon()
        drain(chunks)
        raise BadUpload(wording.MALFORMED_MULTIPART) from None
    except BaseException:
        sink.abandon()
        raise
    if not sink.ended or (sink.result.path is not None and sink.result.sha256 is None):
        sink.abandon()
        raise BadUpload(wording.MALFORMED_MULTIPART)
    return sink.result
