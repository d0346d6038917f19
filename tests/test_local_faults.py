"""Faults of this machine, not the server's (issue 11, item 9): a full disk, a refused rename.

A reply in hand is never thrown away to send the file again: the inbox holds
with the OS's reason and saving is retried. The full disk is real: a 256 KiB
tmpfs mounted on the inbox (we run as root; the fixture unmounts it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from dropbox_sync import config
from dropbox_sync.pipeline import archive, discover
from dropbox_sync.pipeline.worker import InboxWorker
from dropbox_sync.state.journal import Journal
from tests.support import (
    archived,
    good_csv,
    result_of,
    write_config,
)
from tests.test_bad_input import REPO, _unprivileged_prefix
from tests.test_settle import FakeClock

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="tmpfs mounts and setpriv are Linux's")


@contextlib.contextmanager
def small_tmpfs(mount_point: Path) -> Iterator[Path]:
    """``mount_point`` made and mounted as its own 256 KiB tmpfs, so it can really fill up;
    unmounted after. Skips the test where mounting is impossible (not root, no permission)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k,mode=0755", "tmpfs", str(mount_point)],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False, capture_output=True, timeout=30)


@pytest.fixture
def small_disk(tmp_path: Path):
    """tmp_path/inbox on its own 256 KiB tmpfs."""
    with small_tmpfs(tmp_path / "inbox") as mount_point:
        yield mount_point


def fill(folder: Path) -> Path:
    """Take every free block of the file system (a dot-name: never a candidate)."""
    filler = folder / ".filler"
    with open(filler, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == 28, exc  # ENOSPC
    return filler


def test_a_full_disk_holds_the_inbox_and_never_sends_the_file_again(tmp_path, emu, small_disk):
    inbox = small_disk
    cfg = config.load(write_config(tmp_path, emu, settle_seconds=0, retry_first_seconds=1, retry_max_seconds=8))
    clock = FakeClock()
    journal = Journal(tmp_path / "state" / "journal.sqlite3")  # on another disk, as usual
    worker = InboxWorker(cfg.inboxes[0], journal=journal, clock=clock)
    stop = threading.Event()
    archive.ensure_folders(inbox)
    (inbox / "users.csv").write_text(good_csv("d1", "d2"), encoding="utf-8")
    filler = fill(inbox)
    try:
        for _ in range(3):  # three passes, each past the retry delay
            worker.cycle(stop)
            clock.advance(10)
        assert len(emu.uploads()) == 1, "a reply in hand is never thrown away to send the file again"
        assert worker.hold_reason is not None and "No space left on device" in worker.hold_reason
        (claimed,) = discover.claimed_files(inbox)
        assert "result cannot be saved" in worker.snapshot().waiting[claimed.name]
        assert not [p for p in (inbox / "sending").iterdir() if p.name.endswith(".tmp")], "no half result left"
        filler.unlink()  # the technician frees some space
        worker.cycle(stop)
        assert worker.hold_reason is None
        history = journal.counts_since("inbox", "2000")
    finally:
        worker.close()
        journal.close()
    assert len(emu.uploads()) == 1
    (done,) = archived(inbox, "processed")
    assert result_of(done)["summary"].startswith("2 users processed.")
    assert history == {"processed": 1}, "journalled once, when the reply came"


def test_a_disk_too_full_for_the_result_and_the_journal_journals_the_import_once_freed(tmp_path, emu):
    """The inbox and the state folder on one disk (a small install), and it is full: the
    result cannot be saved and the journal row written at once cannot be either. Once space
    is freed the result is saved and the file filed; its import must still reach the history
    (the shrink guard, `approve` and `status` read it), once. It was lost for good."""
    with small_tmpfs(tmp_path / "disk") as disk:
        inbox = disk / "inbox"
        inbox.mkdir()
        cfg = config.load(write_config(tmp_path, emu, settle_seconds=0, retry_first_seconds=1, path=str(inbox)))
        clock = FakeClock()
        journal = Journal(disk / "state" / "journal.sqlite3")  # beside the inbox
        worker = InboxWorker(cfg.inboxes[0], journal=journal, clock=clock)
        stop = threading.Event()
        archive.ensure_folders(inbox)
        (inbox / "users.csv").write_text(good_csv("d1", "d2"), encoding="utf-8")
        filler = fill(disk)
        try:
            worker.cycle(stop)
            assert worker.hold_reason is not None and "No space left on device" in worker.hold_reason
            assert journal.counts_since("inbox", "2000") == {}, "the journal could not take the row either"
            filler.unlink()  # the technician frees some space
            clock.advance(10)
            worker.cycle(stop)
            assert worker.hold_reason is None
            history = journal.counts_since("inbox", "2000")
        finally:
            worker.close()
            journal.close()
        assert len(emu.uploads()) == 1
        assert [p.name.split("_", 1)[1] for p in archived(inbox, "processed")] == ["users.csv"]
        assert history == {"processed": 1}, "journalled once, when it was filed"


def test_a_refused_rename_on_linux_is_an_error_with_its_reason_not_busy(tmp_path, emu):
    # On Linux nothing "holds" a file: EACCES on the claim is a real fault (here
    # sending/ belongs to root and the service runs as nobody). It used to be
    # taken for "open in another program" and waited on for ever.
    prefix = _unprivileged_prefix() if os.geteuid() == 0 else pytest.skip("needs root to become nobody")
    import pwd

    nobody = pwd.getpwnam("nobody")
    work = Path(tempfile.mkdtemp(prefix="dropbox-sync-eacces-"))  # nobody cannot enter pytest's tmp dirs
    try:
        config_path = write_config(work, emu, settle_seconds=0, ca_bundle=str(emu.copy_ca(work / "ca.pem")))
        inbox = work / "inbox"
        archive.ensure_folders(inbox)
        (inbox / "users.csv").write_text(good_csv("p1"), encoding="utf-8")
        for path in (work, *work.rglob("*")):
            if path != inbox / "sending":
                os.chown(path, nobody.pw_uid, nobody.pw_gid)
        env = {**os.environ, "HOME": str(work), "PYTHONDONTWRITEBYTECODE": "1"}
        done = subprocess.run(
            [*prefix, sys.executable, "-m", "dropbox_sync", "--config", str(config_path), "once"],
            check=False,
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        assert (inbox / "users.csv").exists(), "left where it was"
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert done.returncode == 3, done.stderr
    assert "Permission denied" in done.stderr and "sending" in done.stderr, done.stderr
    assert "another program" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert emu.uploads() == []
