"""Roster memory, delta uploads, leavers and the change guard, night after night: the real
pipeline (``once``), the real roster file in the state dir, the emulator over TLS.

The nights' clock is injected (``InboxWorker.wall``) so ``full_sync_days`` is tested
without waiting a week."""

from __future__ import annotations

import csv
import datetime as dt
import functools
import io
import json
import sqlite3
import threading
from contextlib import closing
from pathlib import Path

import pytest

from dropbox_sync import config, paths
from dropbox_sync.emulator import Emulator
from dropbox_sync.pipeline import archive, archive_names
from dropbox_sync.pipeline.runner import Pipeline
from dropbox_sync.pipeline.worker import InboxWorker
from dropbox_sync.state.journal import Journal
from tests.support import (
    HEADER,
    archived,
    dropbox_sync_process,
    result_of,
    write_config,
)
from tests.test_local_faults import fill, small_disk  # noqa: F401 - a fixture

START = dt.datetime(2026, 11, 2, 1, 0, tzinfo=dt.UTC)


def student(n: int, *, year: int = 7, email: str | None = None) -> str:
    return f"s{n:04d},First{n},Last{n},Year {year},Student,{email or f's{n:04d}@school.example'}\n"


def export(numbers, changed: dict[int, dict] | None = None) -> str:
    """A roster export: ``changed`` maps a number to the keyword arguments of its row."""
    return HEADER + "".join(student(n, **(changed or {}).get(n, {})) for n in numbers)


class School:
    """One inbox on one emulator; each ``night`` drops an export and runs ``once`` at a given day."""

    def __init__(self, tmp_path: Path, emu: Emulator, **overrides) -> None:
        self.tmp_path, self.emu = tmp_path, emu
        self.config_path = write_config(tmp_path, emu, settle_seconds=0, **overrides)
        self.inbox = tmp_path / "inbox"
        self.day = 0

    @property
    def roster_file(self) -> Path:
        return self.tmp_path / "state" / paths.ROSTER_FILE

    def night(self, text: str, *, day: int | None = None, name: str = "students.csv") -> tuple[Path, dict]:
        """Drop ``text`` and run ``once`` on ``day`` (default: the next); the filed file and its result."""
        self.day = self.day + 1 if day is None else day
        before = set(self.filed())
        (self.inbox / name).write_text(text, encoding="utf-8")
        self.run()
        (new,) = set(self.filed()) - before
        return new, result_of(new)

    def run(self) -> None:
        cfg = config.load(self.config_path)
        now = START + dt.timedelta(days=self.day)
        journal = Journal(cfg.state_dir / "journal.sqlite3")
        try:
            pipeline = Pipeline(
                cfg,
                journal=journal,
                state_dir=cfg.state_dir,
                worker_factory=functools.partial(InboxWorker, wall=lambda: now),
            )
            pipeline.once(threading.Event())
        finally:
            journal.close()

    def filed(self) -> list[Path]:
        return [p for which in ("processed", "failed", "held") for p in archived(self.inbox, which)]

    def uploads(self) -> list[list[dict[str, str]]]:
        """The rows of each upload the emulator received, in order."""
        return [
            rows_of(u.stored_file.read_text(encoding="utf-8-sig"))
            for u in self.emu.uploads()
            if u.stored_file is not None
        ]

    def users(self) -> dict[str, object]:
        return {u.username: u for u in self.emu.users()}


def rows_of(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def sent_csv(path: Path) -> list[dict[str, str]]:
    return rows_of(archive_names.sent_path(path).read_text(encoding="utf-8"))


def test_the_first_export_goes_whole_and_the_same_one_again_sends_nothing(tmp_path, emu):
    school = School(tmp_path, emu, delta=True)
    filed, result = school.night(export(range(1, 21)))
    assert filed.parent.name == "processed"
    changes = result["dropbox_sync"]["changes"]
    assert (changes["added"], changes["changed"], changes["unchanged"], changes["sent_rows"]) == (20, 0, 0, 20)
    assert changes["why_whole"] == "no roster memory yet"
    assert filed.read_bytes() == emu.uploads()[0].stored_file.read_bytes(), "a whole send is the file as it is"
    assert school.roster_file.is_file()

    filed, result = school.night(export(range(1, 21)))
    assert filed.parent.name == "processed"
    assert result["success"] is True
    assert result["summary"] == "No changes since the last import (20 rows unchanged)."
    ours = result["dropbox_sync"]
    assert (ours["stage"], ours["http_status"], ours["changes"]["sent_rows"]) == ("no changes", None, 0)
    assert ours["changes"]["unchanged"] == 20
    assert len(emu.uploads()) == 1, "nothing to send: not uploaded"


def test_three_changed_and_one_added_send_four_rows_traced_to_the_export(tmp_path, emu):
    school = School(tmp_path, emu, delta=True)
    school.night(export(range(1, 31)))
    changed = {4: {"year": 8}, 9: {"year": 8}, 17: {"email": "new17@school.example"}}
    filed, result = school.night(export(range(1, 32), changed))
    changes = result["dropbox_sync"]["changes"]
    assert (changes["added"], changes["changed"], changes["unchanged"], changes["sent_rows"]) == (1, 3, 27, 4)
    assert changes["sent"] == "changes only"
    (sent,) = school.uploads()[1:]
    assert [r["username"] for r in sent] == ["s0004", "s0009", "s0017", "s0031"]
    assert [r["username"] for r in sent_csv(filed)] == ["s0004", "s0009", "s0017", "s0031"], (
        ".sent.csv holds exactly the rows sent"
    )
    by_user = {item["username"]: item for item in changes["changed_users"]}
    assert by_user["s0004"]["columns"] == {"library-group": {"old": "Year 7", "new": "Year 8"}}
    assert by_user["s0017"]["columns"] == {
        "emailAddress": {"old": "s0017@school.example", "new": "new17@school.example"}
    }
    assert (by_user["s0009"]["row"], by_user["s0009"]["line"]) == (9, 10)
    assert changes["added_users"] == [{"username": "s0031", "row": 31, "line": 32}]
    assert school.users()["s0004"].library_group == "Year 8"


def test_a_row_failed_at_the_server_is_sent_again_the_next_night_and_traced_to_its_export_row(tmp_path, emu):
    school = School(tmp_path, emu, delta=True)
    school.night(export(range(1, 11)))
    bad = {3: {"email": "not-an-email"}, 6: {"year": 9}}
    filed, result = school.night(export(range(1, 11), bad))
    assert filed.parent.name == "failed"
    assert result["details"] == {"1": result["details"]["1"], "2": "User Updated"}
    assert "emailAddress" in result["details"]["1"]
    # Server rows 1 and 2 are the export's rows 3 and 6 (lines 4 and 7): people fix the export.
    assert result["dropbox_sync"]["export_rows"] == {
        "1": {"row": 3, "line": 4, "username": "s0003"},
        "2": {"row": 6, "line": 7, "username": "s0006"},
    }
    filed, result = school.night(export(range(1, 11), bad))
    assert [r["username"] for r in school.uploads()[-1]] == ["s0003"], "only the failed row goes again"
    assert result["dropbox_sync"]["changes"]["changed"] == 1


def test_a_student_who_left_is_reported(tmp_path, emu):
    school = School(tmp_path, emu, delta=True, leavers="report")
    school.night(export(range(1, 11)))
    _filed, result = school.night(export([n for n in range(1, 11) if n != 5]))
    changes = result["dropbox_sync"]["changes"]
    assert (changes["leavers"], changes["leaver_users"], changes["deactivated"]) == (1, ["s0005"], 0)
    assert "s0005" in result["summary"], "nothing else to send: the summary names the leaver"
    assert len(emu.uploads()) == 1
    assert school.users()["s0005"].enabled, "report only: still active in Infiniti"
    _, result = school.night(export([n for n in range(1, 11) if n != 5]))
    assert result["dropbox_sync"]["changes"]["leavers"] == 0, "reported once, then forgotten"


def test_a_student_who_left_is_deactivated_and_then_forgotten(tmp_path, emu):
    school = School(tmp_path, emu, delta=True, leavers="deactivate")
    school.night(export(range(1, 11)))
    filed, result = school.night(export([n for n in range(1, 11) if n != 5], {2: {"year": 8}}))
    assert filed.parent.name == "processed"
    changes = result["dropbox_sync"]["changes"]
    assert (changes["changed"], changes["leavers"], changes["deactivated"], changes["sent_rows"]) == (1, 1, 1, 2)
    sent = school.uploads()[-1]
    assert [(r["username"], r["enabled"]) for r in sent] == [("s0002", ""), ("s0005", "FALSE")]
    assert sent[1]["library-group"] == "Year 7" and sent[1]["emailAddress"] == "s0005@school.example", (
        "a leaver's row carries its remembered values"
    )
    users = school.users()
    assert not users["s0005"].enabled and users["s0002"].enabled
    _, result = school.night(export([n for n in range(1, 11) if n != 5], {2: {"year": 8}}))
    assert result["dropbox_sync"]["changes"]["leavers"] == 0, "dropped from the roster once confirmed"
    assert len(emu.uploads()) == 2


def test_a_roster_deleted_from_the_state_folder_means_a_whole_send(tmp_path, emu):
    school = School(tmp_path, emu, delta=True)
    school.night(export(range(1, 11)))
    for leftover in school.roster_file.parent.glob(paths.ROSTER_FILE + "*"):
        leftover.unlink()
    _, result = school.night(export(range(1, 11)))
    assert len(school.uploads()[-1]) == 10
    assert result["dropbox_sync"]["changes"]["why_whole"] == "no roster memory yet"


def test_a_damaged_roster_is_set_aside_and_the_file_sent_whole(tmp_path, emu):
    school = School(tmp_path, emu, delta=True)
    school.night(export(range(1, 11)))
    for leftover in school.roster_file.parent.glob(paths.ROSTER_FILE + "-*"):
        leftover.unlink()
    school.roster_file.write_bytes(b"this is not a database, it was overwritten" * 100)
    filed, result = school.night(export(range(1, 11)))
    assert filed.parent.name == "processed"
    assert len(school.uploads()[-1]) == 10
    changes = result["dropbox_sync"]["changes"]
    assert "damaged" in changes["why_whole"] and "damaged" in changes["note"]
    assert list(school.roster_file.parent.glob(paths.ROSTER_FILE + ".damaged-*")), "kept for a person to see"
    _, result = school.night(export(range(1, 11)))
    assert result["dropbox_sync"]["changes"]["sent_rows"] == 0, "a fresh memory from the whole send"


def test_full_sync_days_forces_a_whole_send(tmp_path, emu):
    school = School(tmp_path, emu, delta=True, full_sync_days=7)
    school.night(export(range(1, 11)), day=0)
    _, result = school.night(export(range(1, 11)), day=6)
    assert result["dropbox_sync"]["changes"]["sent_rows"] == 0
    _, result = school.night(export(range(1, 11)), day=7)
    changes = result["dropbox_sync"]["changes"]
    assert (changes["sent_rows"], changes["unchanged"], changes["sent"]) == (10, 10, "whole file")
    assert "full_sync_days" in changes["why_whole"]
    assert len(school.uploads()[-1]) == 10
    _, result = school.night(export(range(1, 11)), day=8)
    assert result["dropbox_sync"]["changes"]["sent_rows"] == 0, "the week starts again from the full sync"


def test_a_file_that_would_deactivate_half_the_school_is_held_until_approved(tmp_path, emu):
    school = School(tmp_path, emu, delta=True, leavers="deactivate", change_guard=0.2)
    school.night(export(range(1, 21)))
    filed, result = school.night(export(range(1, 11)))
    assert filed.parent.name == "held"
    assert result["dropbox_sync"]["stage"] == "change guard"
    assert "deactivate 10 of the 20" in result["summary"] and "dropbox-sync approve" in result["summary"]
    assert result["dropbox_sync"]["changes"]["leavers"] == 10
    assert len(emu.uploads()) == 1 and all(u.enabled for u in school.users().values())
    archive.approve(school.inbox, filed.name)
    school.run()
    assert sum(not u.enabled for u in school.users().values()) == 10


def test_without_delta_the_file_goes_as_it_is_and_the_result_still_says_what_changed(tmp_path, emu):
    school = School(tmp_path, emu)
    school.night(export(range(1, 6)))
    filed, result = school.night(export(range(1, 7), {1: {"year": 9}}))
    assert filed.read_bytes() == emu.uploads()[-1].stored_file.read_bytes()
    changes = result["dropbox_sync"]["changes"]
    assert (changes["added"], changes["changed"], changes["unchanged"], changes["sent_rows"]) == (1, 1, 4, 6)
    assert changes["why_whole"] == "delta is off"
    assert not archive_names.sent_path(filed).exists()
    assert json.dumps(result)  # plain JSON


def test_diff_and_preview_say_what_would_change_and_send_nothing(tmp_path, emu):
    school = School(tmp_path, emu, delta=True, leavers="deactivate", change_guard=0.5)
    school.night(export(range(1, 11)), day=(dt.datetime.now(dt.UTC) - START).days)  # diff reads the real clock
    memory = school.roster_file.read_bytes()
    candidate = tmp_path / "tonight.csv"
    candidate.write_text(export([n for n in range(1, 12) if n != 5], {2: {"year": 8}}), encoding="utf-8")
    process = dropbox_sync_process("--config", str(school.config_path), "diff", str(candidate))
    out = process.communicate(timeout=60)[0]
    assert process.returncode == 0, out
    assert "changes: 1 added, 1 changed, 8 unchanged, 1 leaver (the roster remembers 10 users" in out
    assert "would send: 3 row(s), only the changes" in out
    assert "added      s0011 (line 11)" in out
    assert "changed    s0002 (line 3): library-group: 'Year 7' -> 'Year 8'" in out
    assert "leaver     s0005" in out and "deactivated with enabled=FALSE" in out
    process = dropbox_sync_process("--config", str(school.config_path), "preview", str(candidate))
    out = process.communicate(timeout=60)[0]
    assert process.returncode == 0, out
    assert "changes: 1 added, 1 changed, 8 unchanged, 1 leaver" in out
    assert len(emu.uploads()) == 1 and school.roster_file.read_bytes() == memory, "nothing sent, nothing learnt"


def test_the_roster_keys_of_the_example_config_parse_and_a_route_overrides_the_inbox(tmp_path, emu):
    from dropbox_sync.cli import EXAMPLE_CONFIG

    lines = EXAMPLE_CONFIG.read_text(encoding="utf-8").splitlines()
    keys = [
        line[2:]
        for line in lines
        if line.startswith(("# delta", "# full_sync_days", "# leavers =", "# leaver_values", "# change_guard"))
    ]
    assert len(keys) == 5
    path = write_config(tmp_path, emu)
    keys = [key.replace("delta = false", "delta = true").replace('"keep"', '"report"') for key in keys]
    text = path.read_text(encoding="utf-8").replace("[[inbox]]\n", "[[inbox]]\n" + "\n".join(keys) + "\n")
    text = "\n".join(line for line in text.splitlines() if not line.startswith("url ="))
    text += (
        '\n[[inbox.route]]\nmatch = "*groups*.csv"\n'
        f'url = "{emu.base_url}/api/import/userGroups"\ndelta = false\n'
        f'[[inbox.route]]\nmatch = "*"\nurl = "{emu.base_url}/api/import/users"\n'
    )
    path.write_text(text, encoding="utf-8")
    groups, users = config.load(path).inboxes[0].routes
    assert (users.policy.delta, users.policy.leavers, users.policy.full_sync_days) == (True, "report", 7.0)
    assert users.policy.leaver_values == (("enabled", "FALSE"),)
    assert (groups.policy.delta, groups.policy.leavers) == (False, "report")


def test_a_wrong_roster_key_is_one_line_naming_it(tmp_path, emu):
    for key, value, words in (
        ("leavers", '"delete"', "leavers must be one of keep, report, deactivate"),
        ("change_guard", "1.5", "change_guard must be a fraction"),
        ("delta", '"yes"', "delta must be true or false"),
        ("leaver_values", '{ username = "x" }', "cannot set username"),
    ):
        path = write_config(tmp_path, emu)
        path.write_text(path.read_text(encoding="utf-8") + f"{key} = {value}\n", encoding="utf-8")
        process = dropbox_sync_process("--config", str(path), "check")
        err = process.communicate(timeout=60)[1]
        assert process.returncode == 2, err
        assert 'config.toml: inbox "inbox": ' in err and words in err, err


def test_status_names_the_leavers_the_last_import_reported(tmp_path, emu):
    school = School(tmp_path, emu, delta=True, leavers="report")
    school.night(export(range(1, 11)))
    school.night(export([n for n in range(1, 12) if n not in (5, 7)]))
    process = dropbox_sync_process("--config", str(school.config_path), "status")
    out = process.communicate(timeout=60)[0]
    assert process.returncode == 0, out
    assert "last import changed: 1 added, 0 changed, 8 unchanged, 2 leavers; 1 row(s) sent" in out
    assert "leavers (not in the export): s0005, s0007" in out
    process = dropbox_sync_process("--config", str(school.config_path), "status", "--json")
    (inbox,) = json.loads(process.communicate(timeout=60)[0])["inboxes"]
    assert inbox["last_changes"]["leaver_users"] == ["s0005", "s0007"]


def test_the_email_digest_names_the_users_who_left(tmp_path, emu):
    from dropbox_sync.cli import main
    from tests.test_notify import notify_table, plain, smtp_server

    with smtp_server() as (server, box):
        path = write_config(tmp_path, emu, settle_seconds=0, leavers="report")
        path.write_text(path.read_text(encoding="utf-8") + notify_table(server.port), encoding="utf-8")
        inbox = tmp_path / "inbox"
        (inbox / "students.csv").write_text(export(range(1, 11)), encoding="utf-8")
        assert main(["--config", str(path), "once"]) == 0
        assert box.messages == [], "nothing left yet: no email"
        (inbox / "students.csv").write_text(export([n for n in range(1, 11) if n not in (3, 8)]), encoding="utf-8")
        assert main(["--config", str(path), "once"]) == 0
    (message,) = box.messages
    assert message["Subject"] == '[dropbox-sync] users who left: inbox "inbox"'
    assert (
        'inbox "inbox": students.csv: 2 user(s) no longer in the export, still active in Infiniti '
        '(leavers = "report"): s0003, s0008'
    ) in plain(message).replace("\n", " ")


def test_a_file_the_comparison_cannot_read_is_sent_as_it_is(tmp_path, emu):
    school = School(tmp_path, emu, delta=True)
    school.night(export(range(1, 4)))
    text = export(range(1, 4)) + 's0009,"unclosed quote,Last,Year 7,Student,x@school.example\n' + "x" * 200_000
    filed, result = school.night(text)
    assert emu.uploads()[-1].stored_file.read_bytes() == filed.read_bytes(), "the file itself went, whole"
    assert "changes" not in result["dropbox_sync"]
    assert any("not compared with the roster memory" in w for w in result["dropbox_sync"]["warnings"])


def test_with_a_mapping_delta_traces_each_row_sent_to_the_export_line(tmp_path, emu):
    school = School(tmp_path, emu, delta=True)
    mapping = (
        '[inbox.columns]\nusername = "{code}"\nlibrary-group = "Year {year}"\nsystem-group = "Student"\n'
        'emailAddress = "{mail}"\n'
    )
    school.config_path.write_text(school.config_path.read_text(encoding="utf-8") + mapping, encoding="utf-8")

    def sis(bad: bool) -> str:
        rows = [f"{n:05d},7,s{n}@school.example" for n in range(1, 9)]
        rows[3] = ",7,nobody@school.example"  # export row 4: empty code, never sent
        rows.insert(5, "")  # export row 6: blank
        if bad:
            rows[7] = "00007,8,not-an-email"  # export row 8 (line 9): changed and refused
            rows[8] = "00008,9,s8@school.example"  # export row 9 (line 10): changed
        return "code,year,mail\n" + "\n".join(rows) + "\n"

    school.night(sis(False))
    filed, result = school.night(sis(True))
    assert [r["username"] for r in sent_csv(filed)] == ["00007", "00008"]
    assert result["dropbox_sync"]["export_rows"] == {
        "1": {"row": 8, "line": 9, "username": "00007"},
        "2": {"row": 9, "line": 10, "username": "00008"},
    }
    listed = result["dropbox_sync"]["changes"]["changed_users"]
    changed = {item["username"]: (item["row"], item["line"]) for item in listed}
    assert changed == {"00007": (8, 9), "00008": (9, 10)}


def remembered_row(state_dir: Path, username: str) -> dict[str, str]:
    import sqlite3

    with closing(sqlite3.connect(state_dir / paths.ROSTER_FILE)) as db:
        (row,) = db.execute("SELECT row FROM users WHERE username = ?", (username,)).fetchone()
    return json.loads(row)


@pytest.mark.usefixtures("small_disk")
def test_the_memory_learns_only_once_the_result_is_on_disk(tmp_path, emu):
    # A full disk (a real one: tmpfs) keeps the reply in memory and holds the inbox; the roster
    # must not learn from a reply whose result is not saved yet, or a crash then would file
    # the export again as "no changes" and lose its result.
    from dropbox_sync.roster.memory import Roster
    from tests.test_settle import FakeClock

    inbox = tmp_path / "inbox"  # its own 256 KiB tmpfs
    cfg = config.load(write_config(tmp_path, emu, settle_seconds=0, retry_first_seconds=1, retry_max_seconds=8))
    clock, stop = FakeClock(), threading.Event()
    worker = InboxWorker(cfg.inboxes[0], clock=clock, roster=Roster(tmp_path / "state" / paths.ROSTER_FILE))
    archive.ensure_folders(inbox)
    try:
        (inbox / "students.csv").write_text(export(range(1, 4)), encoding="utf-8")
        worker.cycle(stop)
        assert remembered_row(tmp_path / "state", "s0002")["library-group"] == "Year 7"
        (inbox / "students.csv").write_text(export(range(1, 4), {2: {"year": 9}}), encoding="utf-8")
        filler = fill(inbox)
        for _ in range(2):
            worker.cycle(stop)
            clock.advance(10)
        assert len(emu.uploads()) == 2 and worker.hold_reason is not None
        assert remembered_row(tmp_path / "state", "s0002")["library-group"] == "Year 7", "not yet"
        filler.unlink()
        worker.cycle(stop)
        assert worker.hold_reason is None
        assert remembered_row(tmp_path / "state", "s0002")["library-group"] == "Year 9"
    finally:
        worker.close()


def test_an_export_without_rows_deactivates_nobody(tmp_path, emu):
    school = School(tmp_path, emu, delta=True, leavers="deactivate")
    school.night(export(range(1, 6)))
    filed, result = school.night(HEADER)
    changes = result["dropbox_sync"]["changes"]
    assert (filed.parent.name, changes["leavers"], changes["deactivated"]) == ("processed", 0, 0)
    assert changes["note"] == "the file has no rows: nobody is taken for a leaver"
    assert all(u.enabled for u in school.users().values())
    _, result = school.night(export(range(1, 6)))
    assert result["dropbox_sync"]["changes"]["unchanged"] == 5, "and the memory is kept"


def test_deactivate_guards_against_a_partial_export_unless_told_not_to(tmp_path, emu):
    school = School(tmp_path, emu, leavers="deactivate")  # change_guard not set: 0.2 with deactivate
    school.night(export(range(1, 11)))
    filed, result = school.night(export([1, 2, 3]), name="new_students.csv")
    assert filed.parent.name == "held" and "change_guard = 0.2" in result["summary"]
    other = tmp_path / "other"
    other.mkdir()
    for keys, guard in (({"leavers": "deactivate", "change_guard": 0}, 0), ({"leavers": "report"}, 0)):
        assert config.load(write_config(other, emu, **keys)).inboxes[0].routes[0].policy.change_guard == guard


def test_files_in_one_pass_each_compare_with_what_the_one_before_taught(tmp_path, emu):
    """The memory learns from a file while the server imports the next one, and compares the
    next one then too (transaction._post): the comparisons must still see every file before
    them, in order, in a single pass; and after the pass the memory holds the last file."""
    school = School(tmp_path, emu, leavers="report")
    school.day = 1
    exports = [range(1, 6), range(2, 8), range(2, 8), range(3, 8)]
    for night, numbers in enumerate(exports):
        changed = {4: {"year": 8}} if night == 2 else None
        (school.inbox / f"{night}_students.csv").write_text(export(numbers, changed), encoding="utf-8")
    school.run()
    results = [result_of(p) for p in sorted(archived(school.inbox, "processed"))]
    seen = [
        (c["added"], c["changed"], c["unchanged"], c["leavers"])
        for c in (r["dropbox_sync"]["changes"] for r in results)
    ]
    assert seen == [(5, 0, 0, 0), (2, 0, 4, 1), (0, 1, 5, 0), (0, 1, 4, 1)]  # s0004 back in year 7
    assert [r["dropbox_sync"]["changes"].get("leaver_users") for r in results] == [[], ["s0001"], [], ["s0002"]]
    _, result = school.night(export(range(3, 8)))  # a new pass: the pass's last lesson was kept
    assert result["dropbox_sync"]["changes"]["unchanged"] == 5


@pytest.mark.parametrize(
    ("policy", "learnt_at_once"),
    [({"leavers": "deactivate"}, True), ({"delta": True}, True), ({"change_guard": 0.5}, True), ({}, False)],
    ids=["deactivate", "delta", "change_guard", "informs-only"],
)
def test_a_lesson_waits_for_the_next_upload_only_where_the_memory_only_informs_results(
    tmp_path, emu, policy, learnt_at_once
):
    """A lesson learnt late is lost to a crash before it; where the memory decides what is
    sent (delta, deactivating leavers, change_guard) that could leave a leaver never
    deactivated, so there it is learnt at once, before the file's report (lessons.Lesson.of).
    Elsewhere it waits for the next upload, and the pass's end learns the last one."""
    school = School(tmp_path, emu, **policy)
    (school.inbox / "students.csv").write_text(export(range(1, 6)), encoding="utf-8")
    remembered_at_report = []

    def count_remembered(_report) -> None:
        if not school.roster_file.exists():
            remembered_at_report.append(0)
            return
        with closing(sqlite3.connect(f"{school.roster_file.as_uri()}?mode=ro", uri=True)) as db:
            remembered_at_report.append(db.execute("SELECT count(*) FROM users").fetchone()[0])

    cfg = config.load(school.config_path)
    journal = Journal(cfg.state_dir / "journal.sqlite3")
    try:
        Pipeline(cfg, journal=journal, state_dir=cfg.state_dir, listeners=[count_remembered]).once(threading.Event())
    finally:
        journal.close()
    assert remembered_at_report == [5 if learnt_at_once else 0]
    _, result = school.night(export(range(1, 6)))  # the next pass: the last lesson was kept
    assert result["dropbox_sync"]["changes"]["unchanged"] == 5


# Computed by the first implementation of Codec.digest (before 2026-12-02).
DIGESTS = (-5749708786399439094, 7628161951788050464, -1970711489451281740)


def test_a_row_digest_is_stable_across_versions() -> None:
    """The roster memory stores each row's digest: computing it differently after an upgrade
    would make every remembered user look changed (and, with delta, sent again). These values
    were computed by the first implementation; a faster one must give the same."""
    from dropbox_sync.roster.changes import Codec

    codec = Codec(["username", "firstName", " Notes ", "username", "e"])
    assert codec.digest(["0042", "Zoë", "", "dup"]) == DIGESTS[0]
    assert codec.digest(["0042", "Zoë", "x\x1ey", "dup", " "]) == DIGESTS[1]
    assert codec.digest([]) == DIGESTS[2]


def test_a_remembered_row_is_stored_as_json_dumps_writes_it() -> None:
    """The roster stores each row's values as JSON text (what ``diff`` shows as "old", what a
    leaver's deactivation sends). ``Codec.values_json`` builds that text itself, for speed: it
    must be byte for byte what ``json.dumps`` wrote before, for any header and any cells."""
    import json

    from dropbox_sync.roster.changes import Codec

    codec = Codec(["username", " firstName ", "Notes", "USERNAME", 'q"uote', "système", ""])
    rows = [
        ["0042", "Zoë", 'say "hi"\\n', "dup", "\x00\x1f\u2028", "é", "blank header"],
        ["short"],  # cells missing at the end: empty values
        ["x", "", "", "", "", "", "", "beyond the header"],
        [],
    ]
    for row in rows:
        assert codec.values_json(row) == json.dumps(codec.values(row), ensure_ascii=False)
    assert Codec([]).values_json(["a"]) == "{}"


def test_a_file_compared_while_the_server_imports_it_is_remembered_as_compared(tmp_path) -> None:
    """A small file is compared while the server imports it and remembered from the rows that
    comparison read (``plan(keep_rows=True)``), never from the file read again later: someone
    who edits the archived copy in processed/ (a share open to office staff) before the lesson
    is learnt cannot make the memory hold rows that were never sent."""
    from dropbox_sync.config.policy import DEFAULT
    from dropbox_sync.roster import changes
    from dropbox_sync.roster.memory import Roster
    from tests.support import good_csv

    sent = tmp_path / "20261202T000000Z_a.csv"
    sent.write_text(good_csv("alice", "bob"), encoding="utf-8")
    roster = Roster(tmp_path / "roster.sqlite3")
    now = dt.datetime(2026, 12, 2, tzinfo=dt.UTC)

    def target():
        raise AssertionError("a plain comparison makes no file")

    found = changes.plan(sent, "inbox", "https://x/api", DEFAULT, roster, now, open_target=target, keep_rows=True)
    assert found is not None and found.added == 2
    sent.write_text(good_csv("mallory"), encoding="utf-8")  # edited after it was sent
    body = {"success": True, "summary": "2 users processed"}
    assert changes.remember(roster, "inbox", "https://x/api", found, sent, body, now) == 2
    assert sorted(roster.memory("inbox", "https://x/api").digests) == ["alice", "bob"]
