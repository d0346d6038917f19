"""``dropbox-sync demo``: the whole job on the embedded emulator, no set-up needed.

Starts the Infiniti emulator over TLS on 127.0.0.1, makes an inbox in a
temporary folder, starts the real service (observer, settle, claim, upload,
archive), drops three files the way office staff would, waits until each has
been dealt with, and prints what happened to each and where its result is.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import TextIO

from loguru import logger

from dropbox_sync import config
from dropbox_sync.emulator import Emulator
from dropbox_sync.pipeline import archive_names, discover, workdirs
from dropbox_sync.pipeline.rows import failed_details, tidy_reason
from dropbox_sync.session import Session

DEMO_USER = "autoimport"
DEMO_PASSWORD = "demo-Pa55word"  # only ever sent to the emulator on 127.0.0.1
SAMPLES = {
    "students.csv": (
        "username,firstName,lastName,library-group,system-group,emailAddress\n"
        "s1001,Ava,Nguyen,Year 7,Student,ava.nguyen@school.example\n"
        "s1002,Liam,O'Brien,Year 7,Student,liam.obrien@school.example\n"
        "s1003,Zoë,Müller,Year 8,Student,\n"
    ),
    "staff.csv": (
        "username,firstName,lastName,library-group,system-group,emailAddress\n"
        "t2001,Grace,Hopper,Staff,Teacher,grace.hopper@school.example\n"
        "t2002,Alan,Turing,Staff,Teacher,alan.turing(at)school.example\n"
    ),
    "groups-missing-column.csv": ("username,firstName,library-group\ns1001,Ava,Year 7\n"),
}
EXPECTED = {"students.csv": "processed", "staff.csv": "failed", "groups-missing-column.csv": "failed"}
DEADLINE_SECONDS = 60.0


def run_demo(*, keep: bool = True, out: TextIO) -> int:
    workspace = Path(tempfile.mkdtemp(prefix="dropbox-sync-demo-"))
    try:
        with Emulator(workspace / "emulator", accounts={DEMO_USER: (DEMO_PASSWORD, True)}) as emulator:
            inbox = workspace / "inbox"
            inbox.mkdir()
            cfg = _demo_config(workspace, inbox, emulator)
            print(f"Emulator: {emulator.base_url} (TLS, its own CA: {emulator.ca_file})", file=out)
            print(f"Inbox:    {inbox}\n", file=out)
            finished = _run_service_until_done(cfg, workspace, inbox)
            _print_table(inbox, out)
        ok = finished and _as_expected(inbox)
        print(
            "\nDemo finished: every file ended where it should." if ok else "\nDemo did NOT finish as expected.",
            file=out,
        )
        if keep:
            print(f"Look around: {workspace} (inbox/processed, inbox/failed and their .result.json files)", file=out)
            print(f"What office staff see, in a browser: {(inbox / 'report.html').as_uri()}", file=out)
        return 0 if ok else 1
    finally:
        if not keep:
            shutil.rmtree(workspace, ignore_errors=True)


def _demo_config(workspace: Path, inbox: Path, emulator: Emulator) -> config.Config:
    raw = {
        "state_dir": str(workspace / "state"),
        "inbox": [
            {
                "name": "demo",
                "path": str(inbox),
                "url": f"{emulator.base_url}/api/import/users",
                "username": DEMO_USER,
                "password": DEMO_PASSWORD,
                "ca_bundle": str(emulator.ca_file),
                "settle_seconds": 1,
            }
        ],
    }
    return config.parse(raw, source=workspace / "demo-config.toml")  # the Session reads the password


def _run_service_until_done(cfg: config.Config, workspace: Path, inbox: Path) -> bool:
    """The service as `run` has it: the same Session (journal, report.html in the inbox), so the
    same start and shutdown order."""
    stop = threading.Event()
    session = Session(cfg)
    service = threading.Thread(target=session.run, args=(stop,), name="demo-service")
    service.start()
    try:
        session.pipeline.ready.wait(10)
        for name, text in SAMPLES.items():
            logger.info("demo: dropping {} into the inbox", name)
            (inbox / name).write_text(text, encoding="utf-8")
        deadline = time.monotonic() + DEADLINE_SECONDS
        while len(_archived(inbox)) < len(SAMPLES):
            if time.monotonic() > deadline:
                return False
            stop.wait(0.1)
        return True
    finally:
        stop.set()
        service.join()
        session.close()


def _archived(inbox: Path) -> list[Path]:
    found = []
    for which in (workdirs.PROCESSED, workdirs.FAILED):
        found += discover.listed_files(inbox / which)
    return found


def _print_table(inbox: Path, out: TextIO) -> None:
    """One row per file, then what the server said, and each failed row."""
    rows = []
    fixable = []
    for path in sorted(_archived(inbox), key=lambda p: archive_names.original_name(p.name)):
        if archive_names.failed_rows_path(path).exists():
            fixable.append(archive_names.failed_rows_path(path).relative_to(inbox.parent))
        result = archive_names.result_path(path)
        try:
            reply = json.loads(result.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            reply = {"summary": "(no result file)"}
        rows.append(
            (
                archive_names.original_name(path.name),
                f"{path.parent.name}/",
                str(result.relative_to(inbox.parent)),
                reply,
            )
        )
    width = max([len("file")] + [len(r[0]) for r in rows])
    print(f"\n{'file'.ljust(width)}  {'went to':<11} result saved as", file=out)
    tail = [f"\nThe refused rows, with Infiniti's reason in a last column, to fix and drop back: {f}" for f in fixable]
    for name, went_to, result, reply in rows:
        print(f"{name.ljust(width)}  {went_to:<11} {result}", file=out)
        stage = (reply.get("dropbox_sync") or {}).get("stage")
        said = "not sent, pre-flight found" if stage == "preflight" else "server said"
        print(f"{'':{width}}    {said}: {reply.get('summary', '')}", file=out)
        for row, outcome in failed_details(reply.get("details")):
            print(f"{'':{width}}    row {row}: {tidy_reason(outcome)}", file=out)
    for line in tail:
        print(line, file=out)


def _as_expected(inbox: Path) -> bool:
    where = {archive_names.original_name(p.name): p.parent.name for p in _archived(inbox)}
    return where == EXPECTED
