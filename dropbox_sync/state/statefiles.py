"""State files (journal, notify.json, status.json) are conveniences, never a reason to stop.

A damaged one is set aside under a name that says so and when
(``journal.sqlite3.damaged-20261202T031500Z``), kept for a person to look at,
and a fresh one is started: the folders are the truth, so a lost state file
costs history or a pending email, never a file (DESIGN §9).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

from loguru import logger

from dropbox_sync.errors import StateFileDamaged


def set_aside(path: Path, companions: tuple[str, ...] = ()) -> Path | None:
    """Rename a damaged state file (and e.g. its "-wal" companion) out of the way; None if it cannot be."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.damaged-{stamp}")
    number = 1
    while target.exists():  # twice in one second: never overwrite an earlier one
        number += 1
        target = path.with_name(f"{path.name}.damaged-{stamp}-{number}")
    try:
        os.rename(path, target)
    except FileNotFoundError:
        return None
    except OSError as exc:  # held open by another program (Windows), or a read-only state dir
        logger.error("cannot set aside the damaged {}: {}", path, exc.strerror or exc)
        return None
    for suffix in companions:
        try:
            os.rename(f"{path}{suffix}", f"{target}{suffix}")
        except OSError:
            pass  # absent (the usual case), or held: it belongs to the damaged file either way
    return target


def load_json_object(path: Path) -> dict[str, Any] | None:
    """The JSON object in a state file; None when there is no file; StateFileDamaged when it is
    not a readable JSON object (binary, truncated, another JSON type, nested too deep)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except RecursionError:
        raise StateFileDamaged(f"{path}: JSON nested too deep") from None
    except UnicodeDecodeError:
        raise StateFileDamaged(f"{path}: not text (binary data)") from None
    except ValueError as exc:
        raise StateFileDamaged(f"{path}: not valid JSON ({exc})") from None
    except OSError as exc:
        raise StateFileDamaged(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if not isinstance(data, dict):
        raise StateFileDamaged(f"{path}: holds a JSON {type(data).__name__}, not an object")
    return data
