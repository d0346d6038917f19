"""Retention: processed/ files older than ``keep_days`` by every measure we have are deleted.

Only processed/: failed/ and held/ need a person and are never pruned. A file
goes with its result and companions, and only when every time known about it
says it is old (a clock once years behind must not delete yesterday's file).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path

from loguru import logger

from dropbox_sync.pipeline import workdirs
from dropbox_sync.pipeline.archive_names import (
    RESULT_SUFFIX,
    SENT_SUFFIX,
    archived_at,
    is_archived_file,
    original_name_file,
    result_name,
)
from dropbox_sync.pipeline.folder import Folder
from dropbox_sync.pipeline.settle import Clock
from dropbox_sync.pipeline.workdirs import PROCESSED

PRUNE_EVERY = 3600.0  # retention of processed/ is checked hourly


class Retention:
    """One inbox's ``keep_days``: which files this process filed, and when by its own monotonic
    clock (young whatever the wall clock said or says), and an hourly ``prune_processed``."""

    def __init__(self, name: str, inbox: Path, keep_days: float, clock: Clock, wall: Callable[[], dt.datetime]) -> None:
        self.name, self.inbox, self.keep_days = name, inbox, keep_days
        self.clock, self.wall = clock, wall
        self._filed_at: dict[str, float] = {}  # processed/ name -> our clock when it went there
        self._next = 0.0

    def filed(self, name: str) -> None:
        """``name`` went into processed/ now."""
        if self.keep_days > 0:
            self._filed_at[name] = self.clock()

    def prune_if_due(self) -> None:
        if self.keep_days <= 0 or self.clock() < self._next:
            return
        self._next = self.clock() + PRUNE_EVERY
        keep = self.keep_days * 86400
        self._filed_at = {n: t for n, t in self._filed_at.items() if self.clock() - t < keep}
        removed = prune_processed(self.inbox, self.keep_days, self.wall(), spare=frozenset(self._filed_at))
        if removed:
            logger.info(
                'inbox "{}": removed {} file(s) older than {:g} days from processed/ (keep_days)',
                self.name,
                len(removed),
                self.keep_days,
            )


def prune_processed(
    inbox: Path, keep_days: float, now: dt.datetime, *, spare: frozenset[str] = frozenset()
) -> list[Path]:
    """Delete processed/ files (and results) older than ``keep_days`` by every measure we have.

    Only processed/: failed/ and held/ need a person and are never pruned. No
    single time is trusted: a claim made while the clock was years behind
    stamps the name years back, and an export keeps its source's old mtime.
    The youngest of the name's stamp, the file's and its result's mtime and
    ctime, and the times inside the result decides. ``spare``: names known to
    be young another way (archived by this process within keep_days of its
    monotonic clock). Through processed/'s own handle: a processed/ swapped for
    a link is never pruned into (workdirs.py)."""
    cutoff = now - dt.timedelta(days=keep_days)
    removed = []
    with workdirs.inbox_folders(inbox) as folders:
        processed = folders.optional(PROCESSED)
        names = set(processed.names()) if processed is not None else set()
        for name in sorted(names):
            if name.endswith(RESULT_SUFFIX):
                if name[: -len(RESULT_SUFFIX)] in names:
                    continue  # goes with its file
                name = name[: -len(RESULT_SUFFIX)]  # a result left alone (aftercare)
            elif not is_archived_file(name, names):
                continue  # a companion: goes with its file
            if name in spare or not _older_than(processed, name, cutoff):
                continue
            for victim in (result_name(name), original_name_file(name), name + SENT_SUFFIX, name):
                try:
                    processed.unlink(victim, missing_ok=True)
                except OSError:
                    continue
            removed.append(inbox / PROCESSED / name)
    return removed


def _older_than(folder: Folder, name: str, cutoff: dt.datetime) -> bool:
    """True only if every time known about an archived file and its result is before ``cutoff``."""
    stamp = archived_at(name)
    if stamp is None or stamp >= cutoff:
        return False  # not named by us, or young by its name
    for entry in (name, result_name(name)):
        try:
            info = folder.lstat(entry)
        except FileNotFoundError:
            continue
        except OSError:
            return False  # cannot tell: keep it
        for seconds in (info.st_mtime, info.st_ctime):
            if dt.datetime.fromtimestamp(seconds, dt.UTC) >= cutoff:
                return False
    try:
        ours = json.loads(folder.read_bytes(result_name(name))).get("dropbox_sync")
    except (OSError, ValueError, AttributeError):
        ours = None
    for key in ("started", "finished"):
        text = ours.get(key) if isinstance(ours, dict) else None
        try:
            moment = dt.datetime.fromisoformat(text) if isinstance(text, str) else None
        except ValueError:
            moment = None
        if moment is not None and moment.astimezone(dt.UTC) >= cutoff:
            return False
    return True
