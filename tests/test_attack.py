"""Red-team regressions: what a hostile tester broke by driving the CLI as a technician would.

Each test runs the real command in a real process against the real emulator,
with real folders; see docs/bad-input.md, docs/reliability.md, docs/security.md."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dropbox_sync.pipeline import archive_names, workdirs
from tests.support import archived, good_csv, run_cli, write_config
from tests.test_local_faults import fill, small_tmpfs

# A name can hold any byte but "/" and NUL on Linux: line breaks, escape sequences,
# bytes that are not UTF-8. None of them may forge or break a line of output.
HOSTILE_NAMES = [b"new\nline.csv", b"ret\rurn.csv", b"ctl\x1b[31mred\x07.csv", b"bad\xff\xfeutf8.csv"]
LOG_LINE = re.compile(r"^(\d\d:\d\d:\d\d|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} [+-]\d{4}) ")


def _drop_hostile(inbox: Path) -> None:
    for number, name in enumerate(HOSTILE_NAMES):
        with open(os.fsencode(inbox) + b"/" + name, "wb") as handle:
            handle.write(good_csv(f"hostile{number}").encode())


def _assert_every_line_is_a_log_line(text: str, where: str) -> None:
    for line in text.splitlines():
        assert LOG_LINE.match(line), f"{where}: a line that is not a log line (a name forged it): {line!r}"
        assert "\x1b" not in line and "\x07" not in line, f"{where}: a raw control character: {line!r}"


def test_hostile_names_never_forge_a_log_line_nor_break_the_report(tmp_path: Path, emu) -> None:
    config_path = write_config(tmp_path, emu)
    inbox = tmp_path / "inbox"
    _drop_hostile(inbox)
    done = run_cli("--config", str(config_path), "once")
    assert done.returncode == 0, done.stderr
    assert len(archived(inbox, workdirs.PROCESSED)) == len(HOSTILE_NAMES)
    assert "cannot write" not in done.stderr, done.stderr
    _assert_every_line_is_a_log_line(done.stderr, "stderr")
    for log_file in (tmp_path / "logs").iterdir():
        _assert_every_line_is_a_log_line(log_file.read_text(encoding="utf-8"), log_file.name)


def test_a_waiting_hostile_name_leaves_status_and_the_report_readable(tmp_path: Path, emu) -> None:
    """Files still waiting (here: a done marker never comes) are listed by status and report.html."""
    config_path = write_config(tmp_path, emu, done_marker=".done")
    inbox = tmp_path / "inbox"
    _drop_hostile(inbox)
    done = run_cli("--config", str(config_path), "once")
    assert "cannot write" not in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    page = (inbox / "report.html").read_text(encoding="utf-8")
    assert "\x1b" not in page
    shown = run_cli("--config", str(config_path), "status")
    assert shown.returncode == 0, shown.stderr
    assert "\x1b" not in shown.stdout and "\r" not in shown.stdout, shown.stdout
    lines = shown.stdout.splitlines()
    assert not any(line.startswith("line.csv") for line in lines), shown.stdout  # "new\nline.csv" split in two
    as_json = run_cli("--config", str(config_path), "status", "--json")
    assert as_json.returncode == 0, as_json.stderr
    files = [
        entry["file"] for inbox_status in json.loads(as_json.stdout)["inboxes"] for entry in inbox_status["waiting"]
    ]
    assert len(files) == len(HOSTILE_NAMES), files
    for name in files:
        name.encode("utf-8")  # a lone surrogate would make any UTF-8 reader fail
        assert not any(ord(c) < 0x20 for c in name), name


def test_a_journal_that_cannot_be_opened_loses_no_file_and_prints_no_traceback(tmp_path: Path, emu) -> None:
    """A folder where journal.sqlite3 should be (or a state folder this account cannot
    write): sqlite cannot open it at all. Regression: once, status and history died with
    a traceback. Now `once` refuses to start with the reason (as the service does, whose
    host retries later: a disk not mounted yet), touching nothing; status and history go on."""
    config_path = write_config(tmp_path, emu)
    (tmp_path / "state" / "journal.sqlite3").mkdir(parents=True)
    (tmp_path / "inbox" / "a.csv").write_text(good_csv("journal1"), encoding="utf-8")
    done = run_cli("--config", str(config_path), "once")
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 3, done.stderr
    assert "cannot open the journal" in done.stderr and "state_dir" in done.stderr, done.stderr
    assert (tmp_path / "inbox" / "a.csv").exists() and emu.uploads() == []
    for command in (["status"], ["status", "--json"], ["history"]):
        shown = run_cli("--config", str(config_path), *command)
        assert "Traceback" not in shown.stderr, (command, shown.stderr)
        assert shown.returncode == 0, (command, shown.stderr)
        assert "cannot open the journal" in shown.stderr, (command, shown.stderr)


@pytest.fixture
def full_log_disk(tmp_path: Path):
    """tmp_path/logs (write_config's log_dir) on its own 256 KiB tmpfs, filled up."""
    if not sys.platform.startswith("linux"):
        pytest.skip("mounting a tmpfs needs Linux and root")
    with small_tmpfs(tmp_path / "logs") as mount_point:
        fill(mount_point)
        yield mount_point


def test_a_full_log_disk_costs_one_warning_not_a_dump_per_line(tmp_path: Path, emu, full_log_disk) -> None:
    """Regression: with the log folder's disk full, loguru printed "Logging error in Loguru
    Handler", the raw record (message unscrubbed) and two tracebacks for every log line."""
    config_path = write_config(tmp_path, emu)
    for number in range(3):
        (tmp_path / "inbox" / f"f{number}.csv").write_text(good_csv(f"full{number}"), encoding="utf-8")
    done = run_cli("--config", str(config_path), "once")
    assert done.returncode == 0, done.stderr
    assert len(archived(tmp_path / "inbox", workdirs.PROCESSED)) == 3
    assert "Logging error" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    _assert_every_line_is_a_log_line(done.stderr, "stderr")
    warnings = [line for line in done.stderr.splitlines() if "cannot write the log file" in line]
    assert len(warnings) == 1 and "No space left on device" in warnings[0], done.stderr


def test_a_log_folder_that_cannot_be_made_costs_one_warning_not_a_traceback(tmp_path: Path, emu) -> None:
    """Regression: log_dir naming a plain file (or a folder under /proc) ended `once` with a traceback."""
    config_path = write_config(tmp_path, emu)
    (tmp_path / "logs").write_text("a plain file where the log folder should be\n", encoding="utf-8")
    (tmp_path / "inbox" / "a.csv").write_text(good_csv("logdir1"), encoding="utf-8")
    done = run_cli("--config", str(config_path), "once")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert len([line for line in done.stderr.splitlines() if "cannot write the log file" in line]) == 1, done.stderr
    assert len(archived(tmp_path / "inbox", workdirs.PROCESSED)) == 1


def test_a_reply_whose_headers_cannot_be_read_is_foreign_not_unreachable(tmp_path: Path) -> None:
    """The server took the whole file and answered with a header too big to read (a proxy's
    cookie monster): h11 says "Receive buffer too long". Regression: that was "cannot reach"
    (a passing fault), so `run` uploaded the file again after every backoff, for ever."""
    from dropbox_sync.pipeline.outcome import FOREIGN_REPLIES_BEFORE_HOLD
    from tests.badservers import Scripted, ScriptedServer
    from tests.test_replies import once

    reply = Scripted(body=b'{"success": true, "summary": "ok"}', headers=(("X-Cookie-Monster", "a" * 200_000),))
    with ScriptedServer(reply) as server:
        inbox, result = once(tmp_path, server)
    assert server.stats.requests == FOREIGN_REPLIES_BEFORE_HOLD, "bounded: no re-upload loop"
    reason = result.held["inbox"]
    assert "not an Infiniti import reply" in reason and "cannot reach" not in reason, reason
    assert len(list((inbox / "sending").iterdir())) == 1, "the file waits, claimed, nothing lost"


def test_a_cookie_a_server_sets_is_never_sent_back(tmp_path: Path) -> None:
    """Infiniti's import is authenticated by Basic Auth on every request; a cookie is nothing
    we asked for. Whatever a server (or a proxy in front of it) sets must not be kept and
    replayed on the next upload of the batch: it would let a hostile reply tag or steer the
    requests that follow, and storing it cost a tenth of the client's CPU per file."""
    from dropbox_sync import config
    from dropbox_sync.pipeline.runner import Pipeline
    from tests.badservers import Scripted, ScriptedServer

    ok = b'{"success": true, "summary": "1 users processed"}'
    tagged = Scripted(
        body=ok,
        headers=(("Content-Type", "application/json"), ("Set-Cookie", "session=evil; Path=/")),
    )
    with ScriptedServer(tagged) as server:
        inbox = tmp_path / "inbox"
        config_path = write_config(tmp_path, server, settle_seconds=0)
        for name in ("a.csv", "b.csv", "c.csv"):
            (inbox / name).write_text(good_csv(name[0]), encoding="utf-8")
        Pipeline(config.load(config_path)).once(__import__("threading").Event())
    assert server.stats.requests == 3
    for head in server.stats.heads:
        assert b"\r\ncookie:" not in head.lower(), head
    assert len(archived(inbox, workdirs.PROCESSED)) == 3


@pytest.mark.parametrize(
    ("first", "filed"),
    [((503, b"busy"), True), ((401, b'{"error": "no"}'), False), ((200, b"<html>not JSON</html>"), True)],
    ids=["busy-then-ok", "refused-held", "foreign-then-ok"],
)
def test_the_result_temporary_made_during_the_upload_never_outlives_it(tmp_path: Path, first, filed) -> None:
    """The result's temporary is made while the server imports the file (making a file is most
    of a small durable write). A reply that writes no result (a retry, a hold, a reply that is
    not Infiniti's) leaves no temporary behind, and the result that is written is whole."""
    from tests.badservers import Scripted, ScriptedServer
    from tests.test_replies import once

    status, body = first
    ok = Scripted(body=b'{"success": true, "summary": "1 users processed"}')
    with ScriptedServer(Scripted(status=status, body=body), ok) as server:
        inbox, _ = once(tmp_path, server)
    assert not [p for p in inbox.rglob("*") if p.name.endswith(".tmp")]
    if filed:
        (archived_file,) = archived(inbox, workdirs.PROCESSED)
        result = json.loads(archive_names.result_path(archived_file).read_text(encoding="utf-8"))
        assert result["success"] is True and result["dropbox_sync"]["attempts"] == 2
    else:
        assert len(list((inbox / "sending").iterdir())) == 1, "the file waits, claimed, nothing lost"


def test_odd_command_arguments_are_usage_errors_never_a_traceback(tmp_path: Path, emu) -> None:
    """Regression: `history --limit 99999999999999999999` died with a traceback (SQLite's
    integer overflow), and a folder or device given as FILE was "no such file"."""
    config_path = write_config(tmp_path, emu)
    base = ("--config", str(config_path))
    for limit in ("99999999999999999999", "-1", "0"):
        done = run_cli(*base, "history", "--limit", limit)
        assert done.returncode == 2 and "Traceback" not in done.stderr, (limit, done.stderr)
        assert "--limit" in done.stderr, done.stderr
    for command in ("send", "preview", "diff"):
        for target, words in (
            (tmp_path / "inbox", "is a folder"),
            (Path("/dev/null"), "is not a regular file"),
            (tmp_path / "nope.csv", "no such file"),
        ):
            done = run_cli(*base, command, str(target))
            assert done.returncode == 2 and "Traceback" not in done.stderr, (command, target, done.stderr)
            assert words in done.stderr, (command, target, done.stderr)


def test_an_unnamed_output_column_is_one_clear_config_line(tmp_path: Path, emu) -> None:
    """Regression: it read 'inbox "inbox": columns. names an empty output column'."""
    config_path = write_config(tmp_path, emu)
    with open(config_path, "a", encoding="utf-8") as handle:
        handle.write('[inbox.columns]\nusername = "{ID}"\n"" = "x"\n')
    done = run_cli("--config", str(config_path), "check")
    assert done.returncode == 2, done.stderr
    assert "columns. " not in done.stderr and 'no name ("" = ...)' in done.stderr, done.stderr


@pytest.mark.parametrize(
    "setting",
    [
        "settle_seconds = nan",
        "timeout = inf",
        "connect_timeout = nan",
        "keep_days = nan",
        "stop_timeout = inf",
        "retry_first_seconds = -inf",
        "hold_retry_seconds = 1e300",
        "delta = true\nfull_sync_days = inf",
        "full_sync_days = nan",
    ],
)
def test_a_duration_that_is_not_a_finite_number_is_a_config_error(tmp_path: Path, emu, setting: str) -> None:
    """TOML has nan and inf. Regression: they (and 1e300) were taken: `once` with
    settle_seconds = nan never ended, timeout = inf or keep_days = nan ended each pass in a
    traceback (OverflowError, ValueError), full_sync_days = inf in the roster's arithmetic."""
    config_path = write_config(tmp_path, emu)
    text = config_path.read_text(encoding="utf-8")
    config_path.write_text(text.replace("settle_seconds = 0.3", setting), encoding="utf-8")
    (tmp_path / "inbox" / "a.csv").write_text(good_csv("finite1"), encoding="utf-8")
    done = run_cli("--config", str(config_path), "once")
    assert done.returncode == 2, done.stderr
    key = setting.split("\n")[-1].split(" = ")[0]
    assert key in done.stderr and "Traceback" not in done.stderr, done.stderr


@pytest.mark.parametrize("inside", ["processed", "failed/2026", "held", "sending"])
def test_an_inbox_inside_another_inboxs_work_folder_is_a_config_error(tmp_path: Path, emu, inside: str) -> None:
    """Regression: a second inbox pointed at the first one's processed/ uploaded every file
    the first had imported again (to its own url, perhaps another tenant) and moved them
    out of the first one's archive."""
    config_path = write_config(tmp_path, emu)
    folder = tmp_path / "inbox" / inside
    folder.mkdir(parents=True)
    with open(config_path, "a", encoding="utf-8") as handle:
        handle.write(
            f'[[inbox]]\nname = "second"\npath = {json.dumps(str(folder))}\n'
            f"url = {json.dumps(emu.base_url + '/api/import/users')}\n"
            'username = "u"\npassword = "pass-word"\n'
        )
    done = run_cli("--config", str(config_path), "check")
    assert done.returncode == 2, done.stderr
    assert 'inbox "second"' in done.stderr and f"{inside.split('/')[0]}/" in done.stderr, done.stderr


@pytest.mark.parametrize("command", [["status", "--json"], ["history", "--json"], ["status"]])
def test_output_piped_into_a_reader_that_stops_early_is_no_traceback(tmp_path: Path, emu, command) -> None:
    """`dropbox-sync status --json | head -1`: the reader closes the pipe. Regression: the
    command ended in a BrokenPipeError traceback."""
    config_path = write_config(tmp_path, emu)
    (tmp_path / "inbox" / "a.csv").write_text(good_csv("pipe1"), encoding="utf-8")
    assert run_cli("--config", str(config_path), "once").returncode == 0
    reader, writer = os.pipe()
    os.close(reader)  # the reader is gone before the first byte
    try:
        done = subprocess.run(
            [sys.executable, "-m", "dropbox_sync", "--config", str(config_path), *command],
            stdout=writer,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    finally:
        os.close(writer)
    assert "Traceback" not in done.stderr and "Error" not in done.stderr, done.stderr
    assert done.returncode in (0, 1), done.stderr


NOTIFY = '[notify]\nsmtp_host = "127.0.0.1"\nsmtp_port = 2525\nstarttls = false\nfrom = "a@school.example"\n'


@pytest.mark.parametrize(
    "setting",
    [
        'to = ["it@school.example\\r\\nBcc: someone@else.example"]',
        'from = "a@school.example\\nX-Evil: 1"',
        'subject_prefix = "[sync]\\nBcc: x@y.example"',
        "digest_minutes = nan",
        "smtp_timeout = inf",
        "stale_after_hours = inf",
        "alert_after_minutes = 1e300",
    ],
)
def test_notify_settings_that_no_email_could_carry_are_config_errors(tmp_path: Path, emu, setting: str) -> None:
    """Regression: a line break in from, to or subject_prefix was accepted, and every email then
    failed to build (email's "Header values may not contain linefeed"): no alert ever went out;
    nan and inf were taken as minutes, hours and seconds (timedelta overflows)."""
    config_path = write_config(tmp_path, emu)
    key = setting.split(" = ")[0]
    notify = "".join(line + "\n" for line in NOTIFY.splitlines() if not line.startswith(f"{key} ="))
    to = "" if key == "to" else 'to = ["it@school.example"]\n'
    with open(config_path, "a", encoding="utf-8") as handle:
        handle.write(notify + to + setting + "\n")
    done = run_cli("--config", str(config_path), "check")
    assert done.returncode == 2, done.stderr
    assert key in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_an_inbox_name_with_a_control_character_is_a_config_error(tmp_path: Path, emu) -> None:
    """It is printed by check and status, and goes into email subjects and lock file names."""
    config_path = write_config(tmp_path, emu)
    text = config_path.read_text(encoding="utf-8").replace('name = "inbox"', 'name = "in\\nbox\\u001b[31m"')
    config_path.write_text(text, encoding="utf-8")
    done = run_cli("--config", str(config_path), "check")
    assert done.returncode == 2, done.stderr
    assert "name" in done.stderr and "\x1b" not in done.stderr + done.stdout, done.stderr


@pytest.mark.parametrize("encoding", ["utf-16", "cp1252"])
def test_a_config_saved_in_another_encoding_says_how_to_save_it(tmp_path: Path, emu, encoding: str) -> None:
    """Notepad's "Unicode" is UTF-16; "ANSI" is cp1252 (here with an é in a comment).
    Regression: "cannot read config file: 'utf-8' codec can't decode byte 0xff in position 0"."""
    config_path = write_config(tmp_path, emu)
    text = "# élèves\n" + config_path.read_text(encoding="utf-8")
    config_path.write_bytes(text.encode(encoding))
    done = run_cli("--config", str(config_path), "check")
    assert done.returncode == 2, done.stderr
    assert "codec" not in done.stderr and "UTF-8" in done.stderr, done.stderr
    if encoding == "utf-16":
        assert "UTF-16" in done.stderr, done.stderr
    else:
        assert "line 1" in done.stderr, done.stderr


def test_a_held_file_named_twice_is_approved_once_without_a_puzzling_error(tmp_path: Path, emu) -> None:
    """Regression: `approve big.csv big.csv` approved it, then printed
    "20261202T045158Z_big.csv: not approved: 20261202T045158Z_big.csv" and exited 1."""
    from tests.test_held import held_setup

    config_path, _inbox, held_path = held_setup(tmp_path, emu)
    done = run_cli("--config", str(config_path), "approve", held_path.name, archive_names.original_name(held_path.name))
    assert done.returncode == 0, done.stderr
    assert "not approved" not in done.stderr, done.stderr
    assert done.stdout.count("approved; it is sent next") == 1, done.stdout


def test_a_row_reason_quoting_the_password_never_reaches_the_failed_rows_file(tmp_path: Path) -> None:
    """A server (or a proxy's error page in its place) quoting the password in a row's reason.
    Regression: <archived>.failed-rows.csv, which office staff open and mail around, held it."""
    from tests.badservers import Scripted, ScriptedServer
    from tests.support import PASSWORD
    from tests.test_replies import once

    body = json.dumps(
        {
            "success": False,
            "summary": "1 user processed. 1 user failed.",
            "details": {"1": f"Field (password) is not {PASSWORD}. User failed to import."},
        }
    )
    with ScriptedServer(Scripted(body=body.encode())) as server:
        inbox, _result = once(tmp_path, server)
    (failed,) = [p for p in archived(inbox, workdirs.FAILED)]
    rows = failed.with_name(failed.name + archive_names.FAILED_ROWS_SUFFIX)
    assert rows.exists(), list(failed.parent.iterdir())
    text = rows.read_text(encoding="utf-8-sig")
    assert "Field (password) is not" in text and PASSWORD not in text, text


def test_a_plain_file_named_held_leaves_status_json_and_the_page_written(tmp_path: Path, emu) -> None:
    """held/ replaced by a plain file holds that inbox (issue 11 item 11). Regression: listing
    held files raised for it, so status.json (every inbox's, for monitoring) and that inbox's
    report.html were no longer written: a running service looked silent."""
    config_path = write_config(tmp_path, emu, inboxes=2)
    (tmp_path / "inbox" / "held").write_text("not a folder\n", encoding="utf-8")
    (tmp_path / "inbox2" / "b.csv").write_text(good_csv("held2"), encoding="utf-8")
    done = run_cli("--config", str(config_path), "once")
    assert "cannot write" not in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    data = json.loads((tmp_path / "state" / "status.json").read_text(encoding="utf-8"))
    assert "held is a file" in data["inboxes"]["inbox"]["held"], data
    assert data["inboxes"]["inbox"]["held_files"] == []
    page = (tmp_path / "inbox" / "report.html").read_text(encoding="utf-8")
    assert "held is a file" in page
