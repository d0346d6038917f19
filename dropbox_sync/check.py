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

from dropbox_sync import preflight
from dropbox_sync.config import Config, InboxConfig
from dropbox_sync.errors import HoldError, TransientError
from dropbox_sync.watcher import scan

OK, PROBLEMS, HELD = 0, 1, 3


def run_check(cfg: Config, files: Sequence[Path], *, online: bool, out: TextIO) -> int:
    problems = 0
    for inbox in cfg.inboxes:
        problems += _check_folder(inbox, out)
    if files:
        for path in files:
            problems += _check_file(path, _inbox_for(cfg, path), out)
    else:
        for inbox in cfg.inboxes:
            if inbox.path.is_dir():  # a missing one is reported above
                problems += _check_waiting(inbox, out)
    unreachable = 0
    if online:
        for inbox in cfg.inboxes:
            unreachable += _check_online(inbox, out)
    if unreachable:
        return HELD
    return PROBLEMS if problems else OK


def _check_folder(inbox: InboxConfig, out: TextIO) -> int:
    if not inbox.path.is_dir():
        print(f"FAIL  inbox {inbox.name}: folder {inbox.path} is missing (share not mounted, or not made yet); "
              "the service waits for it", file=out)  # fmt: skip
        return 1
    if not os.access(inbox.path, os.W_OK | os.X_OK):
        print(f"FAIL  inbox {inbox.name}: cannot write in {inbox.path} (files could not be moved)", file=out)
        return 1
    print(f"ok    inbox {inbox.name}: {inbox.path} -> {inbox.safe_url}", file=out)
    return 0


def _inbox_for(cfg: Config, path: Path) -> InboxConfig:
    folder = path.resolve().parent
    return next((i for i in cfg.inboxes if i.path == folder), cfg.inboxes[0])


def _check_file(path: Path, inbox: InboxConfig, out: TextIO) -> int:
    if not path.is_file():
        print(f"FAIL  {path}: not a file", file=out)
        return 1
    try:
        inspection = preflight.inspect(path, max_file_size=inbox.max_file_size, digest=False)
    except OSError as exc:
        print(f"FAIL  {path}: cannot be read ({exc.strerror or exc})", file=out)
        return 1
    if inspection.problem:
        print(f"FAIL  {path}: would go to failed/: {inspection.problem}", file=out)
        return 1
    print(f"ok    {path}: would be uploaded ({inspection.size} bytes)", file=out)
    return 0


def _check_waiting(inbox: InboxConfig, out: TextIO) -> int:
    try:
        candidates, ignored = scan(inbox)
    except OSError as exc:
        print(f"FAIL  inbox {inbox.name}: cannot list the folder ({exc.strerror or exc})", file=out)
        return 1
    for item in ignored:
        print(f"skip  {inbox.path / item.name}: it {item.reason}", file=out)
    return sum(_check_file(inbox.path / c.name, inbox, out) for c in candidates)


def _check_online(inbox: InboxConfig, out: TextIO) -> int:
    from dropbox_sync.client import ImportClient

    with tempfile.TemporaryDirectory(prefix="dropbox-sync-check-") as folder:
        empty = Path(folder) / "dropbox-sync-check.csv"
        empty.write_bytes(b"")
        try:
            with ImportClient(inbox) as client:
                reply = client.upload(empty)
        except (HoldError, TransientError) as exc:
            print(f"FAIL  inbox {inbox.name}: online check: {exc}", file=out)
            return 1
    if reply.status in (401, 403, 404) or reply.success is not True:
        print(f"FAIL  inbox {inbox.name}: online check: HTTP {reply.status}: {reply.summary}", file=out)
        return 1
    print(f"ok    inbox {inbox.name}: online: URL, TLS and credentials work ({reply.summary})", file=out)
    return 0
