"""``dropbox-sync check``: is the config usable, and would these files go through?

Nothing is uploaded, except with ``--online``, which posts an empty CSV: the
vendor documents an empty file as a legal no-op import, so it proves the URL,
TLS and credentials without touching any user.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from dropbox_sync.commands.preview import notes
from dropbox_sync.config import Config, InboxConfig
from dropbox_sync.errors import HoldError, TransientError
from dropbox_sync.pipeline import claim, routes
from dropbox_sync.pipeline.discover import NO_ROUTE, discover
from dropbox_sync.pipeline.prepare import prepare
from dropbox_sync.pipeline.prepared import Rejection

OK, PROBLEMS, HELD = 0, 1, 3


def run_check(cfg: Config, files: Sequence[Path], *, online: bool, out: TextIO) -> int:
    problems = 0
    for inbox in cfg.inboxes:
        problems += _check_folder(inbox, out)
    # A UTF-8 copy (source_encoding) goes here, never into an inbox a service watches.
    with tempfile.TemporaryDirectory(prefix="dropbox-sync-check-") as scratch:
        if files:
            for path in files:
                problems += _check_file(path, inbox_for(cfg, path), out, Path(scratch))
        else:
            for inbox in cfg.inboxes:
                if inbox.path.is_dir():  # a missing one is reported above
                    problems += _check_waiting(inbox, out, Path(scratch))
    unreachable = 0
    if online:
        for inbox in cfg.inboxes:
            unreachable += _check_online(inbox, out)
    if unreachable:
        return HELD
    return PROBLEMS if problems else OK


def _check_folder(inbox: InboxConfig, out: TextIO) -> int:
    if not inbox.path.is_dir():
        print(
            f"FAIL  inbox {inbox.name}: folder {inbox.path} is missing (share not mounted, or not made yet); "
            "the service waits for it",
            file=out,
        )
        return 1
    if not os.access(inbox.path, os.W_OK | os.X_OK):
        print(f"FAIL  inbox {inbox.name}: cannot write in {inbox.path} (files could not be moved)", file=out)
        return 1
    print(f"ok    inbox {inbox.name}: {inbox.path} -> {inbox.safe_url}", file=out)
    return 0


def inbox_for(cfg: Config, path: Path) -> InboxConfig:
    """The inbox whose folder holds ``path``, else the first (for ``check FILE``, ``preview``)."""
    folder = path.resolve().parent
    return next((i for i in cfg.inboxes if i.path == folder), cfg.inboxes[0])


def _check_file(path: Path, inbox: InboxConfig, out: TextIO, scratch: Path, name: str | None = None) -> int:
    """What the pipeline would do with this file: the same preparation, no upload.
    ``name``: the name it was dropped with, for a claimed file (routes match it)."""
    if name is None and not path.is_file():
        print(f"FAIL  {path}: not a file", file=out)
        return 1
    if name is None and routes.route_for(inbox, path.name) is None:
        print(f'FAIL  {path}: would not be sent: it {NO_ROUTE.split(";")[0]} "{inbox.name}"', file=out)
        return 1
    prepared = prepare(inbox, path, name, scratch=scratch)
    if isinstance(prepared, Rejection):
        print(f"FAIL  {path}: would go to failed/: {prepared.summary}", file=out)
        return 1
    prepared.discard()
    how = f", transcoded from {prepared.transcoded_from}" if prepared.transcoded_from else ""
    if prepared.mapped is not None:
        how += f", mapped: {prepared.mapped.rows_sent} of {prepared.mapped.rows_read} rows"
    print(f"ok    {path}: would be uploaded ({prepared.size} bytes{how}) to {prepared.route.safe_url}", file=out)
    for line in notes(prepared):
        print(f"{line[:6]}{path}: {line[6:]}", file=out)
    return 0


def _check_waiting(inbox: InboxConfig, out: TextIO, scratch: Path) -> int:
    try:
        found = discover(inbox)
    except OSError as exc:
        print(f"FAIL  inbox {inbox.name}: cannot list the folder ({exc.strerror or exc})", file=out)
        return 1
    for item in found.skipped:
        print(f"skip  {inbox.path / item.name}: it {item.reason}", file=out)
    problems = sum(_check_file(path, inbox, out, scratch, claim.original_of(path)) for path in found.claimed)
    return problems + sum(_check_file(inbox.path / c.name, inbox, out, scratch) for c in found.waiting)


def _check_online(inbox: InboxConfig, out: TextIO) -> int:
    from dropbox_sync.pipeline.client import ImportClient
    from dropbox_sync.pipeline.outcome import Outcome, judge  # imports httpx, as the client does

    with tempfile.TemporaryDirectory(prefix="dropbox-sync-check-") as folder:
        empty = Path(folder) / "dropbox-sync-check.csv"
        empty.write_bytes(b"")
        try:
            with ImportClient(inbox) as client:
                reply = client.upload(empty)
        except (HoldError, TransientError) as exc:
            print(f"FAIL  inbox {inbox.name}: online check: {exc}", file=out)
            return 1
    verdict, reason = judge(reply)  # the words once and run log for the same reply
    if verdict is not Outcome.PROCESSED:
        said = reason if reason.startswith("HTTP ") else f"HTTP {reply.status}: {reason}"
        print(f"FAIL  inbox {inbox.name}: online check: {said}", file=out)
        return 1
    print(f"ok    inbox {inbox.name}: online: URL, TLS and credentials work ({reply.summary})", file=out)
    return 0
