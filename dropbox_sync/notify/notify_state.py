"""What the notifier must remember across restarts: ``notify.json`` in the state dir.

Unsent failed files and notes, hold and stale episodes, when each kind of
email last went out. The file is read back with every field checked: one of
the wrong shape (any JSON type, truncated, binary) is set aside under a dated
name, kept for a person (it may list failures nobody was told about), logged,
and the notifier starts afresh rather than failing every few seconds.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from loguru import logger

from dropbox_sync.errors import StateFileDamaged
from dropbox_sync.pipeline import workfiles
from dropbox_sync.state import statefiles

MAX_FILES = 200  # failed files kept for one digest; more are counted, not listed


@dataclass
class FailedFile:
    inbox: str
    original: str
    archived: str  # path of the file in failed/
    summary: str
    when: str  # ISO time it was archived
    stage: str = "upload"  # or "preflight": never sent
    rows: list[list[str]] = field(default_factory=list)  # [row, outcome], at most MAX_ROWS
    more_rows: int = 0


RESOLVED, LEAVERS = "resolved", "leavers"  # the kinds of Note


@dataclass
class Note:
    """For the next digest: an alarm that has cleared, or the leavers an import reported."""

    text: str
    when: str
    kind: str = RESOLVED  # or LEAVERS (leavers = "report" | "deactivate", changes.py)


@dataclass
class Hold:
    since: str
    reason: str
    alerted: bool = False


@dataclass
class State:
    """Everything that must survive a restart (saved as notify.json)."""

    failed: list[FailedFile] = field(default_factory=list)
    failed_overflow: int = 0
    notes: list[Note] = field(default_factory=list)
    holds: dict[str, Hold] = field(default_factory=dict)
    watching_since: dict[str, str] = field(default_factory=dict)  # inbox -> first seen (stale baseline)
    stale_alerted: dict[str, str] = field(default_factory=dict)  # inbox -> the last success then
    last_success: dict[str, str] = field(default_factory=dict)  # inbox -> from reports
    last_sent: dict[str, str] = field(default_factory=dict)  # kind -> time

    def add_note(self, text: str, when: str, kind: str = RESOLVED) -> None:
        """Keep a note for the next digest (``when`` an ISO stamp), up to MAX_FILES of them."""
        if len(self.notes) < MAX_FILES:
            self.notes.append(Note(text, when, kind))

    @classmethod
    def load(cls, path: Path | None) -> State:
        if path is None:
            return cls()
        try:
            raw = statefiles.load_json_object(path)
            return cls() if raw is None else cls.from_json(raw)
        except StateFileDamaged as exc:
            moved = statefiles.set_aside(path)
            logger.error(
                "{}; set aside as {}: notification history starts afresh (failed files listed there "
                "were not mailed; they are in the failed/ folders)",
                exc,
                moved.name if moved else "(it could not be moved)",
            )
            return cls()

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> State:
        """The state in ``raw``, every field checked; StateFileDamaged names the first wrong one."""
        failed = [_record(FailedFile, item, "failed") for item in _typed(raw, "failed", list, [])]
        for item in failed:
            if not all(isinstance(r, list) and len(r) == 2 and all(isinstance(x, str) for x in r) for r in item.rows):
                raise StateFileDamaged(f"notify.json: failed rows of {item.original!r} are not [row, outcome] pairs")
        holds = _typed(raw, "holds", dict, {})
        return cls(
            failed=failed[:MAX_FILES],
            failed_overflow=_typed(raw, "failed_overflow", int, 0),
            notes=[_record(Note, item, "notes") for item in _typed(raw, "notes", list, [])][:MAX_FILES],
            holds={_text(name, "holds"): _record(Hold, item, "holds") for name, item in holds.items()},
            **{key: _text_map(raw, key) for key in ("watching_since", "stale_alerted", "last_success", "last_sent")},
        )

    def save(self, path: Path | None, previous: dict[str, Any] | None) -> dict[str, Any]:
        """Write the state if it changed since ``previous``; returns what is now on disk."""
        data = asdict(self)
        if path is None or data == previous:
            return data
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            workfiles.write_json_atomically(path, data)
        except OSError as exc:
            logger.warning("cannot write {}: {}", path, exc.strerror or exc)
            return previous or {}
        return data


_SCALARS = {"str": str, "int": int, "bool": bool}


def _typed(raw: dict[str, Any], key: str, kind: type, default: Any) -> Any:
    value = raw.get(key, default)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise StateFileDamaged(f"notify.json: {key} is a {type(value).__name__}, not a {kind.__name__}")
    return value


def _record(cls: type, item: Any, key: str) -> Any:
    """One dataclass from its JSON object, its scalar fields of the declared type."""
    if not isinstance(item, dict):
        raise StateFileDamaged(f"notify.json: an entry of {key} is a {type(item).__name__}, not an object")
    try:
        record = cls(**item)
    except TypeError as exc:  # a missing or unknown field
        raise StateFileDamaged(f"notify.json: an entry of {key}: {exc}") from None
    for spec in dataclasses.fields(cls):
        kind = _SCALARS.get(str(spec.type))
        value = getattr(record, spec.name)
        if kind is not None and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
            raise StateFileDamaged(f"notify.json: {key}: {spec.name} is a {type(value).__name__}, not a {spec.type}")
        if spec.name == "rows" and not isinstance(value, list):
            raise StateFileDamaged(f"notify.json: {key}: rows is a {type(value).__name__}, not a list")
    return record


def _text(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise StateFileDamaged(f"notify.json: {key} has a {type(value).__name__} where text belongs")
    return value


def _text_map(raw: dict[str, Any], key: str) -> dict[str, str]:
    return {_text(name, key): _text(value, key) for name, value in _typed(raw, key, dict, {}).items()}
