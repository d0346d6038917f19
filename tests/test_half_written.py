"""Never import half a file (issue 11, items 1 and 7).

A real writer process writes part of a file, keeps it open and pauses for as
long as the test likes; the worker's clock is a fake one, moved far past
``settle_seconds`` during the pause, so no test waits for settling and none
depends on how fast this machine is.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from loguru import logger

from dropbox_sync import config
from dropbox_sync.emulator.importer import Importer
from dropbox_sync.pipeline import archive_names, claim, discover
from dropbox_sync.pipeline.runner import Pipeline
from dropbox_sync.pipeline.worker import InboxWorker
from tests.helpers import wait_until
from tests.support import (
    archived,
    good_csv,
    result_of,
    running,
    write_config,
)
from tests.test_settle import FakeClock

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify and leases are Linux's")

SETTLE = 5.0
WRITER = r"""
import json, sys
first, rest = json.loads(sys.stdin.readline())
with open(sys.argv[1], "w", encoding="utf-8") as handle:
    handle.write(first)
    handle.flush()
    print("paused", flush=True)
    sys.stdin.readline()  # the pause: as long as the test wants
    handle.write(rest)
"""


def no_probe(path: Path) -> None:
    """As on an SMB or NFS mount: the OS cannot say whether a writer has the file open."""


class PausingWriter:
    """A real process that writes ``first``, keeps the file open, and writes ``rest`` when told."""

    def __init__(self, path: Path, first: str, rest: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps([first, rest]) + "\n")
        self.process.stdin.flush()
        assert self.process.stdout.readline() == "paused\n"

    def finish(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.close()
        assert self.process.wait(30) == 0

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None and not stream.closed:
                stream.close()


class CountedWorker(InboxWorker):
    """The real worker, counting its passes so a test can wait for one."""

    passes = 0

    def cycle(self, stop: threading.Event) -> float:
        try:
            return super().cycle(stop)
        finally:
            self.passes += 1


def rows(prefix: str, count: int) -> str:
    return "".join(f"{prefix}{n},First,Last,Year 7,Student,{prefix}{n}@school.example\n" for n in range(count))


FIRST = good_csv("u0") + rows("a", 999)
REST = rows("b", 1000)
WHOLE = FIRST + REST


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def writers():
    started: list[PausingWriter] = []

    def start(path: Path, first: str = FIRST, rest: str = REST) -> PausingWriter:
        started.append(PausingWriter(path, first, rest))
        return started[-1]

    yield start
    for writer in started:
        writer.kill()


@pytest.fixture
def log_lines():
    lines: list[str] = []
    sink = logger.add(lines.append, level="INFO", format="{level}|{message}", colorize=False)
    yield lines
    logger.remove(sink)


def test_run_waits_for_a_writer_that_pauses_with_the_file_open(tmp_path, emu, writers):
    # The service (`run`): inotify says the file was modified and not closed since.
    # The lease probe is switched off here, so only the close-write events decide.
    inbox = tmp_path / "inbox"
    cfg = config.load(write_config(tmp_path, emu, settle_seconds=SETTLE, rescan_seconds=3600))
    clock = FakeClock()
    pipeline = Pipeline(cfg, worker_factory=functools.partial(CountedWorker, clock=clock, write_probe=no_probe))
    worker = pipeline.workers[0]
    assert isinstance(worker, CountedWorker)
    with running(pipeline):
        writer = writers(inbox / "users.csv")
        wait_until(lambda: worker.writes.writing("users.csv"))
        for _ in range(3):  # a pause of 3 x 60 s on the worker's clock, with passes in it
            passes = worker.passes
            clock.advance(60)
            worker.wake.set()
            wait_until(lambda passes=passes: worker.passes >= passes + 2)
        assert emu.uploads() == [] and discover.claimed_files(inbox) == []
        assert "open for writing" in worker.snapshot().waiting["users.csv"]
        writer.finish()
        wait_until(lambda: not worker.writes.writing("users.csv"))

        def sent() -> list[Path]:
            clock.advance(SETTLE)
            worker.wake.set()
            return archived(inbox, "processed")

        (done,) = wait_until(sent, timeout=30, interval=0.05)
    (upload,) = emu.uploads()
    assert upload.sha256 == sha256(WHOLE), "the whole file, once"
    assert done.read_text(encoding="utf-8") == WHOLE
    assert result_of(done)["summary"].startswith("2000 users processed.")


def test_once_waits_for_a_writer_that_pauses_with_the_file_open(tmp_path, emu, writers):
    # No observer (`once`, or events lost): the read-lease probe alone sees the writer.
    inbox = tmp_path / "inbox"
    cfg = config.load(write_config(tmp_path, emu, settle_seconds=SETTLE))
    clock = FakeClock()
    worker = InboxWorker(cfg.inboxes[0], clock=clock)
    stop = threading.Event()
    writer = writers(inbox / "users.csv")
    try:
        for _ in range(4):
            worker.cycle(stop)
            clock.advance(60)
        assert emu.uploads() == [] and discover.claimed_files(inbox) == []
        assert "open for writing" in worker.snapshot().waiting["users.csv"]
        writer.finish()
        worker.cycle(stop)
        clock.advance(SETTLE)
        worker.cycle(stop)
    finally:
        worker.close()
    (upload,) = emu.uploads()
    assert upload.sha256 == sha256(WHOLE)
    (done,) = archived(inbox, "processed")
    assert done.read_text(encoding="utf-8") == WHOLE


def test_each_file_is_probed_for_a_writer_right_before_its_claim_and_after_its_upload(tmp_path, emu):
    """The lease probe opens the file: a scan asks it nothing (it was probed again at the
    claim anyway), so a pass costs two probes per file sent, the two that decide."""
    inbox = tmp_path / "inbox"
    cfg = config.load(write_config(tmp_path, emu, settle_seconds=SETTLE))
    for name in ("a.csv", "b.csv", "c.csv"):
        (inbox / name).write_text(good_csv(name[0]), encoding="utf-8")
    probed: list[str] = []

    def probe(path: Path) -> bool:
        probed.append(path.parent.name)
        return False

    clock = FakeClock()
    worker = InboxWorker(cfg.inboxes[0], clock=clock, write_probe=probe)
    try:
        worker.cycle(threading.Event())  # first sight: settling starts, nothing probed
        assert probed == []
        clock.advance(SETTLE)
        worker.cycle(threading.Event())
    finally:
        worker.close()
    assert len(archived(inbox, "processed")) == 3
    assert probed == ["inbox", "sending"] * 3, "before the claim, and after the upload"


def test_a_file_that_grows_after_it_was_imported_is_imported_again_whole(tmp_path, emu, writers, log_lines):
    # Neither signal (a share: no inotify from other machines, no lease): the
    # paused file settles and is sent half-written. The writer goes on into the
    # archived file; the next pass sees it, says so loudly, and sends it whole.
    inbox = tmp_path / "inbox"
    cfg = config.load(write_config(tmp_path, emu, settle_seconds=SETTLE))
    clock = FakeClock()
    worker = InboxWorker(cfg.inboxes[0], clock=clock, write_probe=no_probe)
    stop = threading.Event()
    writer = writers(inbox / "users.csv")
    try:
        worker.cycle(stop)
        clock.advance(SETTLE)
        worker.cycle(stop)
        (first,) = archived(inbox, "processed")
        assert result_of(first)["summary"].startswith("1000 users processed."), "only half was there"
        writer.finish()
        worker.cycle(stop)
        assert discover.claimed_files(inbox) == [inbox / "sending" / first.name], "taken back to be sent whole"
        clock.advance(SETTLE)
        worker.cycle(stop)
    finally:
        worker.close()
    assert [u.sha256 for u in emu.uploads()] == [sha256(FIRST), sha256(WHOLE)]
    loud = [line for line in log_lines if line.startswith("ERROR|") and "CHANGED AFTER IT WAS IMPORTED" in line]
    assert len(loud) == 1 and first.name in loud[0]
    whole = [p for p in archived(inbox, "processed") if p.read_text(encoding="utf-8") == WHOLE]
    assert len(whole) == 1 and result_of(whole[0])["summary"].startswith("2000 users processed.")
    partial = archive_names.result_path(first)
    assert partial.exists(), "the result of the partial import is kept"
    assert json.loads(partial.read_text(encoding="utf-8"))["summary"].startswith("1000 users processed.")
    assert discover.claimed_files(inbox) == []


@pytest.mark.parametrize("moment", ["claim", "upload"])
def test_a_claimed_file_that_changes_keeps_its_place_in_the_queue(tmp_path, emu, writers, monkeypatch, moment):
    # Item 7: old.csv is claimed, then its writer goes on (just after the claim,
    # or while the server imports it). It must settle again and go first:
    # new.csv waits, whatever happens to old.csv.
    inbox = tmp_path / "inbox"
    cfg = config.load(write_config(tmp_path, emu, settle_seconds=SETTLE))
    clock = FakeClock()
    worker = InboxWorker(cfg.inboxes[0], clock=clock, write_probe=no_probe)
    stop = threading.Event()
    writer = writers(inbox / "old.csv")
    (inbox / "new.csv").write_text(good_csv("n1"), encoding="utf-8")
    older = os.stat(inbox / "old.csv").st_mtime_ns
    os.utime(inbox / "new.csv", ns=(older + 10**10, older + 10**10))
    resumed = []

    def resume_writer() -> None:
        if not resumed:
            resumed.append(True)
            writer.finish()

    if moment == "claim":
        real_claim = claim.claim

        def claim_then_write(*args, **kwargs):
            claimed = real_claim(*args, **kwargs)
            resume_writer()
            return claimed

        monkeypatch.setattr(claim, "claim", claim_then_write)
    else:
        real_run = Importer.run

        def import_while_written(self, *args, **kwargs):
            resume_writer()  # the server is still busy with it when the writer goes on
            return real_run(self, *args, **kwargs)

        monkeypatch.setattr(Importer, "run", import_while_written)
    try:
        worker.cycle(stop)
        clock.advance(SETTLE)
        worker.cycle(stop)  # claims old.csv; it changes; new.csv must not go
        assert resumed
        assert [u.filename for u in emu.uploads()] in ([], ["old.csv"])
        assert (inbox / "new.csv").exists(), "the newer file waits for the claimed one"
        clock.advance(SETTLE)
        worker.cycle(stop)
        clock.advance(SETTLE)
        worker.cycle(stop)
    finally:
        worker.close()
    names = [u.filename for u in emu.uploads()]
    assert names[-2:] == ["old.csv", "new.csv"] and set(names[:-2]) <= {"old.csv"}
    assert [u.sha256 for u in emu.uploads() if u.filename == "old.csv"][-1] == sha256(WHOLE)
