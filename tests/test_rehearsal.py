"""docs/rehearsal.md, run as written: the emulator CLI, a rehearsal config, check, send, once, history.

Only the port differs (8443 may be taken on a shared machine): the emulator gets port 0 and
the config the port it printed. Every other word comes from the page.
"""

from __future__ import annotations

import json
import queue
import re
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

from dropbox_sync.emulator import wording
from tests.support import HEADER

DOC = Path(__file__).resolve().parents[1] / "docs" / "rehearsal.md"
DROPBOX_SYNC = [sys.executable, "-m", "dropbox_sync"]


def blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)


def command(prefix: str) -> str:
    """The one command of the page's sh blocks that starts with ``prefix``."""
    (found,) = [line for block in blocks("sh") for line in block.splitlines() if line.startswith(prefix)]
    return found


def argv(line: str) -> list[str]:
    words = shlex.split(line)
    assert words[0] == "dropbox-sync"
    return DROPBOX_SYNC + words[1:]


class EmulatorProcess:
    """``dropbox-sync emulator ...`` in a real process; its banner read with a deadline."""

    def __init__(self, line: str, cwd: Path, *extra: str) -> None:
        words = [w if w != "8443" else "0" for w in argv(line)] + list(extra)
        self.process = subprocess.Popen(
            words, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.banner = self._banner()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def _banner(self) -> list[str]:
        deadline = time.monotonic() + 60
        banner: list[str] = []
        while not banner or banner[-1] != "Press Ctrl+C to stop.":
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no banner: {banner}, stderr: {self.stop()}"
            try:
                banner.append(self.lines.get(timeout=remaining))
            except queue.Empty:
                continue
        return banner

    @property
    def port(self) -> int:
        return int(re.search(r"https://127\.0\.0\.1:(\d+)", self.banner[0]).group(1))

    def stop(self) -> str:
        self.process.terminate()
        try:
            _, err = self.process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, err = self.process.communicate()
        self.reader.join(10)
        return err


def run(line: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        argv(line), cwd=cwd, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, check=False
    )


def test_the_rehearsal_page_as_written(tmp_path):
    # The school's export: one row for a group this Infiniti lacks, one bad email address.
    export = (
        HEADER + "s1,Ann,Lee,Year 13,Student,ann@school.example\n"
        "s2,Bo,Ng,Year 14,Student,bo@school.example\n"
        "s3,Cy,Oh,Year 7,Student,not-an-email\n"
    )
    (tmp_path / "students.csv").write_text(export, encoding="utf-8")
    (setup,) = [line for line in blocks("sh")[0].splitlines() if line.startswith("printf")]
    subprocess.run(["sh", "-c", setup], cwd=tmp_path, check=True, timeout=30)

    emulator = EmulatorProcess(command("dropbox-sync emulator"), tmp_path)
    try:
        shown = blocks("text")[0].splitlines()
        assert emulator.banner[1:4] == shown[1:4], "the page shows what the emulator says"
        config = blocks("toml")[0].replace("8443", str(emulator.port))
        (tmp_path / "rehearsal.toml").write_text(config, encoding="utf-8")
        (tmp_path / "rehearsal-inbox").mkdir()

        checked = run(command("dropbox-sync --config rehearsal.toml check"), tmp_path)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        sent = run(command("dropbox-sync --config rehearsal.toml send"), tmp_path)
        reply = json.loads(sent.stdout)
        assert reply["summary"] == wording.summary(3, 1, 0, 2)
        assert reply["details"]["2"].startswith(wording.library_group_missing("Year 14"))
        assert reply["details"]["3"].startswith(wording.BAD_EMAIL)
        assert (tmp_path / "students.csv").exists(), "send moves nothing"

        once = subprocess.run(
            [
                "sh",
                "-c",
                command("cp students.csv rehearsal-inbox/").replace(
                    "dropbox-sync", " ".join(shlex.quote(w) for w in DROPBOX_SYNC)
                ),
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert once.returncode == 1, once.stderr
        (failed,) = [p for p in (tmp_path / "rehearsal-inbox" / "failed").iterdir() if p.name.endswith("_students.csv")]
        assert failed.with_name(failed.name + ".failed-rows.csv").is_file()
        history = subprocess.run(
            DROPBOX_SYNC + ["--config", "rehearsal.toml", "history"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert "students.csv  PARTLY FAILED: 2 row(s) not imported" in history.stdout
    finally:
        emulator.stop()

    # Add the missing group as the page says, start again: the users are still there.
    emulator = EmulatorProcess(command("dropbox-sync emulator"), tmp_path, "--library-group", "Year 14")
    try:
        assert "Year 14" in emulator.banner[1]
        config = blocks("toml")[0].replace("8443", str(emulator.port))
        (tmp_path / "rehearsal.toml").write_text(config, encoding="utf-8")
        reply = json.loads(run(command("dropbox-sync --config rehearsal.toml send"), tmp_path).stdout)
        assert reply["summary"] == wording.summary(3, 1, 1, 1), "s1 updated (kept in rehearsal-state), s2 created"
    finally:
        emulator.stop()
