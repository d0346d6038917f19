"""One process works an inbox at a time (DESIGN §9): real processes, a real OS file lock.

Before the lock, a technician's ``once`` while the service was uploading took
the service's claimed file for a crash leftover and posted it a second time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from dropbox_sync import config
from dropbox_sync.cli import main
from dropbox_sync.pipeline.inboxlock import InboxLock
from tests.helpers import wait_until
from tests.support import (
    archived,
    dropbox_sync_process,
    finish,
    good_csv,
    running_service,
    write_config,
)


def test_once_leaves_alone_an_inbox_the_service_is_uploading_from(tmp_path, emu, capsys):
    config_path = write_config(tmp_path, emu, stop_timeout=1)
    inbox = tmp_path / "inbox"
    emu.inject("hang", hang_seconds=120)  # the service's upload stays on the wire, its file claimed
    service = dropbox_sync_process("--config", str(config_path), "run")
    try:
        (inbox / "students.csv").write_text(good_csv("s1"), encoding="utf-8")
        wait_until(lambda: any(u.fault == "hang" for u in emu.uploads()), timeout=30)

        once = dropbox_sync_process("--config", str(config_path), "once")
        code, err = finish(once)
        assert code == 3, err
        assert f'inbox "inbox": not worked: another dropbox-sync process works this inbox (pid {service.pid}' in err
        assert "run" in err and "left alone" in err
        assert len(emu.uploads()) == 1, "the claimed file must not be posted a second time"

        assert main(["--config", str(config_path), "status", "--json"]) == 0
        (shown,) = json.loads(capsys.readouterr().out)["inboxes"]
        assert shown["worked_by"]["pid"] == service.pid
    finally:
        code, err = finish(service, stop=True)
    assert code == 0, err


def holder_process(state_dir: Path, folder: Path) -> subprocess.Popen:
    """Another process holding an inbox's lock until its stdin closes (or it is killed)."""
    script = (
        "import sys; from pathlib import Path; from dropbox_sync.pipeline.inboxlock import InboxLock\n"
        f"lock = InboxLock(Path({str(state_dir)!r}), 'inbox', Path({str(folder)!r}))\n"
        "assert lock.acquire(); print('held', flush=True); sys.stdin.read()\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    return process


def test_the_service_waits_for_an_inbox_another_process_holds_then_takes_it_over_even_after_kill_9(tmp_path, emu):
    config_path = write_config(tmp_path, emu)
    cfg = config.load(config_path)
    inbox = tmp_path / "inbox"
    other = holder_process(cfg.state_dir, cfg.inboxes[0].path)
    try:
        with running_service(config_path) as pipeline:
            (inbox / "a.csv").write_text(good_csv("a1"), encoding="utf-8")
            snapshot = wait_until(lambda: next((s for s in pipeline.snapshots() if s.held), None), timeout=15)
            assert f"pid {other.pid}" in snapshot.held and "another dropbox-sync process" in snapshot.held
            assert pipeline.healthy(), "waiting for another process is not being stuck"
            assert (inbox / "a.csv").exists() and emu.uploads() == []

            os.kill(other.pid, signal.SIGKILL)  # the OS lets go of its lock: nothing stale is left behind
            other.wait(30)
            wait_until(lambda: archived(inbox, "processed"), timeout=30)
            assert len(emu.uploads()) == 1
            assert not any(s.held for s in pipeline.snapshots())
    finally:
        if other.poll() is None:
            other.kill()
        other.communicate()


def test_the_lock_lives_in_the_state_dir_and_is_released_at_the_end(tmp_path, emu):
    config_path = write_config(tmp_path, emu)
    cfg = config.load(config_path)
    (tmp_path / "inbox" / "a.csv").write_text(good_csv("a1"), encoding="utf-8")
    assert main(["--config", str(config_path), "once"]) == 0
    lock = InboxLock(cfg.state_dir, "inbox", cfg.inboxes[0].path)
    assert lock.path.parent == cfg.state_dir / "locks"
    assert not list((tmp_path / "inbox").glob("*.lock")), "nothing of ours in the shared inbox"
    assert lock.held_elsewhere() is None and lock.acquire(), "released when once ended"
    lock.release()


def test_a_second_process_does_not_mail_what_the_service_has_queued(tmp_path, emu):
    # notify.json belongs to the process that sends the email. Before, a `once` beside the
    # service loaded the service's queued failures and mailed them at its exit, and the service
    # mailed them again after its digest window: every failure twice.
    from tests.test_notify import config_file, notify_table, smtp_server

    with smtp_server() as (server, box):
        config_path = config_file(tmp_path, notify_table(server.port, digest_minutes=60), emulator=emu)
        notify_json = tmp_path / "state" / "notify.json"

        def queued() -> list[str]:
            try:
                return [f["original"] for f in json.loads(notify_json.read_text(encoding="utf-8"))["failed"]]
            except (OSError, ValueError, KeyError):
                return []

        service = dropbox_sync_process("--config", str(config_path), "run")
        try:
            (tmp_path / "inbox" / "bad.csv").write_text("username\nx\n", encoding="utf-8")  # goes to failed/
            wait_until(lambda: queued() == ["bad.csv"], timeout=30)  # the service's digest waits its 60 min

            code, err = finish(dropbox_sync_process("--config", str(config_path), "once"))
            assert code == 3, err
            assert box.messages == [], "the other process must not send the service's digest"
            assert queued() == ["bad.csv"]
        finally:
            code, err = finish(service, stop=True)
        assert code == 0, err
        (message,) = box.messages  # the service sends it once, at its stop
        assert "bad.csv" in message.get_content()
