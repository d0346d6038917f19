"""Damaged state files: the journal, notify.json, status.json.

They are conveniences (DESIGN §9): a damaged one is set aside (kept, with a
dated name), a fresh one is started, an error is logged, and no command stops
and no upload waits because of it. The damage is real: random bytes, a file
cut in half, zeroed pages, JSON of every wrong shape.
"""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path

import pytest

from dropbox_sync.cli import main
from dropbox_sync.notify.notifier import Notifier
from dropbox_sync.paths import NOTIFY_FILE
from dropbox_sync.state.journal import Attempt, Journal
from tests.helpers import wait_until
from tests.support import (
    archived,
    dropbox_sync_process,
    finish,
    good_csv,
    running_service,
    write_config,
)
from tests.test_notify import FakeClock, failed_report, load, logs, notify_table, smtp  # noqa: F401 - fixtures

# -- the journal --------------------------------------------------------------------------


def journal_with_history(path: Path, attempts: int = 3000) -> None:
    journal = Journal(path)
    for number in range(attempts):
        journal.record(
            Attempt(
                "inbox",
                f"2026_{number}.csv",
                f"{number}.csv",
                None,
                10,
                "2026-01-01T00:00:00Z",
                "2026-01-01T00:00:01Z",
                200,
                "processed",
                "1 user processed",
                "",
                1,
            )
        )
    journal.close()  # checkpoints the WAL into the file


def damage(path: Path, how: str) -> bytes:
    data = path.read_bytes()
    rng = random.Random(11)
    if how == "garbage":
        damaged = rng.randbytes(8192)
    elif how == "cut in half":
        damaged = data[: len(data) // 2]
    else:  # zeroed pages: the header page survives, a run of pages in the middle is gone
        page = 4096
        start, end = 2 * page, (len(data) // page // 2) * page
        damaged = data[:start] + bytes(end - start) + data[end:]
    path.write_bytes(damaged)
    return damaged


DAMAGE = ["garbage", "cut in half", "zeroed pages"]


@pytest.mark.parametrize("how", DAMAGE)
def test_status_and_once_set_a_damaged_journal_aside_and_carry_on(tmp_path, emu, capsys, how):
    config_path = write_config(tmp_path, emu)
    journal_path = tmp_path / "state" / "journal.sqlite3"
    journal_with_history(journal_path)
    damaged = damage(journal_path, how)

    assert main(["--config", str(config_path), "status"]) == 0
    (aside,) = journal_path.parent.glob("journal.sqlite3.damaged-*")
    assert aside.read_bytes() == damaged, "the damaged journal is kept as it was, for a person"
    assert f"the journal {journal_path} is damaged" in capsys.readouterr().err

    journal_with_history(journal_path, 1000)
    damage(journal_path, how)  # once meets it too
    (tmp_path / "inbox" / "a.csv").write_text(good_csv("a1"), encoding="utf-8")
    assert main(["--config", str(config_path), "once"]) == 0
    assert len(archived(tmp_path / "inbox", "processed")) == 1
    assert len(list(journal_path.parent.glob("journal.sqlite3.damaged-*"))) == 2
    journal = Journal(journal_path)
    try:
        last = journal.last("inbox", "processed")
        assert last is not None and last.original == "a.csv", "the fresh journal records the new work"
    finally:
        journal.close()


def test_run_starts_with_a_garbage_journal_and_uploads(tmp_path, emu):
    config_path = write_config(tmp_path, emu)
    journal_path = tmp_path / "state" / "journal.sqlite3"
    journal_path.parent.mkdir(parents=True)
    journal_path.write_bytes(random.Random(5).randbytes(8192))
    process = dropbox_sync_process("--config", str(config_path), "run")
    try:
        (tmp_path / "inbox" / "a.csv").write_text(good_csv("a1"), encoding="utf-8")
        wait_until(lambda: archived(tmp_path / "inbox", "processed") or process.poll() is not None, timeout=30)
    finally:
        code, err = finish(process, stop=True)
    assert code == 0, err
    assert len(archived(tmp_path / "inbox", "processed")) == 1
    assert "is damaged" in err and "Traceback" not in err


def test_a_journal_error_during_work_never_blocks_an_upload(tmp_path, emu, logs):  # noqa: F811
    # The shrink guard reads the journal before every upload: a journal that fails
    # under the running service must cost history, not the upload.
    config_path = write_config(tmp_path, emu, shrink_guard=0.5)
    inbox = tmp_path / "inbox"
    with running_service(config_path):
        (inbox / "first.csv").write_text(good_csv("a1", "a2"), encoding="utf-8")
        wait_until(lambda: len(archived(inbox, "processed")) == 1, timeout=30)
        other = sqlite3.connect(tmp_path / "state" / "journal.sqlite3")  # another process breaks it
        with other:
            other.execute("DROP TABLE attempts")
        other.close()
        (inbox / "second.csv").write_text(good_csv("a1", "a2"), encoding="utf-8")
        wait_until(lambda: len(archived(inbox, "processed")) == 2, timeout=30)
    assert not list((inbox / "sending").iterdir())
    assert any("journal: cannot" in line and "no such table" in line for line in logs)


def test_damage_found_during_work_sets_the_journal_aside_and_goes_on(tmp_path, logs):  # noqa: F811
    path = tmp_path / "journal.sqlite3"
    journal = Journal(path)
    journal.record(Attempt("inbox", "a", "a.csv", None, 1, "t", "t", 200, "processed", "ok", "", 1))
    # SQLite caches the pages it has read, so damage written under an open journal shows
    # up at no predictable query; what the journal does when SQLite says CORRUPT is the
    # same whenever it says it, so it is said here on cue.
    journal._db.close()
    damage(path, "garbage")
    journal._db = sqlite3.connect(path, check_same_thread=False)
    try:
        assert journal.last("inbox", "processed") is None  # no history, no exception
        journal.record(Attempt("inbox", "b", "b.csv", None, 1, "t", "t", 200, "processed", "ok", "", 1))
        last = journal.last("inbox", "processed")
        assert last is not None and last.original == "b.csv"
    finally:
        journal.close()
    assert len(list(tmp_path.glob("journal.sqlite3.damaged-*"))) == 1
    assert any("ERROR" in line and "is damaged" in line for line in logs)


# -- notify.json and status.json --------------------------------------------------------

WRONG_JSON = {
    "binary": bytes(range(256)) * 4,
    "truncated": b'{"failed": [{"inbox": "inbox", "orig',
    "a list": b"[]",
    "a number": b"42",
    "a string": b'"notify"',
    "null": b"null",
    "nested too deep": b"[" * 100_000,
    "failed is a number": b'{"failed": 5}',
    "a failed file of numbers": b'{"failed": [{"inbox": 1, "original": 2, "archived": 3, "summary": 4, "when": 5}]}',
    "failed rows not a list": b'{"failed": [{"inbox": "i", "original": "o", "archived": "", "summary": "s", '
    b'"when": "2026-01-01T00:00:00Z", "rows": 7}]}',
    "a hold of the wrong type": b'{"holds": {"inbox": 5}}',
    "episodes as a list": b'{"watching_since": ["inbox"]}',
    "times that are not text": b'{"last_sent": {"digest": 17}, "stale_alerted": {"inbox": {}}}',
}


@pytest.mark.parametrize("content", WRONG_JSON.values(), ids=WRONG_JSON.keys())
def test_a_damaged_notify_json_is_set_aside_and_mail_goes_on(tmp_path, smtp, logs, content):  # noqa: F811
    server, box = smtp
    cfg = load(tmp_path, notify_table(server.port))
    state = cfg.state_dir / NOTIFY_FILE
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_bytes(content)
    notifier = Notifier(cfg.notify, cfg.inboxes, state_dir=cfg.state_dir, now=FakeClock())
    (aside,) = cfg.state_dir.glob(f"{NOTIFY_FILE}.damaged-*")
    assert aside.read_bytes() == content
    assert any("ERROR" in line and "notify.json" in line and "set aside" in line for line in logs)
    notifier.on_report(failed_report(tmp_path / "inbox", "f.csv", {"success": False, "summary": "no"}))
    assert notifier.tick(final=True) == 1
    assert "f.csv" in box.body()
    assert json.loads(state.read_text(encoding="utf-8"))["failed"] == []


WRONG_STATUS = {
    **{
        name: content
        for name, content in WRONG_JSON.items()
        if name in ("binary", "truncated", "a list", "a number", "null", "nested too deep")
    },
    "inboxes is a list": b'{"mode": "run", "updated": "2026-01-01T00:00:00+00:00", "inboxes": []}',
    "an inbox is a list": b'{"inboxes": {"inbox": []}}',
    "waiting is a list": b'{"inboxes": {"inbox": {"waiting": ["a.csv"], "held": 5}}}',
    "fields of the wrong type": b'{"updated": 5, "mode": [], "pid": "x", "inboxes": {"inbox": {"waiting": {"a": 1}}}}',
}


@pytest.mark.parametrize("content", WRONG_STATUS.values(), ids=WRONG_STATUS.keys())
def test_status_reads_past_a_damaged_status_json(tmp_path, emu, capsys, content):
    config_path = write_config(tmp_path, emu)
    (tmp_path / "inbox" / "waiting.csv").write_text(good_csv("w"), encoding="utf-8")
    state = tmp_path / "state" / "status.json"
    state.parent.mkdir(parents=True)
    state.write_bytes(content)
    assert main(["--config", str(config_path), "status"]) == 0
    assert "waiting.csv" in capsys.readouterr().out
    assert main(["--config", str(config_path), "status", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["service"]["running"] is False
    (inbox,) = data["inboxes"]
    assert inbox["held"] in (None,) and [w["file"] for w in inbox["waiting"]] == ["waiting.csv"]


# -- a result found in sending/ at start-up ---------------------------------------------


def test_a_damaged_result_found_at_start_up_never_breaks_the_history_or_the_page(tmp_path, emu):
    """A claimed file whose result, found at start-up, is JSON of our shape with damaged facts
    (a time that is not one, control characters, a name 100,000 characters long): the file
    is filed by its result, and what the journal gets from it (``recorded_attempt``) must
    not stop report.html being written, nor put raw control characters in `status` and
    `history`. Its `finished` went into the journal as it was: every later page failed."""
    from tests.support import run_cli

    config_path = write_config(tmp_path, emu, settle_seconds=0)
    inbox = tmp_path / "inbox"
    sending = inbox / "sending"
    sending.mkdir()
    facts = {"outcome": "processed", "rows": 1, "endpoint": f"{emu.base_url}/api/import/users"}
    damaged = {
        "20261202T000000Z_a.csv": {**facts, "finished": "2026-12-02T00:00:01.000Z", "file": "\x1b[2J" + "a" * 100_000},
        "20261202T000001Z_b.csv": {**facts, "finished": "2026-1\x00-02T\x1b[2Jgarbage", "started": "\x1b[31m"},
    }
    for name, ours in damaged.items():
        (sending / name).write_text(good_csv(name[-5]), encoding="utf-8")
        result = {"success": True, "summary": "ok \x1b[2J", "dropbox_sync": ours}
        (sending / (name + ".result.json")).write_text(json.dumps(result), encoding="utf-8")

    done = run_cli("--config", str(config_path), "once")
    assert done.returncode == 0, done.stderr
    assert "cannot write" not in done.stderr, done.stderr
    assert sorted(p.name for p in archived(inbox, "processed")) == sorted(damaged)
    assert emu.uploads() == [], "their results are on disk: never sent again"
    page = (inbox / "report.html").read_text(encoding="utf-8")
    assert "20261202T000000Z_a.csv" in page and len(page) < 100_000
    for command in ("status", "history"):
        shown = run_cli("--config", str(config_path), command)
        assert shown.returncode == 0, shown.stderr
        assert "\x1b" not in shown.stdout and "\x00" not in shown.stdout, command
