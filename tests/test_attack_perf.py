"""Red team on issue 13's per-file speed-ups: the work folders kept open through a pass
(workdirs.kept_open), results encoded before they are scrubbed (redact.to_json), the roster
learning and comparing while the server imports (lessons.py), and the temporary a roster
comparison makes only when it rewrites (prepare.py, roster/changes.py).

The service runs as root in a real subprocess (``once``); the attacker is the real
unprivileged user ``nobody`` (``setpriv``). A swap "during a pass" is made by the server
itself: ``HookedServer`` runs the attack after reading a request in full and before it
answers, so it falls between two files of one ``once`` deterministically, without timing.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests import test_shared_inbox as nobody_kit
from tests.badservers import Scripted, ScriptedServer, json_bytes
from tests.helpers import wait_until
from tests.support import archived, good_csv, result_of, write_config
from tests.test_shared_inbox import once, other_school, shell_as_nobody, snapshot

shared = nobody_kit.shared  # the fixture: a folder only root can reach, for the inbox

REPO = Path(__file__).resolve().parent.parent
OK = Scripted(body=json_bytes('{"success": true, "summary": "1 user created"}'))  # no details: every row

needs_nobody = pytest.mark.skipif(
    os.name != "posix" or os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root (the service) and setpriv (to be nobody)",
)


class HookedServer(ScriptedServer):
    """Answers every request with ``OK`` (or ``replies`` in turn); ``attack(n)`` runs once
    request n (1-based) is read in full, before its answer: inside the client's wait, between
    two files of a pass."""

    def __init__(self, attack: Callable[[int], None], *replies: Scripted) -> None:
        super().__init__(*(replies or (OK,)))  # ``replies``: in turn, as ScriptedServer's (default: OK)
        self.attack = attack

    def next_reply(self) -> Scripted:
        with self.lock:
            number = self.stats.requests
        self.attack(number)
        return super().next_reply()


def school(shared: Path, server: ScriptedServer, files: int) -> tuple[Path, Path]:
    """A world-writable inbox (a share) with its work folders made by root, and ``files`` CSVs."""
    config_path = write_config(shared, server, settle_seconds=0)
    inbox = shared / "inbox"
    inbox.chmod(0o777)
    assert once(config_path).returncode == 0  # sending/, processed/, failed/ made as root
    for number in range(files):
        (inbox / f"f{number}.csv").write_text(good_csv(f"u{number}"), encoding="utf-8")
    return config_path, inbox


def every_csv(folder: Path) -> list[str]:
    """Every export anywhere under ``folder`` by its dropped name (none may be lost)."""
    return sorted(p.name.split("_", 1)[-1] for p in folder.rglob("*.csv") if not p.name.startswith("."))


def temporaries_in(folder: Path) -> list[Path]:
    """Our dot-name temporaries in ``folder`` (the result's is made while the server imports)."""
    return [p for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")]


@needs_nobody
@pytest.mark.parametrize("which", ["sending", "processed", "failed"])
def test_a_work_folder_swapped_for_a_link_mid_pass_is_never_written_through(tmp_path, shared, which):
    """nobody moves a work folder away and links another school's archive in its place while
    the server imports the first of five files: the rest of the pass goes on in the folder
    that was checked (wherever it now is), nothing reaches the victim, no file is lost, and
    the next pass holds the inbox with the link's message."""
    victim = other_school(shared) / "processed"
    before = snapshot(victim)

    def attack(number: int) -> None:
        if number == 1:  # after the first file's result temporary is made in sending/ (transaction._post)
            wait_until(lambda: temporaries_in(shared / "inbox" / "sending"))
            shell_as_nobody(
                f"mv {shared}/inbox/{which} {shared}/inbox/moved-{which} && ln -s {victim} {shared}/inbox/{which}"
            )

    with HookedServer(attack) as server:
        config_path, inbox = school(shared, server, files=5)
        first = once(config_path)
        second = once(config_path)
    assert "Traceback" not in first.stderr + second.stderr, first.stderr + second.stderr
    assert snapshot(victim) == before
    assert every_csv(inbox) == [f"f{n}.csv" for n in range(5)]
    assert second.returncode == 3 and f"{inbox / which} is a link" in second.stderr, second.stderr
    assert not list(inbox.rglob("*.tmp"))


def remembered(state: Path) -> list[str]:
    """Every username the roster memory holds."""
    import sqlite3

    db = sqlite3.connect(state / "roster.sqlite3")
    try:
        return sorted(row[0] for row in db.execute("SELECT username FROM users"))
    finally:
        db.close()


@needs_nobody
def test_a_planted_archive_mid_pass_never_teaches_the_roster_memory(tmp_path, shared):
    """The last file's lesson is learnt after its upload, from the file where it was filed.
    nobody, while the server imports it, moves processed/ away, makes a folder of their own
    and puts a CSV of their choosing at the name the export is about to be filed under (they
    can read it in sending/): the memory must learn what was sent, never the planted rows."""

    def attack(number: int) -> None:
        if number == 1:
            inbox = shared / "inbox"
            (claimed,) = [p.name for p in (inbox / "sending").iterdir() if p.name.endswith("_f0.csv")]
            shell_as_nobody(
                f"mv {inbox}/processed {inbox}/moved && mkdir {inbox}/processed && "
                f"printf 'username,library-group,system-group\\nplanted,G,S\\n' > {inbox}/processed/{claimed}"
            )

    with HookedServer(attack) as server:
        config_path, inbox = school(shared, server, files=1)
        done = once(config_path)
    assert "Traceback" not in done.stderr, done.stderr
    assert remembered(shared / "state") == ["u0"], done.stderr
    assert every_csv(inbox / "moved") == ["f0.csv"]


@pytest.mark.parametrize(
    "data",
    [
        {1: "row one", None: "none", False: "no", 2.5: "half"},
        {"details": {1: "Error: bad", 2: {"deep": [1]}}, "rows": {False: 0}},
        {"details": [{1: "a"}, [], {}], "empty": {}, "none": [], "text": "\u2028\ud800\x00\x1f"},
    ],
    ids=["top-level keys", "second-level keys", "deeper and odd text"],
)
def test_json_files_read_back_as_the_old_encoder_wrote_them(data):
    """redact.to_json writes the top two levels itself: keys that are not text (a row number,
    None) must become JSON strings as json.dumps makes them, or the file does not parse."""
    from dropbox_sync import redact

    text = redact.to_json(data)
    assert json.loads(text) == json.loads(json.dumps(data, indent=2, ensure_ascii=False))


def test_a_value_on_one_line_is_the_text_json_dumps_writes():
    """Small objects and lists (a result's users, one per line) are encoded by a C encoder
    made once (redact._one_line), not by ``json.dumps`` per value: the text must be the
    same, floats, odd keys and odd text included, and a value JSON cannot hold must still
    be refused."""
    import enum

    from dropbox_sync import redact

    class Level(enum.IntEnum):
        HIGH = 3

    values = [
        {"username": "ann", "row": 1, "line": 2},
        {1: "a", None: "b", False: "c", 2.5: "d"},
        [1.5, -0.0, 1e100, float("nan"), float("inf"), 10**30, Level.HIGH],
        {"text": '\u2028\ud800\x00\x1f "é\\', "deep": [[[{"x": []}]]], "tuple": (1, 2)},
        [],
        {},
    ]
    for value in values:
        assert redact._one_line(value) == json.dumps(value, ensure_ascii=False)
    with pytest.raises(TypeError):
        redact._one_line({"path": object()})


# A quote, a backslash, HTML's specials, a line separator JSON leaves raw, non-ASCII.
STRANGE_PASSWORD = 'Tr1"ck\\y<&>\u2028Pa55 w0rd/é7f3a'


def test_a_reply_quoting_the_password_everywhere_leaves_no_form_in_any_byte(tmp_path):
    """The server's reply quotes the password in every form we register, in the summary, in
    keys at every level and deep in lists: no written byte holds any form (results are now
    encoded first and scrubbed only when a form shows), and the result still parses."""
    import base64
    import html
    import urllib.parse

    from tests.test_secrets import all_forms, assert_no_form, everything_written

    pw = STRANGE_PASSWORD
    token = base64.b64encode(f"autoimport:{pw}".encode()).decode()
    forms = [*all_forms("autoimport", pw), html.escape(pw)]
    reply = {
        "success": False,
        "summary": f"Login autoimport:{pw} refused",
        f"echo {pw}": {f"k {html.escape(pw)}": [urllib.parse.quote_plus(pw)]},
        "details": {
            "1": f"Error: Authorization: Basic {token}",
            f"2 {json.dumps(pw)[1:-1]}": [f"at {urllib.parse.quote(pw, safe='')}", {"x": [pw]}],
            "3": json.dumps(pw, ensure_ascii=False)[1:-1],
        },
    }
    server = ScriptedServer(Scripted(body=json.dumps(reply).encode()))
    with server:
        config_path = write_config(tmp_path, server, settle_seconds=0, password=pw)
        (tmp_path / "inbox" / "a.csv").write_text(good_csv("a"), encoding="utf-8")
        done = once(config_path)
    assert done.returncode == 1, done.stderr
    assert_no_form(done.stdout + done.stderr, forms, "the output of once")
    assert_no_form(everything_written(tmp_path), forms, "a file (result, journal, status.json, logs)")
    (result,) = (tmp_path / "inbox" / "failed").glob("*.result.json")
    assert json.loads(result.read_text(encoding="utf-8"))["summary"].startswith("Login autoimport:")


@needs_nobody
@pytest.mark.parametrize(
    ("script", "message"),
    [
        ("rmdir {inbox}/processed", None),
        ("rmdir {inbox}/processed && echo x > {inbox}/processed", "{inbox}/processed is a file, not a folder"),
        ("mv {inbox}/processed {inbox}/moved && mkdir {inbox}/processed", "{inbox}/processed belongs to nobody"),
        ("mv {inbox}/sending {inbox}/moved && mkdir {inbox}/sending", "{inbox}/sending belongs to nobody"),
        ("mkdir {inbox}/held", "{inbox}/held belongs to nobody"),
    ],
    ids=["processed removed", "processed a file", "processed theirs", "sending theirs", "held theirs"],
)
def test_a_work_folder_replaced_mid_pass_loses_nothing_and_holds_next_pass(tmp_path, shared, script, message):
    """nobody removes or replaces a work folder while the server imports the first of four
    files: no file is lost, nothing lands in nobody's folder, no traceback, and the next
    pass either carries on (a removed folder is made again) or holds with the reason."""
    inbox = shared / "inbox"

    def attack(number: int) -> None:
        if number == 1:  # after the first file's result temporary is made in sending/ (transaction._post)
            wait_until(lambda: temporaries_in(inbox / "sending"))
            shell_as_nobody(script.format(inbox=inbox))

    with HookedServer(attack) as server:
        config_path, inbox = school(shared, server, files=4)
        first = once(config_path)
        theirs = {p: snapshot(p) for p in inbox.iterdir() if p.is_dir() and p.stat().st_uid != 0}
        second = once(config_path)
        requests = server.stats.requests
    output = first.stderr + second.stderr
    assert "Traceback" not in output, output
    assert every_csv(inbox) == [f"f{n}.csv" for n in range(4)], output
    sent = [p for p in inbox.rglob("*.csv") if p.parent != inbox]
    assert requests == len(sent), output  # each sent once; the rest wait in the inbox
    assert {p: snapshot(p) for p in theirs} == theirs and all(not snapshot(p) for p in theirs), output
    if message is None:
        assert second.returncode == 0, output
        assert sorted(p.name.split("_", 1)[1] for p in (inbox / "processed").glob("*.csv")) == [
            f"f{n}.csv" for n in range(4)
        ]
    else:
        assert second.returncode == 3 and message.format(inbox=inbox) in second.stderr, output
    assert not [p for p in inbox.rglob("*.tmp")], output


def test_two_inboxes_linked_to_one_folder_are_refused_before_any_handle_is_kept(tmp_path):
    """kept_open keeps handles per configured path: two inboxes whose paths are links to one
    folder would keep two sets of handles on one folder. The config refuses them first."""
    server = ScriptedServer(OK)
    with server:
        config_path = write_config(tmp_path, server, inboxes=2, settle_seconds=0)
        real = tmp_path / "real"
        real.mkdir()
        for name in ("inbox", "inbox2"):
            (tmp_path / name).rmdir()
            (tmp_path / name).symlink_to(real, target_is_directory=True)
        (real / "a.csv").write_text(good_csv("a"), encoding="utf-8")
        done = once(config_path)
    assert done.returncode == 2 and "is the same folder as inbox" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and (real / "a.csv").is_file() and server.stats.requests == 0


@pytest.mark.parametrize("recreated", [False, True], ids=["inbox moved away", "inbox moved and made again"])
def test_the_inbox_moved_away_mid_pass_loses_nothing_and_says_why(tmp_path, recreated):
    """An administrator moves the whole inbox away while the server imports the first of
    four files (and perhaps makes a new one at its path, with a new file in it): the pass
    must not traceback, every file is somewhere, none is sent twice."""
    inbox = tmp_path / "inbox"
    gone = tmp_path / "gone"

    def attack(number: int) -> None:
        if number == 1:
            inbox.rename(gone)
            if recreated:
                inbox.mkdir()
                (inbox / "late.csv").write_text(good_csv("late"), encoding="utf-8")

    with HookedServer(attack) as server:
        config_path = write_config(tmp_path, server, settle_seconds=0)
        assert once(config_path).returncode == 0
        for number in range(4):
            (inbox / f"f{number}.csv").write_text(good_csv(f"u{number}"), encoding="utf-8")
        first = once(config_path)
        second = once(config_path)
        requests = server.stats.requests
    output = first.stderr + second.stderr
    assert "Traceback" not in output, output
    expected = [f"f{n}.csv" for n in range(4)] + (["late.csv"] if recreated else [])
    assert sorted(every_csv(gone) + every_csv(inbox)) == expected, output
    sent = [p for p in [*gone.rglob("*.csv"), *inbox.rglob("*.csv")] if p.parent not in (inbox, gone)]
    assert requests == len(sent), output


def handles_under(folder: Path) -> list[str]:
    """This process's open file descriptors on ``folder`` or anything below it."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target == str(folder) or target.startswith(f"{folder}/"):
                found.append(target)
    return found


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts handles in /proc")
def test_kept_handles_are_all_closed_after_a_pass_that_raises(tmp_path):
    from dropbox_sync.errors import UnsafeFolder
    from dropbox_sync.pipeline import workdirs

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    workdirs.check_inbox(inbox)
    (inbox / "held").write_text("a file\n", encoding="utf-8")
    with pytest.raises(UnsafeFolder), workdirs.kept_open(inbox):
        with workdirs.inbox_folders(inbox) as folders:
            folders.get("sending"), folders.get("processed"), folders.optional("failed")
        with workdirs.kept_open(inbox), workdirs.work_folder(inbox, "failed"):
            assert len(handles_under(inbox)) == 4  # the inbox and three work folders, once each
        with workdirs.work_folder(inbox, "held", create=True):
            pass
    assert handles_under(inbox) == []


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts handles in /proc")
def test_a_real_once_over_a_swapped_folder_leaves_no_handle_open(tmp_path):
    """In process, so its handles can be counted: processed/ becomes a plain file while the
    second of three files is imported; the pass goes on in the folder it checked, the next
    one holds, and neither leaves anything of the inbox open."""
    import threading

    from dropbox_sync import config
    from dropbox_sync.pipeline.runner import Pipeline

    inbox = tmp_path / "inbox"

    def attack(number: int) -> None:
        if number == 2:
            (inbox / "processed").rename(tmp_path / "moved")
            (inbox / "processed").write_text("a file\n", encoding="utf-8")

    with HookedServer(attack) as server:
        config_path = write_config(tmp_path, server, settle_seconds=0)
        for number in range(3):
            (inbox / f"f{number}.csv").write_text(good_csv(f"u{number}"), encoding="utf-8")
        cfg = config.load(config_path)
        assert Pipeline(cfg, state_dir=cfg.state_dir).once(threading.Event()).held == {}
        assert handles_under(inbox) == [] and handles_under(tmp_path / "moved") == []
        again = Pipeline(cfg, state_dir=cfg.state_dir).once(threading.Event())
    assert "is a file, not a folder" in again.held["inbox"]  # the next pass at the latest
    assert handles_under(inbox) == [] and handles_under(tmp_path / "moved") == []
    assert sorted(every_csv(inbox) + every_csv(tmp_path / "moved")) == ["f0.csv", "f1.csv", "f2.csv"]


def changes_of(inbox: Path, name: str) -> dict:
    (result,) = inbox.glob(f"*/*_{name}.result.json")
    return json.loads(result.read_text(encoding="utf-8"))["dropbox_sync"]["changes"]


def test_a_file_the_server_answers_early_is_compared_after_every_earlier_lesson(tmp_path):
    """The second file is answered (success) before its body is out, so the on_sent hook
    never runs and its comparison happens after the reply: the first file's lesson, left for
    that hook, must be learnt before it all the same, or the comparison misses the first
    file (here: its one user counted as added again)."""
    from tests.badservers import EarlyAnswerServer

    inbox = tmp_path / "inbox"
    with EarlyAnswerServer(OK, early={2}) as server:
        config_path = write_config(tmp_path, server, settle_seconds=0)
        (inbox / "a-first.csv").write_text(good_csv("kept"), encoding="utf-8")
        many = [f"user{n:05d}" for n in range(6000)]  # about 400 KiB: under the 1 MiB window
        (inbox / "b-second.csv").write_text(good_csv("kept", *many), encoding="utf-8")
        done = once(config_path)
        early = server.answered_early
    assert early == 1, done.stderr  # the attack happened as meant
    assert "Traceback" not in done.stderr, done.stderr
    assert changes_of(inbox, "a-first.csv")["added"] == 1
    second = changes_of(inbox, "b-second.csv")
    assert (second["unchanged"], second["added"]) == (1, 6000), done.stderr


def test_once_killed_between_a_result_and_its_lesson_loses_nothing(tmp_path):
    """SIGKILL while the server holds the second file's request: the first file's result is
    on disk, its lesson perhaps not learnt yet (it waits for this upload's hook), and the
    second file's result temporary made (the hook makes it first). The memory holds nothing
    the server did not confirm; the next run sweeps the temporary, sends the second file
    again, loses nothing and shows no traceback."""
    import signal

    inbox = tmp_path / "inbox"
    running: list[subprocess.Popen] = []

    def attack(number: int) -> None:
        if number == 2:
            wait_until(lambda: temporaries_in(inbox / "sending"))  # the upload's hook has begun
            running[0].send_signal(signal.SIGKILL)
            running[0].wait(60)

    with HookedServer(attack) as server:
        config_path = write_config(tmp_path, server, settle_seconds=0)
        (inbox / "a.csv").write_text(good_csv("first"), encoding="utf-8")
        (inbox / "b.csv").write_text(good_csv("second"), encoding="utf-8")
        command = [sys.executable, "-m", "dropbox_sync", "--config", str(config_path), "once"]
        running.append(subprocess.Popen(command, cwd=REPO, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE))
        _, killed_stderr = running[0].communicate(timeout=120)
        assert running[0].returncode == -signal.SIGKILL
        assert set(remembered(tmp_path / "state")) <= {"first"}  # never the unanswered file's rows
        again = once(config_path)
        requests = server.stats.requests
    assert again.returncode == 0 and "Traceback" not in killed_stderr.decode() + again.stderr, again.stderr
    assert sorted(p.name.split("_", 1)[1] for p in (inbox / "processed").glob("*.csv")) == ["a.csv", "b.csv"]
    assert requests == 3  # the second file once more, nothing else
    assert not list(inbox.rglob("*.tmp")), "the killed run's temporary is swept at start"
    # The first file's lesson may have died with the process: its rows are sent again next time.
    assert "second" in remembered(tmp_path / "state") and set(remembered(tmp_path / "state")) <= {"first", "second"}


@pytest.mark.parametrize(
    "policy",
    [{"delta": True, "leavers": "report"}, {"delta": True, "leavers": "deactivate", "change_guard": 0}],
    ids=["delta", "delta and deactivate"],
)
def test_small_and_large_files_in_one_pass_compare_in_order_and_send_the_right_rows(tmp_path, emu, policy):
    """Small, above 1 MiB, small, in one pass over the emulator: a small file's lesson waits
    for the next upload's hook, a large file is compared before its upload (and, for a policy
    that shapes the upload, every file is): each comparison must still see every file before
    it, and each delta upload carry exactly the rows that changed (and the leavers)."""
    from dropbox_sync.pipeline.lessons import WINDOW_BYTES
    from tests.test_roster import School, export

    school = School(tmp_path, emu, **policy)
    school.day = 1
    big = 20001
    files = [export(range(1, 6)), export(range(1, big), {2: {"year": 8}}), export(range(1, 8), {3: {"year": 8}})]
    for number, text in enumerate(files):
        (school.inbox / f"{number}_students.csv").write_text(text, encoding="utf-8")
    assert (school.inbox / "1_students.csv").stat().st_size > WINDOW_BYTES
    school.run()
    results = [result_of(p) for p in sorted(archived(school.inbox, "processed"))]
    seen = [
        (c["added"], c["changed"], c["unchanged"], c["leavers"])
        for c in (r["dropbox_sync"]["changes"] for r in results)
    ]
    assert seen == [(5, 0, 0, 0), (big - 6, 1, 4, 0), (0, 2, 5, big - 8)]
    sent = [len(rows) for rows in school.uploads()]
    deactivated = big - 8 if policy["leavers"] == "deactivate" else 0
    assert sent == [5, big - 6 + 1, 2 + deactivated]


@pytest.mark.parametrize(
    "tail",
    [b"\xff\xfe not UTF-8\n", b"s9999,First,Last,Year 7,Student,x@y\x00z\n", b'"' + b"x" * 200_000 + b'",a,b,c,d,e\n'],
    ids=["bad UTF-8 late", "a NUL in a row", "a field past csv's limit"],
)
@pytest.mark.parametrize(
    "policy",
    [{"delta": True}, {"delta": True, "leavers": "deactivate", "change_guard": 0}, {"leavers": "report"}],
    ids=["delta", "deactivate", "compare only"],
)
def test_a_file_the_comparison_cannot_read_leaves_no_temporary_in_sending(tmp_path, emu, policy, tail):
    """The comparison makes its temporary only when it rewrites, and may fail after making
    it (a bad byte, a NUL, a huge field far into the file): nothing may stay in sending/,
    and each file ends filed with a result."""
    from tests.test_roster import School, export

    school = School(tmp_path, emu, **policy)
    school.night(export(range(1, 4000)))  # a memory to compare with, and rows before the fault
    (school.inbox / "bad.csv").write_bytes(export(range(1, 4000), {5: {"year": 9}}).encode() + tail)
    school.run()
    assert [p.name for p in (school.inbox / "sending").iterdir()] == []
    (filed,) = [p for p in school.filed() if p.name.endswith("_bad.csv")]
    assert result_of(filed)["dropbox_sync"]["file"] == "bad.csv"


@pytest.mark.parametrize("how", ["overwritten", "replaced by a folder"])
def test_the_roster_file_spoilt_mid_pass_loses_no_file_and_shows_no_traceback(tmp_path, how):
    """While the server imports the second of four files (the first file's lesson not learnt
    yet), the roster file is overwritten with garbage in place, or replaced by a folder."""
    roster = tmp_path / "state" / "roster.sqlite3"

    def attack(number: int) -> None:
        if number == 2:
            if how == "overwritten":
                with open(roster, "r+b") as handle:
                    handle.write(b"not a database at all " * 400)
            else:
                roster.rename(tmp_path / "old-roster")
                roster.mkdir()

    inbox = tmp_path / "inbox"
    with HookedServer(attack) as server:
        config_path = write_config(tmp_path, server, settle_seconds=0)
        for number in range(4):
            (inbox / f"f{number}.csv").write_text(good_csv(f"u{number}"), encoding="utf-8")
        first = once(config_path)
        (inbox / "late.csv").write_text(good_csv("late"), encoding="utf-8")
        second = once(config_path)
        requests = server.stats.requests
    output = first.stderr + second.stderr
    assert "Traceback" not in output, output
    assert sorted(p.name.split("_", 1)[1] for p in archived(inbox, "processed")) == [
        "f0.csv",
        "f1.csv",
        "f2.csv",
        "f3.csv",
        "late.csv",
    ], output
    assert requests == 5, output


@pytest.mark.parametrize("how", ["reset after the request", "a trickled answer"])
def test_a_rude_server_mid_pass_never_makes_the_memory_learn_an_unconfirmed_file(tmp_path, how):
    """The second of three files is reset once its request is in (no answer: it is sent
    again), or its answer trickles in byte by byte while the hook learns the first file: the
    memory learns each file only from its answer, every comparison sees the files before."""
    from tests.badservers import EarlyAnswerServer

    inbox = tmp_path / "inbox"
    slow = Scripted(body=OK.body, trickle=0.0005)  # the pause IS the behaviour: a trickling server
    replies = (OK,) if how.startswith("reset") else (OK, slow, OK)
    reset = frozenset({2}) if how.startswith("reset") else frozenset()
    with EarlyAnswerServer(*replies, early=set(), reset=reset) as server:
        config_path = write_config(tmp_path, server, settle_seconds=0, once_retry_seconds=30, retry_first_seconds=0.01)
        for number, users in enumerate((["a"], ["a", "b"], ["a", "b", "c"])):
            (inbox / f"{number}.csv").write_text(good_csv(*users), encoding="utf-8")
        done = once(config_path)
        connections = server.connections
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert connections == 3 + len(reset), done.stderr  # the reset file once more
    results = [result_of(p) for p in sorted(archived(inbox, "processed"))]
    seen = [(c["added"], c["unchanged"]) for c in (r["dropbox_sync"]["changes"] for r in results)]
    assert seen == [(1, 0), (1, 1), (1, 2)], done.stderr
    assert remembered(tmp_path / "state") == ["a", "b", "c"]


@needs_nobody
def test_held_planted_as_a_link_mid_pass_when_a_guarded_file_needs_it(tmp_path, shared):
    """held/ is made only when a file is guarded. nobody links it to another school's archive
    while the server imports the first file; the second would deactivate most of the school
    (change_guard) and must go to held/: nothing goes through the link, the file waits in
    sending/ with its result, the inbox holds, and it is filed once the link is gone."""
    from tests.test_roster import export

    victim = other_school(shared) / "processed"
    before = snapshot(victim)

    def attack(number: int) -> None:
        if number == 1:
            shell_as_nobody(f"ln -s {victim} {shared}/inbox/held")

    with HookedServer(attack) as server:
        config_path = write_config(shared, server, settle_seconds=0, leavers="deactivate")
        inbox = shared / "inbox"
        inbox.chmod(0o777)
        assert once(config_path).returncode == 0
        (inbox / "0_students.csv").write_text(export(range(1, 11)), encoding="utf-8")
        (inbox / "1_students.csv").write_text(export([1, 2, 3]), encoding="utf-8")
        first = once(config_path)
        assert snapshot(victim) == before
        assert first.returncode == 3 and f"{inbox / 'held'} is a link" in first.stderr, first.stderr
        (inbox / "held").unlink()
        second = once(config_path)
        requests = server.stats.requests
    assert "Traceback" not in first.stderr + second.stderr, first.stderr + second.stderr
    assert snapshot(victim) == before and requests == 1
    assert [p.name.split("_", 1)[1] for p in archived(inbox, "held")] == ["1_students.csv"], second.stderr
    assert "change_guard" in result_of(archived(inbox, "held")[0])["summary"]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0 or shutil.which("chattr") is None, reason="chattr +i")
def test_a_temporary_the_os_will_not_remove_never_turns_a_reply_into_an_unexpected_error(tmp_path):
    """The result's temporary is made while the server imports the file; a reply that writes no
    result (here a 401: hold) removes it. Where the OS refuses (on a Windows share or Windows
    itself: an antivirus or indexer holding the new file; here chattr +i, Linux's refusal, as a
    stand-in we can drive), that must not replace the reply's outcome with an "unexpected error"
    and a traceback: the inbox holds for the 401, the leftover is swept at the next start."""
    inbox = tmp_path / "inbox"
    pinned: list[Path] = []

    def attack(number: int) -> None:
        if number == 1:  # once the result's temporary exists, the OS refuses to remove it
            (temporary,) = wait_until(lambda: temporaries_in(inbox / "sending"))
            subprocess.run(["chattr", "+i", str(temporary)], check=True, timeout=30)
            pinned.append(temporary)

    refused = Scripted(status=401, body=json_bytes('{"error": "Invalid credentials"}'))
    try:
        with HookedServer(attack, refused, OK) as server:
            config_path = write_config(tmp_path, server, settle_seconds=0)
            (inbox / "a.csv").write_text(good_csv("a"), encoding="utf-8")
            held = once(config_path)
            subprocess.run(["chattr", "-i", *map(str, pinned)], check=True, timeout=30)
            again = once(config_path)
            requests = server.stats.requests
    finally:
        subprocess.run(["chattr", "-i", *map(str, pinned)], check=False, capture_output=True, timeout=30)
    assert "Traceback" not in held.stderr and "unexpected error" not in held.stderr, held.stderr
    assert held.returncode == 3 and "401" in held.stderr and "cannot remove the temporary" in held.stderr, held.stderr
    assert again.returncode == 0 and requests == 2, again.stderr
    assert every_csv(inbox / "processed") == ["a.csv"] and not list(inbox.rglob("*.tmp")), again.stderr


def test_a_large_file_is_compared_after_the_lesson_of_the_small_file_before_it(tmp_path):
    """A file above the 1 MiB window is compared before its upload, after every lesson before
    it (``learn_now``). A small file's lesson is queued when that file is filed, and filing now
    waits for the next upload's hook (filing.py): the large file's comparison must not come
    first, or it misses the small file (its one user counted as added again) and the memory
    learns the two files out of order."""
    from dropbox_sync.pipeline.lessons import WINDOW_BYTES

    inbox = tmp_path / "inbox"
    with ScriptedServer(OK) as server:
        config_path = write_config(tmp_path, server, settle_seconds=0)
        (inbox / "a-first.csv").write_text(good_csv("kept"), encoding="utf-8")
        many = [f"user{n:05d}" for n in range(18000)]  # about 1.1 MiB: above the window
        (inbox / "b-second.csv").write_text(good_csv("kept", *many), encoding="utf-8")
        assert (inbox / "b-second.csv").stat().st_size > WINDOW_BYTES
        done = once(config_path)
    assert "Traceback" not in done.stderr, done.stderr
    assert changes_of(inbox, "a-first.csv")["added"] == 1
    second = changes_of(inbox, "b-second.csv")
    assert (second["unchanged"], second["added"]) == (1, 18000), done.stderr


class _LooksBeforeTheBody(ScriptedServer):
    """Answers OK; when a request's headers are in, before it reads the body, notes whether
    the file before it is already filed. A small receive buffer, so a large body cannot be all
    out (and the client's on_sent hook run) before the server reads it."""

    def __init__(self, inbox: Path) -> None:
        super().__init__(OK)
        self.inbox = inbox
        self.filed_before_body: dict[int, bool] = {}

    def server_bind(self) -> None:
        import socket

        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # inherited by accepted sockets
        super().server_bind()

    def headers_read(self, number: int) -> None:
        self.filed_before_body[number] = any(self.inbox.glob("processed/*_a-small.csv"))


def test_the_file_before_a_large_upload_is_filed_before_that_upload_starts(tmp_path):
    """A recorded file is filed while the server imports the next one (filing.py); but a large
    next file may take minutes to go out, and an upload dropped at stop would leave the
    filing to the next start. So before an upload beyond the 1 MiB window, the file before it
    is filed at once: its log line and reports never wait for a large body."""
    inbox = tmp_path / "inbox"
    with _LooksBeforeTheBody(inbox) as server:
        config_path = write_config(tmp_path, server, settle_seconds=0)
        (inbox / "a-small.csv").write_text(good_csv("small"), encoding="utf-8")
        users = (f"user{n:07d}" for n in range(200_000))  # about 12 MiB: more than socket buffers hold
        (inbox / "b-large.csv").write_text(good_csv(*users), encoding="utf-8")
        done = once(config_path)
    assert done.returncode == 0, done.stderr
    assert server.filed_before_body == {1: False, 2: True}, server.filed_before_body
