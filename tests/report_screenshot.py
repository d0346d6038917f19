"""Make docs/report.png: a report.html as office staff see it, from the real pipeline and emulator.

    .venv/bin/python -m tests.report_screenshot [docs/report.png]

Runs a few imports (one with failed rows, one held by the shrink guard)
through the real service against the emulator on 127.0.0.1, in a throwaway
folder, then photographs the page with headless chromium.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from dropbox_sync import config
from dropbox_sync.session import pipeline_session
from tests.browser import screenshot
from tests.helpers import wait_until
from tests.support import HEADER, emulator_with_password, running, write_config

STUDENTS = HEADER + "".join(
    f"s10{n:02},Pupil,{name},Year 7,Student,s10{n:02}@school.example\n"
    for n, name in enumerate(
        ["Nguyen", "O'Brien", "Müller", "Okafor", "Silva", "Kowalski", "Haddad", "Tanaka", "Novak", "Moreau"]
    )
)
STAFF = HEADER + (
    "t2001,Grace,Hopper,Staff,Teacher,grace.hopper@school.example\n"
    "t2002,Alan,Turing,Staff,Teacher,alan.turing(at)school.example\n"
    "t2003,Ada,Lovelace,Staff,Teacher,ada@school.example\n"
    "t2004,Kath,Johnson,Year 13,Teacher,kath@school.example\n"
)


def main(target: Path) -> None:
    os.environ["TZ"] = "Europe/London"
    time.tzset()
    workspace = Path(tempfile.mkdtemp(prefix="report-screenshot-"))
    try:
        emulator = emulator_with_password(workspace).start()
        try:
            config_path = write_config(workspace, emulator, shrink_guard=0.5, name="students")
            inbox = workspace / "inbox"
            with pipeline_session(config.load(config_path)) as pipeline, running(pipeline):
                for name, text in (
                    ("staff.csv", STAFF),
                    ("students-monday.csv", STUDENTS),
                    ("students-tuesday.csv", STUDENTS),
                    ("students-wednesday.csv", HEADER + STUDENTS.splitlines(True)[1]),
                ):
                    (inbox / name).write_text(text, encoding="utf-8")
                    wait_until(lambda n=name: not (inbox / n).exists(), timeout=30)
                wait_until(lambda: "Files held for approval" in (inbox / "report.html").read_text("utf-8"), timeout=30)
                page = workspace / "page.html"
                shutil.copyfile(inbox / "report.html", page)
            # Links resolve next to the copy as they do in the inbox.
            for folder in ("processed", "failed", "held"):
                shutil.copytree(inbox / folder, workspace / folder, dirs_exist_ok=True)
            screenshot(page, target, width=1150, height=1750)
        finally:
            emulator.stop()
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
    print(f"wrote {target}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/report.png"))
