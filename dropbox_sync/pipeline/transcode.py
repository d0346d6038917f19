"""Turning an export in another encoding (cp1252, UTF-16...) into the UTF-8 Infiniti needs.

Only a file that is not valid UTF-8 already is transcoded (``prepare.py``
decides). The original bytes are what is archived; the UTF-8 copy is a
temporary file beside the claimed one in sending/ (or in a scratch folder for
``check`` and ``send``), streamed in chunks so memory stays flat. It has an
unpredictable dot-name, is made with O_EXCL and, in sending/, reached only
through the folder's handle (``workfiles.create_temporary``, workdirs.py): a link
planted at a guessed name is never written through.
"""

from __future__ import annotations

import codecs
import os
from pathlib import Path
from typing import BinaryIO

from dropbox_sync.errors import TranscodeError
from dropbox_sync.pipeline import workfiles

CHUNK = 1 << 20


def to_utf8(claimed: Path, encoding: str, *, folder: Path | None = None) -> Path:
    """Write the UTF-8 copy of ``claimed`` (beside it, or in ``folder``) and return its path."""
    with workfiles.open_claimed(claimed) as source:
        target, sink = workfiles.create_temporary(folder / claimed.name if folder else claimed, ".utf8")
        try:
            with sink:
                _write_utf8(source, sink, encoding)
        except BaseException:
            workfiles.discard(target)
            raise
    return target


def _write_utf8(source: BinaryIO, sink: BinaryIO, encoding: str) -> None:
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    offset = 0
    try:
        while chunk := source.read(CHUNK):
            try:
                sink.write(decoder.decode(chunk).encode("utf-8"))
            except UnicodeDecodeError as exc:
                raise TranscodeError(
                    f"File is not valid {encoding}: byte offset {offset + max(exc.start, 0)}. "
                    "Check source_encoding in the config."
                ) from None
            offset += len(chunk)
        sink.write(decoder.decode(b"", final=True).encode("utf-8"))
        sink.flush()
        os.fsync(sink.fileno())
    except UnicodeDecodeError:
        raise TranscodeError(f"File is not valid {encoding}: it ends in the middle of a character.") from None
