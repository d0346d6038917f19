"""Turning an export in another encoding (cp1252, UTF-16...) into the UTF-8 Infiniti needs.

Only a file that is not valid UTF-8 already is transcoded (``prepare.py``
decides). The original bytes are what is archived; the UTF-8 copy is a
temporary file beside the claimed one in sending/ (or in a scratch folder for
``check`` and ``send``), streamed in chunks so memory stays flat.
"""

from __future__ import annotations

import codecs
import os
from pathlib import Path

from dropbox_sync.archive import open_claimed
from dropbox_sync.errors import TranscodeError

CHUNK = 1 << 20


def utf8_copy_path(claimed: Path) -> Path:
    # A dot name: never taken for a claimed file, and tidied after a crash.
    return claimed.with_name(f".{claimed.name}.utf8.tmp")


def to_utf8(claimed: Path, encoding: str, *, folder: Path | None = None) -> Path:
    """Write the UTF-8 copy of ``claimed`` (beside it, or in ``folder``) and return its path."""
    target = utf8_copy_path(claimed)
    if folder is not None:
        target = folder / target.name
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    offset = 0
    try:
        with open_claimed(claimed) as source, open(target, "wb") as sink:
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
    except (TranscodeError, UnicodeDecodeError) as exc:
        target.unlink(missing_ok=True)
        if isinstance(exc, TranscodeError):
            raise
        raise TranscodeError(f"File is not valid {encoding}: it ends in the middle of a character.") from None
    return target
