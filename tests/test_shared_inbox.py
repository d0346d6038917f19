"""The inbox is shared ground: attacks by someone who can write to it, and nothing else.

The service runs as root in a real subprocess (``once``, and ``run`` stopped and
restarted around a swap); the attacker is the real unprivileged user ``nobody``
(``setpriv``), with write access to this one inbox only. Each attack of issue 12
must leave everything outside the inbox's own real folders untouched, upload
nothing, and hold the inbox with a message that says what to fix.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from dropbox_sync.pipeline import archive_names
from tests.helpers import wait_until
from tests.support import (
    PASSWORD,
    archived,
    emulator_with_password,
    good_csv,
    write_config,
)

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    os.name != "posix" or os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root (the service) and setpriv (to be nobody)",
)


@pytest.fixture
def emu(tmp_path):
    emulator = emulator_with_password(tmp_path).start()
    yield emulator
    emulator.stop()


@pytest.fixture
def shared() -> Iterator[Path]:
    """A folder nobody can reach (pytest's tmp dirs are private to root)."""
    base = Path(tempfile.mkdtemp(prefix="dropbox-sync-shared-"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def as_nobody(*command: str) -> None:
    """Run a command as the unprivileged user nobody; it must succeed."""
    nobody = pwd.getpwnam("nobody")
    prefix = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups", "--"]
    done = subprocess.run([*prefix, *command], capture_output=True, text=True, timeout=60, cwd="/", check=False)
    assert done.returncode == 0, f"{command} as nobody: {done.stderr}"


def shell_as_nobody(script: str) -> None:
    as_nobody("sh", "-ec", script)


def setup_school(shared: Path, emu, tmp_path: Path, **overrides) -> tuple[Path, Path]:
    """This school's inbox, writable by everyone (a share), and its config; returns (config, inbox)."""
    config_path = write_config(shared, emu, ca_bundle=str(emu.copy_ca(tmp_path / "ca.pem")), **overrides)
    inbox = shared / "inbox"
    inbox.chmod(0o777)
    return config_path, inbox


def once(config_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dropbox_sync", "--config", str(config_path), "once"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def snapshot(folder: Path) -> dict[str, tuple[int, int, bytes | str]]:
    """Every entry under ``folder``: owner, mode and content (or link target)."""
    found = {}
    for path in sorted(folder.rglob("*")):
        info = os.lstat(path)
        if path.is_symlink():
            content: bytes | str = os.readlink(path)
        elif path.is_file():
            content = path.read_bytes()
        else:
            content = "dir"
        found[str(path.relative_to(folder))] = (info.st_uid, info.st_mode, content)
    return found


def other_school(shared: Path) -> Path:
    """Another inbox on the same machine, with an archive of its own."""
    other = shared / "other-school"
    (other / "processed").mkdir(parents=True)
    (other / "processed" / "20261125T020000Z_staff.csv").write_text(good_csv("teacher"), encoding="utf-8")
    (other / "processed" / "20261125T020000Z_staff.csv.result.json").write_text('{"success": true}\n')
    return other


def secrets_folder(shared: Path, config_path: Path) -> Path:
    """The folder holding the service's config and password file."""
    folder = shared / "etc-dropbox-sync"
    folder.mkdir(mode=0o700)
    shutil.copy(config_path, folder / "config.toml")
    (folder / "password.txt").write_text(PASSWORD + "\n", encoding="utf-8")
    (folder / "users.csv").write_text(good_csv("private"), encoding="utf-8")
    return folder


@pytest.mark.parametrize("target", ["other school's processed/", "the config folder"])
def test_sending_swapped_for_a_link_holds_and_touches_nothing_behind_it(tmp_path, shared, emu, target):
    config_path, inbox = setup_school(shared, emu, tmp_path)
    assert once(config_path).returncode == 0  # makes sending/, processed/, failed/ as root
    victim = other_school(shared) / "processed" if target.startswith("other") else secrets_folder(shared, config_path)
    before = snapshot(victim)
    shell_as_nobody(f"rmdir {inbox}/sending && ln -s {victim} {inbox}/sending")
    (inbox / "new.csv").write_text(good_csv("n"), encoding="utf-8")

    done = once(config_path)

    assert done.returncode == 3, done.stderr
    assert f"{inbox / 'sending'} is a link" in done.stderr and "Remove the link" in done.stderr
    assert "Traceback" not in done.stderr
    assert snapshot(victim) == before
    assert emu.uploads() == [] and (inbox / "new.csv").is_file()
    assert archived(inbox, "processed") == [] and archived(inbox, "failed") == []


def test_processed_swapped_for_a_link_gets_no_archive_and_no_result(tmp_path, shared, emu):
    config_path, inbox = setup_school(shared, emu, tmp_path)
    assert once(config_path).returncode == 0
    victim = other_school(shared) / "processed"
    before = snapshot(victim)
    shell_as_nobody(f"rmdir {inbox}/processed && ln -s {victim} {inbox}/processed")
    (inbox / "students.csv").write_text(good_csv("s"), encoding="utf-8")

    done = once(config_path)

    assert done.returncode == 3 and f"{inbox / 'processed'} is a link" in done.stderr
    assert snapshot(victim) == before
    assert emu.uploads() == [] and (inbox / "students.csv").is_file()


def test_planted_links_at_temporary_names_write_nothing_through_them(tmp_path, shared, emu):
    """nobody renames root's sending/ away, makes its own and plants links at the names
    the old code would use for the UTF-8 copy and the result of evil.csv."""
    config_path, inbox = setup_school(shared, emu, tmp_path, source_encoding="cp1252")
    assert once(config_path).returncode == 0
    victim = shared / "victim.txt"  # stands for any file the service can write
    victim.write_text("precious\n", encoding="utf-8")
    # The old names were predictable: claim second + file name. Cover the next minute.
    now = dt.datetime.now(dt.UTC)
    stamps = [(now + dt.timedelta(seconds=s)).strftime("%Y%m%dT%H%M%SZ") for s in range(60)]
    plants = " && ".join(
        f"ln -s {victim} {inbox}/sending/.{stamp}_evil.csv{suffix}.tmp"
        for stamp in stamps
        for suffix in (".utf8", ".result.json")
    )
    shell_as_nobody(
        f"mv {inbox}/sending {inbox}/old-sending && mkdir {inbox}/sending && {plants} "
        f"&& printf 'username,library-group,system-group\\nx,G,S\\n' > {inbox}/evil.csv"
    )
    attacker_folder = snapshot(inbox / "sending")

    done = once(config_path)

    assert done.returncode == 3, done.stderr
    assert f"{inbox / 'sending'} belongs to nobody, not to root" in done.stderr
    assert victim.read_text(encoding="utf-8") == "precious\n"
    assert snapshot(inbox / "sending") == attacker_folder, "nothing created in nobody's folder"
    assert emu.uploads() == [] and (inbox / "evil.csv").is_file()


def test_temporaries_have_unpredictable_names_and_never_follow_a_link(tmp_path, shared, emu):
    """Defence in depth: even inside our own folder, a temporary is made with O_EXCL under a
    random name, so a link at any guessable name is never written through."""
    config_path, inbox = setup_school(shared, emu, tmp_path, source_encoding="cp1252")
    assert once(config_path).returncode == 0
    victim = shared / "victim.txt"
    victim.write_text("precious\n", encoding="utf-8")
    from dropbox_sync.pipeline import workdirs

    with workdirs.work_folder(inbox, "sending") as sending:
        names = {sending.create_temporary(".utf8")[0] for _ in range(3)}
        for name in names:
            sending.unlink(name)
    assert len(names) == 3 and all(n.startswith(".") and n.endswith(".utf8.tmp") for n in names)
    (inbox / "sending" / ".guess.tmp").symlink_to(victim)
    with workdirs.work_folder(inbox, "sending") as sending, pytest.raises(OSError):
        sending.open_read(".guess.tmp")  # ELOOP: never followed
    (inbox / "x.csv").write_text(good_csv("x"), encoding="utf-8")
    assert once(config_path).returncode == 0
    assert victim.read_text(encoding="utf-8") == "precious\n"
    assert len(archived(inbox, "processed")) == 1


@pytest.mark.parametrize("which", ["sending", "processed", "failed", "held"])
def test_a_plain_file_named_like_a_work_folder_holds_with_a_clear_reason(tmp_path, shared, emu, which):
    """Issue 11 item 11: it wedged the inbox (a traceback every pass, status all well)."""
    config_path, inbox = setup_school(shared, emu, tmp_path)
    (inbox / which).write_text("not a folder\n", encoding="utf-8")
    (inbox / "a.csv").write_text(good_csv("a"), encoding="utf-8")

    done = once(config_path)

    assert done.returncode == 3, done.stderr
    assert f"{inbox / which} is a file, not a folder" in done.stderr and "Traceback" not in done.stderr
    assert (inbox / which).read_text(encoding="utf-8") == "not a folder\n"
    assert emu.uploads() == [] and (inbox / "a.csv").is_file()
    status = subprocess.run(
        [sys.executable, "-m", "dropbox_sync", "--config", str(config_path), "status", "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    (reported,) = json.loads(status.stdout)["inboxes"]
    assert f"{inbox / which} is a file, not a folder" in reported["held"]
    (inbox / which).unlink()
    assert once(config_path).returncode == 0
    assert len(archived(inbox, "processed")) == 1


@contextlib.contextmanager
def service(config_path: Path) -> Iterator[subprocess.Popen]:
    """``dropbox-sync run`` as root in a real process; SIGTERM and joined after."""
    process = subprocess.Popen(
        [sys.executable, "-m", "dropbox_sync", "--config", str(config_path), "run"],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0


def service_says(shared: Path, text: str) -> bool:
    return any(text in p.read_text(encoding="utf-8", errors="replace") for p in (shared / "logs").glob("*.log"))


def test_a_swap_while_the_service_is_stopped_holds_at_restart_and_resumes_once_fixed(tmp_path, shared, emu):
    config_path, inbox = setup_school(shared, emu, tmp_path, rescan_seconds=1)
    victim = other_school(shared) / "processed"
    with service(config_path):
        (inbox / "first.csv").write_text(good_csv("f"), encoding="utf-8")
        wait_until(lambda: len(archived(inbox, "processed")) == 1, timeout=60)
    before = snapshot(victim)
    # Stopped: nobody moves our sending/ away and puts a link to another school's archive there.
    shell_as_nobody(f"mv {inbox}/sending {inbox}/hidden && ln -s {victim} {inbox}/sending")
    (inbox / "second.csv").write_text(good_csv("s"), encoding="utf-8")
    with service(config_path):
        wait_until(lambda: service_says(shared, f"{inbox / 'sending'} is a link"), timeout=60)
        assert snapshot(victim) == before and (inbox / "second.csv").is_file()
        assert len(emu.uploads()) == 1
        # While it runs, the link goes (a technician removes it): it resumes by itself.
        (inbox / "sending").unlink()
        wait_until(lambda: len(archived(inbox, "processed")) == 2, timeout=60)
        # And a swap while it runs is caught at the next pass too.
        shell_as_nobody(f"rmdir {inbox}/failed && ln -s {victim} {inbox}/failed")
        (inbox / "third.csv").write_text(good_csv("t"), encoding="utf-8")
        wait_until(lambda: service_says(shared, f"{inbox / 'failed'} is a link"), timeout=60)
    assert snapshot(victim) == before
    assert len(emu.uploads()) == 2 and (inbox / "third.csv").is_file()
    assert archive_names.original_name(archived(inbox, "processed")[-1].name) == "second.csv"


def test_a_link_planted_at_report_html_is_replaced_never_written_through(tmp_path, shared, emu):
    config_path, inbox = setup_school(shared, emu, tmp_path)
    precious = shared / "precious.txt"  # root's, outside the inbox
    precious.write_text("root's own file\n", encoding="utf-8")
    as_nobody("ln", "-s", str(precious), str(inbox / "report.html"))
    (inbox / "a.csv").write_text(good_csv("a"), encoding="utf-8")
    done = once(config_path)
    assert done.returncode == 0, done.stderr
    assert precious.read_text(encoding="utf-8") == "root's own file\n"
    page = inbox / "report.html"
    assert not page.is_symlink() and "a.csv" in page.read_text(encoding="utf-8")
