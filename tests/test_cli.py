"""The commands as a technician uses them: exit codes, output, real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from dropbox_sync.cli import main
from tests.helpers import wait_until
from tests.support import PASSWORD, archived, emulator_with_password, good_csv, write_config


@pytest.fixture
def emu(tmp_path):
    emulator = emulator_with_password(tmp_path).start()
    yield emulator
    emulator.stop()


def cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dropbox_sync", *args],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        **kwargs,
    )


def test_once_exit_codes_all_good_then_some_failed(tmp_path, emu):
    config_path = write_config(tmp_path, emu)
    (tmp_path / "inbox" / "a.csv").write_text(good_csv("a"), encoding="utf-8")
    assert main(["--config", str(config_path), "once"]) == 0
    (tmp_path / "inbox" / "b.csv").write_text("username\nb\n", encoding="utf-8")
    assert main(["--config", str(config_path), "once"]) == 1
    assert main(["--config", str(config_path), "once"]) == 0, "an empty inbox is all good"


def test_once_with_rejected_credentials_holds_and_exits_3(tmp_path, emu, capsys):
    emu.set_password("autoimport", "changed-by-the-librarian")
    config_path = write_config(tmp_path, emu)
    (tmp_path / "inbox" / "a.csv").write_text(good_csv("a"), encoding="utf-8")
    assert main(["--config", str(config_path), "once"]) == 3
    assert archived(tmp_path / "inbox", "failed") == []
    (claimed,) = (tmp_path / "inbox" / "sending").iterdir()
    assert claimed.name.endswith("_a.csv")
    emu.set_password("autoimport", PASSWORD)
    assert main(["--config", str(config_path), "once"]) == 0, "held files go first next time"
    assert len(archived(tmp_path / "inbox", "processed")) == 1


def test_send_prints_the_servers_json_and_moves_nothing(tmp_path, emu, capsys):
    config_path = write_config(tmp_path, emu)
    file = tmp_path / "manual.csv"
    file.write_text(good_csv("m1", "m2"), encoding="utf-8")
    assert main(["--config", str(config_path), "send", str(file)]) == 0
    reply = json.loads(capsys.readouterr().out)
    assert reply == {"success": True, "summary": "2 users processed. 2 users created. 0 users updated. 0 users failed."}
    assert file.exists()
    file.write_text(good_csv("m1").replace("Year 7", "Year 99"), encoding="utf-8")
    assert main(["--config", str(config_path), "send", str(file)]) == 1
    assert main(["--config", str(config_path), "send", str(tmp_path / "absent.csv")]) == 2


def test_init_writes_a_commented_config_and_refuses_to_overwrite(tmp_path, capsys):
    target = tmp_path / "conf" / "config.toml"
    assert main(["--config", str(target), "init"]) == 0
    assert "[[inbox]]" in target.read_text(encoding="utf-8")
    assert main(["--config", str(target), "init"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_check_reports_each_file_and_uploads_nothing(tmp_path, emu, capsys):
    config_path = write_config(tmp_path, emu)
    inbox = tmp_path / "inbox"
    (inbox / "good.csv").write_text(good_csv("a"), encoding="utf-8")
    (inbox / "bad.csv").write_text("name,group\nx,y\n", encoding="utf-8")
    assert main(["--config", str(config_path), "check"]) == 1
    out = capsys.readouterr().out
    assert "good.csv: would be uploaded" in out
    assert "bad.csv: would go to failed/: Missing required column(s): username, library-group, system-group." in out
    assert emu.uploads() == []
    assert main(["--config", str(config_path), "check", "--online", str(inbox / "good.csv")]) == 0
    assert "online: URL, TLS and credentials work" in capsys.readouterr().out
    (upload,) = emu.uploads()
    assert upload.bytes == 0, "the online check posts an empty CSV"


def test_retry_moves_failed_files_back_under_their_original_name(tmp_path, emu, capsys):
    config_path = write_config(tmp_path, emu)
    inbox = tmp_path / "inbox"
    (inbox / "oops.csv").write_text("username\nx\n", encoding="utf-8")
    assert main(["--config", str(config_path), "once"]) == 1
    assert main(["--config", str(config_path), "retry"]) == 0
    assert (inbox / "oops.csv").read_text(encoding="utf-8") == "username\nx\n"
    assert main(["--config", str(config_path), "retry", "missing.csv"]) == 1


def test_run_stops_cleanly_on_sigterm_after_processing(tmp_path, emu):
    config_path = write_config(tmp_path, emu)
    inbox = tmp_path / "inbox"
    process = subprocess.Popen(
        [sys.executable, "-m", "dropbox_sync", "--config", str(config_path), "run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        (inbox / "live.csv").write_text(good_csv("live"), encoding="utf-8")
        wait_until(lambda: archived(inbox, "processed"), timeout=30)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert "stopped" in err
    logs = list((tmp_path / "logs").glob("dropbox-sync_*.log"))
    assert logs and "live.csv -> processed/" in logs[0].read_text(encoding="utf-8")


def test_demo_runs_end_to_end_in_a_subprocess(tmp_path):
    result = cli("demo", "--clean", env={**os.environ, "TMPDIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert "Demo finished: every file ended where it should." in result.stdout
    assert "row 2: Field (emailAddress) is not a well-formed email address.\n" in result.stdout, "said once"
    assert "to fix and drop back: inbox/failed/" in result.stdout and "_staff.csv.failed-rows.csv" in result.stdout
    assert not list(tmp_path.glob("dropbox-sync-demo-*")), "--clean removes the demo folder"


def test_help_and_usage_errors(capsys):
    assert main(["--help"]) == 0
    assert "demo" in capsys.readouterr().out
    assert main(["no-such-command"]) == 2


def test_send_draws_a_progress_bar_at_a_terminal(tmp_path, emu):
    # A real pseudo-terminal as stdout, as when a technician runs send by hand.
    import pty

    config_path = write_config(tmp_path, emu, max_file_size="50MB")
    big = tmp_path / "big.csv"
    row = "u{},First,Last,Year 7,Student,\n"
    big.write_text(good_csv("u0") + "".join(row.format(n) for n in range(1, 120_000)), encoding="utf-8")
    leader, follower = pty.openpty()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "dropbox_sync", "--config", str(config_path), "send", str(big)],
            stdout=follower,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            timeout=120,
        )
    finally:
        os.close(follower)
        os.close(leader)
    assert result.returncode == 0, result.stderr
    err = result.stderr.decode()
    assert "100%" in err and "MB/s" in err


def test_progress_bar_renders_share_and_rate():
    import io

    from dropbox_sync.progress import ProgressBar

    now = [0.0]
    out = io.StringIO()
    bar = ProgressBar(4_000_000, out, clock=lambda: now[0])
    now[0] = 2.0
    bar(2_000_000)
    assert bar.render(2.0).endswith(" 50% 2.0/4.0 MB 1.0 MB/s")
    assert out.getvalue().startswith("\r[###############...............]")
