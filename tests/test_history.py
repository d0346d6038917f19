"""``dropbox-sync history``: past imports from the journal, newest first, as people read them."""

from __future__ import annotations

import datetime as dt
import json
import os

from dropbox_sync.cli import main
from dropbox_sync.state.journal import Attempt, Journal, summary_counts
from tests.support import HEADER, good_csv, run_cli, write_config


def drop(folder, name: str, text: str, age: float) -> None:
    """A file with an mtime ``age`` seconds ago, so ``once`` takes them oldest first."""
    path = folder / name
    path.write_text(text, encoding="utf-8")
    moment = dt.datetime.now().timestamp() - age
    os.utime(path, (moment, moment))


def test_history_lists_imports_newest_first_with_counts_and_where_filed(tmp_path, emu):
    config_path = write_config(tmp_path, emu, inboxes=2)
    inbox, inbox2 = tmp_path / "inbox", tmp_path / "inbox2"
    drop(inbox, "first.csv", good_csv("a1", "a2", "a3"), age=300)
    drop(
        inbox,
        "second.csv",
        HEADER + "a1,A,B,Year 7,Student,a1@school.example\nbad,A,B,Year 7,Student,not-an-email\n",
        age=200,
    )
    drop(inbox, "third.csv", "name\nx\n", age=100)
    drop(inbox2, "other.csv", good_csv("o1"), age=50)
    assert main(["--config", str(config_path), "once"]) == 1

    done = run_cli("--config", str(config_path), "history", "--inbox", "inbox", "--json")
    assert done.returncode == 0, done.stderr
    entries = json.loads(done.stdout)
    assert [e["file"] for e in entries] == ["third.csv", "second.csv", "first.csv"], "newest first"
    third, second, first = entries
    assert (first["outcome"], first["created"], first["updated"], first["failed"]) == ("processed", 3, 0, 0)
    assert (second["outcome"], second["created"], second["updated"], second["failed"]) == ("failed", 0, 1, 1)
    assert third["outcome"] == "failed" and third["created"] is None
    assert third["summary"].startswith("Missing required column(s)")
    for entry in entries:
        assert os.path.isfile(entry["path"]), "where it was filed, as an absolute path"
        assert entry["path"].startswith(str(inbox / entry["folder"]))

    text = run_cli("--config", str(config_path), "history")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert any("inbox2  other.csv  imported" in line for line in lines), "every inbox without --inbox"
    # The two inboxes are worked in parallel: which finishes last is not ours to assert,
    # only that each inbox's newest import comes first among its own.
    headlines = [line for line in lines if " inbox  " in line]
    assert headlines[0].endswith("inbox  third.csv  FAILED: not imported"), "the newest on top"
    assert any("second.csv" in line and "PARTLY FAILED: 1 row(s) not imported" in line for line in lines)
    assert "users: 0 created, 1 updated, 1 failed" in text.stdout
    assert "users: 3 created, 0 updated, 0 failed" in text.stdout
    assert f"filed as {inbox / 'failed'}" in text.stdout
    assert "Missing required column(s): username, library-group, system-group." in text.stdout


def test_history_since_and_limit_and_bad_input(tmp_path, emu):
    config_path = write_config(tmp_path, emu)
    journal = Journal(tmp_path / "state" / "journal.sqlite3")
    for day, name in ((1, "old.csv"), (20, "new.csv")):
        when = f"2026-11-{day:02d}T10:00:00.000Z"
        journal.record(
            Attempt(
                "inbox",
                f"x_{name}",
                name,
                None,
                1,
                when,
                when,
                200,
                "processed",
                "1 user processed. 1 user created. 0 users updated. 0 users failed.",
            )
        )
    journal.record(
        Attempt(
            "inbox",
            "y_new.csv",
            "new.csv",
            None,
            1,
            "2026-11-21T10:00:00.000Z",
            "2026-11-21T10:00:00.000Z",
            503,
            "retry",
            "HTTP 503",
        )
    )
    journal.close()

    entries = json.loads(run_cli("--config", str(config_path), "history", "--since", "2026-11-10", "--json").stdout)
    assert [e["file"] for e in entries] == ["new.csv"], "retries are not imports; since filters"
    assert (
        json.loads(run_cli("--config", str(config_path), "history", "--limit", "1", "--json").stdout)[0]["file"]
        == "new.csv"
    )

    bad = run_cli("--config", str(config_path), "history", "--since", "last tuesday")
    assert bad.returncode == 2 and "expected a date like 2026-11-25" in bad.stderr
    assert "Traceback" not in bad.stderr
    unknown = run_cli("--config", str(config_path), "history", "--inbox", "nope")
    assert unknown.returncode == 2 and 'no inbox named "nope"' in unknown.stderr


def test_history_before_anything_ran_creates_nothing(tmp_path, emu):
    config_path = write_config(tmp_path, emu)
    done = run_cli("--config", str(config_path), "history")
    assert done.returncode == 0 and "no imports recorded yet" in done.stdout
    assert not (tmp_path / "state" / "journal.sqlite3").exists()


def test_summary_counts_reads_the_vendor_wording():
    from dropbox_sync.emulator import wording

    assert summary_counts(wording.summary(100, 50, 49, 1)) == {
        "processed": 100,
        "created": 50,
        "updated": 49,
        "failed": 1,
    }
    assert summary_counts(wording.summary(1, 1, 0, 0))["created"] == 1, "singular 'user'"
    assert summary_counts("Unauthorised. Check credentials.") == dict.fromkeys(
        ("processed", "created", "updated", "failed")
    )
