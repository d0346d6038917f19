"""The drop-box end to end: real emulator over TLS, real folders, real observers."""

from __future__ import annotations

import hashlib
import os
import threading

import pytest

from dropbox_sync import config
from dropbox_sync.pipeline.runner import Pipeline
from dropbox_sync.pipeline.worker import InboxWorker
from tests.helpers import wait_until
from tests.support import (
    HEADER,
    archived,
    emulator_with_password,
    good_csv,
    result_of,
    running_service,
    write_config,
)


@pytest.fixture
def emu(tmp_path):
    emulator = emulator_with_password(tmp_path).start()
    yield emulator
    emulator.stop()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_good_bad_row_and_missing_column_end_in_the_right_folders(tmp_path, emu):
    inbox = tmp_path / "inbox"
    files = {
        "good.csv": good_csv("u1", "u2").encode(),
        "bad-row.csv": (HEADER + "u3,A,B,Year 7,Student,not-an-email\n").encode(),
        "no-column.csv": b"username,library-group\nu4,Year 7\n",
    }
    with running_service(write_config(tmp_path, emu)):
        for name, data in files.items():
            (inbox / name).write_bytes(data)
        wait_until(lambda: len(archived(inbox, "processed")) + len(archived(inbox, "failed")) == 3)

    (good,) = archived(inbox, "processed")
    assert good.name.endswith("_good.csv")
    assert good.read_bytes() == files["good.csv"]
    failed = {p.name.split("_", 1)[1]: p for p in archived(inbox, "failed")}
    assert set(failed) == {"bad-row.csv", "no-column.csv"}

    uploads = {u.filename: u for u in emu.uploads()}
    for name in ("good.csv", "bad-row.csv"):
        assert uploads[name].sha256 == sha256(files[name]), "server must receive the bytes unchanged"
    assert "no-column.csv" not in uploads, "pre-flight stops a file without required columns"

    good_result = result_of(good)
    assert good_result["success"] is True
    assert good_result["summary"] == "2 users processed. 2 users created. 0 users updated. 0 users failed."
    assert set(good_result) == {"success", "summary", "dropbox_sync"}
    facts = good_result["dropbox_sync"]
    assert facts["sha256"] == sha256(files["good.csv"]) and facts["bytes"] == len(files["good.csv"])
    assert facts["http_status"] == 200 and facts["file"] == "good.csv"

    bad = result_of(failed["bad-row.csv"])
    assert bad["success"] is False
    assert bad["details"] == {
        "1": "Field (emailAddress) is not a well-formed email address. User failed to "
        "import: Field (emailAddress) is not a well-formed email address. "
    }
    missing = result_of(failed["no-column.csv"])
    assert missing["success"] is False
    assert missing["summary"].startswith("Missing required column(s): system-group.")
    assert missing["dropbox_sync"]["stage"] == "preflight"
    assert not list((inbox / "sending").iterdir()), "nothing may be left claimed"


def test_a_slowly_written_file_is_uploaded_once_and_complete(tmp_path, emu):
    # Settling alone (no writer signals: the file is closed after each line, and
    # the lease probe is off): a line every 0.9 x settle_seconds of the worker's
    # clock, with a pass after each, is never taken for finished. Fake clock,
    # real folders and server: no pause in the test, whatever the machine's speed.
    from tests.test_settle import FakeClock

    inbox = tmp_path / "inbox"
    settle = 2.0
    cfg = config.load(write_config(tmp_path, emu, settle_seconds=settle))
    clock = FakeClock()
    worker = InboxWorker(cfg.inboxes[0], clock=clock, write_probe=lambda path: None)
    stop = threading.Event()
    lines = [good_csv("slow0")] + [f"slow{i},F,L,Year 7,Student,\n" for i in range(1, 21)]
    try:
        for line in lines:
            with open(inbox / "slow.csv", "a", encoding="utf-8") as handle:
                handle.write(line)
            worker.cycle(stop)
            clock.advance(0.9 * settle)
            worker.cycle(stop)
        assert emu.uploads() == [], "still being written: never settled"
        clock.advance(0.1 * settle)
        worker.cycle(stop)
    finally:
        worker.close()
    assert len(emu.uploads()) == 1
    (done,) = archived(inbox, "processed")
    assert done.read_text(encoding="utf-8") == "".join(lines)
    assert emu.uploads()[0].sha256 == sha256("".join(lines).encode())
    assert result_of(done)["summary"].startswith("21 users processed. 21 users created.")


def test_files_present_before_start_up_are_processed(tmp_path, emu):
    inbox = tmp_path / "inbox"
    config_path = write_config(tmp_path, emu)
    for number in range(3):
        (inbox / f"early{number}.csv").write_text(good_csv(f"e{number}"), encoding="utf-8")
    with running_service(config_path):
        wait_until(lambda: len(archived(inbox, "processed")) == 3)
    assert len(emu.uploads()) == 3


def once_within(pipeline: Pipeline, stop: threading.Event, look, seconds: float = 30) -> bool:
    """``pipeline.once`` on an injected clock, which the test ends by setting ``stop``; False if
    it had to be stopped after ``seconds`` instead (a bound on the failure, not a sync)."""
    timed_out = threading.Event()
    bound = threading.Timer(seconds, lambda: (timed_out.set(), stop.set()))
    bound.start()
    try:
        pipeline.once(stop, look=look)
    finally:
        bound.cancel()
    return not timed_out.is_set()


def test_once_counts_its_start_up_toward_settling_but_not_past_a_change(tmp_path, emu):
    """``once`` looks at its inboxes before its imports (discover.FirstLook). Files unchanged
    since that look have settled once settle_seconds have passed on the worker's clock, and go
    in the first pass; a file that changed since the look waits settle_seconds from its change.
    The clock is injected: without the look, this once would wait for time that never passes
    (the stop event bounds that failure; it is not how the test synchronises)."""
    import functools

    from dropbox_sync.pipeline.discover import FirstLook
    from tests.test_settle import FakeClock

    cfg = config.load(write_config(tmp_path, emu, settle_seconds=60, once_retry_seconds=0))
    inbox = tmp_path / "inbox"
    for name in ("a.csv", "b.csv", "grown.csv"):
        (inbox / name).write_text(good_csv(name[0]), encoding="utf-8")
    clock = FakeClock()
    look = FirstLook(cfg.inboxes, clock=clock)
    wait_until(lambda: look.of("inbox") is not None)  # its own thread: once never waits for it
    clock.advance(60)
    with (inbox / "grown.csv").open("a", encoding="utf-8") as still_written:
        still_written.write("zed,Zed,Zee,Adults,Patron,z@example.org\n")
    stop, reports = threading.Event(), []

    def heard(report) -> None:
        reports.append(report)
        if len(reports) == 2:
            stop.set()  # only grown.csv is left, and it must wait: this once would not end by itself

    pipeline = Pipeline(cfg, listeners=[heard], worker_factory=functools.partial(InboxWorker, clock=clock))
    assert once_within(pipeline, stop, look), "the first pass took every file that had settled since the look"
    assert sorted(p.name.split("_", 1)[1] for p in archived(inbox, "processed")) == ["a.csv", "b.csv"]
    assert (inbox / "grown.csv").exists(), "changed since the look: settling starts from the change"


def test_once_builds_its_http_client_while_the_files_settle(tmp_path, emu):
    """Building the first HTTP client imports httpx's transport (httpcore, h11): tens of
    milliseconds that ``once`` spends while its files settle, not after. Here the file needs a
    minute of a clock that stands still; the client is built in that wait, before anything is
    claimed, and building it ends the test (the stop event)."""
    import functools

    from dropbox_sync.pipeline.client import ImportClient
    from tests.test_settle import FakeClock

    cfg = config.load(write_config(tmp_path, emu, settle_seconds=60, once_retry_seconds=120))
    inbox = tmp_path / "inbox"
    (inbox / "a.csv").write_text(good_csv("a"), encoding="utf-8")
    stop, built = threading.Event(), []

    def client(inbox_config):
        built.append(sorted(p.name for p in inbox.iterdir() if p.is_file()))
        stop.set()
        return ImportClient(inbox_config)

    worker = functools.partial(InboxWorker, clock=FakeClock(), client_factory=client)
    assert once_within(Pipeline(cfg, worker_factory=worker), stop, None, seconds=10)
    assert built == [["a.csv"]], "built once, while a.csv still waited in the inbox"
    assert emu.uploads() == []


def test_a_client_that_cannot_be_built_while_files_settle_is_reported_by_the_upload(tmp_path, emu):
    """The warm-up keeps quiet about a client it cannot build (a CA bundle that is not PEM,
    say): the first upload builds it again and fails as it always did, holding the inbox
    with the reason; the file waits, whole, for the fix."""
    import functools

    from tests.test_settle import FakeClock

    cfg = config.load(write_config(tmp_path, emu, settle_seconds=1, once_retry_seconds=0))
    inbox = tmp_path / "inbox"
    (inbox / "a.csv").write_text(good_csv("a"), encoding="utf-8")
    clock, tries = FakeClock(), []

    def client(inbox_config):
        tries.append(clock())
        clock.advance(1)  # the first try is the warm-up, in the settle wait: the file settles by the next pass
        raise OSError("the CA bundle is not a certificate file")

    worker = functools.partial(InboxWorker, clock=clock, client_factory=client)
    result = Pipeline(cfg, worker_factory=worker).once(threading.Event())
    assert len(tries) == 2, "the warm-up, then the upload"
    assert "the CA bundle is not a certificate file" in result.held["inbox"]
    assert emu.uploads() == []
    claimed = [p for p in (inbox / "sending").iterdir() if p.suffix == ".csv"]
    assert [p.read_text(encoding="utf-8") for p in claimed] == [good_csv("a")], "kept whole in sending/"


def test_a_first_look_that_does_not_end_holds_up_no_other_inbox(tmp_path, emu, monkeypatch):
    """A share that does not answer: its inbox's first look is waited for no longer than
    FirstLook.WAIT. ``once`` starts, the other inbox is seeded and sent in its first pass,
    and the silent one settles from its worker's own look. The hang is a fake (discover
    blocked on an event for inbox2): a share that stops answering cannot be made on cue."""
    import functools

    from dropbox_sync.pipeline import discover as discovery
    from tests.test_settle import FakeClock

    cfg = config.load(write_config(tmp_path, emu, inboxes=2, settle_seconds=60, once_retry_seconds=0))
    (tmp_path / "inbox" / "a.csv").write_text(good_csv("a"), encoding="utf-8")
    (tmp_path / "inbox2" / "b.csv").write_text(good_csv("b"), encoding="utf-8")
    answer = threading.Event()
    looks = discovery.discover

    def silent_share(inbox, **kwargs):
        if inbox.name == "inbox2":
            answer.wait(30)
        return looks(inbox, **kwargs)

    monkeypatch.setattr(discovery, "discover", silent_share)
    clock = FakeClock()
    look = discovery.FirstLook(cfg.inboxes, clock=clock)
    try:
        wait_until(lambda: look.of("inbox") is not None)
        clock.advance(60)
        stop = threading.Event()
        pipeline = Pipeline(
            cfg,
            listeners=[lambda report: stop.set()],  # a.csv filed: b.csv must wait 60 s of a clock that stands still
            worker_factory=functools.partial(InboxWorker, clock=clock),
        )
        assert once_within(pipeline, stop, look)
        assert look.of("inbox2") is None, "still looking: not waited for beyond FirstLook.WAIT"
    finally:
        answer.set()  # the share answers: the look's thread ends
    assert [p.name.split("_", 1)[1] for p in archived(tmp_path / "inbox", "processed")] == ["a.csv"]
    assert (tmp_path / "inbox2" / "b.csv").exists() and len(emu.uploads()) == 1


def test_the_same_name_dropped_twice_gives_two_archives(tmp_path, emu):
    inbox = tmp_path / "inbox"
    with running_service(write_config(tmp_path, emu)):
        (inbox / "users.csv").write_text(good_csv("a"), encoding="utf-8")
        wait_until(lambda: len(archived(inbox, "processed")) == 1)
        (inbox / "users.csv").write_text(good_csv("a", "b"), encoding="utf-8")
        wait_until(lambda: len(archived(inbox, "processed")) == 2)
    # Same second: the later one carries a counter (…Z-2_users.csv), so order by the recorded time.
    first, second = sorted(archived(inbox, "processed"), key=lambda p: result_of(p)["dropbox_sync"]["started"])
    assert first.name != second.name
    assert first.read_text(encoding="utf-8") == good_csv("a")
    assert second.read_text(encoding="utf-8") == good_csv("a", "b")
    assert result_of(second)["summary"] == "2 users processed. 1 user created. 1 user updated. 0 users failed."


def test_oldest_file_goes_first(tmp_path, emu):
    inbox = tmp_path / "inbox"
    config_path = write_config(tmp_path, emu)
    for number, name in enumerate(["c.csv", "a.csv", "b.csv"]):
        path = inbox / name
        path.write_text(good_csv(name[0]), encoding="utf-8")
        stamp = 1_700_000_000 + number * 60
        os.utime(path, (stamp, stamp))
    with running_service(config_path):
        wait_until(lambda: len(archived(inbox, "processed")) == 3)
    assert [u.filename for u in emu.uploads()] == ["c.csv", "a.csv", "b.csv"]


def test_excluded_and_unmatched_names_are_left_alone(tmp_path, emu):
    inbox = tmp_path / "inbox"
    config_path = write_config(tmp_path, emu)
    for name in ("~$users.csv", "users.csv.tmp", ".hidden.csv", "notes.txt", "Thumbs.db"):
        (inbox / name).write_text(good_csv("x"), encoding="utf-8")
    (inbox / "REAL.CSV").write_text(good_csv("r"), encoding="utf-8")
    with running_service(config_path):
        wait_until(lambda: archived(inbox, "processed"))
    assert [u.filename for u in emu.uploads()] == ["REAL.CSV"]
    assert sorted(p.name for p in inbox.iterdir() if p.is_file()) == sorted(
        ["~$users.csv", "users.csv.tmp", ".hidden.csv", "notes.txt", "Thumbs.db"]
    )


def test_several_inboxes_in_one_process(tmp_path, emu):
    config_path = write_config(tmp_path, emu, inboxes=3)
    folders = [tmp_path / "inbox", tmp_path / "inbox2", tmp_path / "inbox3"]
    with running_service(config_path):
        for number, folder in enumerate(folders):
            (folder / "users.csv").write_text(good_csv(f"m{number}"), encoding="utf-8")
        wait_until(lambda: all(archived(f, "processed") for f in folders))
    assert len(emu.uploads()) == 3


def test_once_processes_everything_and_returns(tmp_path, emu):
    inbox = tmp_path / "inbox"
    config_path = write_config(tmp_path, emu)
    for number in range(4):
        (inbox / f"f{number}.csv").write_text(good_csv(f"o{number}"), encoding="utf-8")
    (inbox / "bad.csv").write_bytes(b"\xff\xfeu\x00")
    cfg = config.load(config_path)
    result = Pipeline(cfg).once(threading.Event())
    assert len(archived(inbox, "processed")) == 4
    assert len(result.failed) == 1 and result.failed[0].original == "bad.csv"
    assert not result.held


def test_a_claimed_file_that_changes_is_not_sent_until_it_settles_again(tmp_path, emu):
    # On Linux a writer can go on writing into a renamed file, and after a
    # crash we cannot know what happened to a claimed file: either way the
    # claimed file must settle again before it is sent. Fake clock, real server.
    from tests.test_settle import FakeClock

    inbox = tmp_path / "inbox"
    cfg = config.load(write_config(tmp_path, emu, settle_seconds=5))
    clock = FakeClock()
    worker = InboxWorker(cfg.inboxes[0], clock=clock)
    stop = threading.Event()
    worker.cycle(stop)  # creates sending/, processed/, failed/
    claimed = inbox / "sending" / "20261125T020000Z_users.csv"
    claimed.write_text(good_csv("c1"), encoding="utf-8")
    try:
        assert worker.cycle(stop) == pytest.approx(5.01)
        clock.advance(3)
        with open(claimed, "a", encoding="utf-8") as handle:
            handle.write("c2,F,L,Year 7,Student,\n")
        worker.cycle(stop)
        clock.advance(3)
        worker.cycle(stop)
        assert emu.uploads() == [], "changed 3 s ago: not settled yet"
        clock.advance(2.1)
        worker.cycle(stop)
    finally:
        worker.close()
    (upload,) = emu.uploads()
    assert upload.sha256 == sha256((good_csv("c1") + "c2,F,L,Year 7,Student,\n").encode())
    (done,) = archived(inbox, "processed")
    assert done.name == claimed.name, "the archive name chosen at claim time is kept"


def test_a_link_swapped_in_after_the_scan_is_never_followed(tmp_path, emu):
    # The scan ignores links, but one can replace a file between the scan and
    # the claim; it must end in failed/ unread, and its target untouched.
    inbox = tmp_path / "inbox"
    secret = tmp_path / "outside.csv"
    secret.write_text(good_csv("never-sent"), encoding="utf-8")
    cfg = config.load(write_config(tmp_path, emu, settle_seconds=0))
    worker = InboxWorker(cfg.inboxes[0])
    stop = threading.Event()
    worker.cycle(stop)
    (inbox / "sending" / "20261125T020000Z_users.csv").symlink_to(secret)
    try:
        worker.cycle(stop)
    finally:
        worker.close()
    assert emu.uploads() == []
    (link,) = archived(inbox, "failed")
    assert link.is_symlink() and secret.read_text(encoding="utf-8") == good_csv("never-sent")
    assert "links are never followed" in result_of(link)["summary"]


def test_done_marker_mode_waits_for_the_marker_and_consumes_it(tmp_path, emu):
    inbox = tmp_path / "inbox"
    cfg = config.load(write_config(tmp_path, emu, settle_seconds=0, done_marker=".done"))
    worker = InboxWorker(cfg.inboxes[0])
    stop = threading.Event()
    try:
        (inbox / "users.csv").write_text(good_csv("d1"), encoding="utf-8")
        worker.cycle(stop)
        worker.cycle(stop)
        assert emu.uploads() == [], "no marker yet: not ready, however settled"
        (inbox / "users.csv.done").write_bytes(b"")
        worker.cycle(stop)
        assert len(emu.uploads()) == 1
        # The marker went with the file: a new users.csv waits for a new marker.
        (inbox / "users.csv").write_text(good_csv("d2"), encoding="utf-8")
        worker.cycle(stop)
        worker.cycle(stop)
        assert len(emu.uploads()) == 1
    finally:
        worker.close()
    (done,) = archived(inbox, "processed")
    assert (done.parent / f".{done.name}.done").exists(), "the marker is archived beside its file"
    assert sorted(p.name for p in inbox.iterdir() if p.is_file()) == ["users.csv"]


def test_a_sent_file_another_program_holds_is_filed_once_released(tmp_path, emu, monkeypatch):
    # Windows refuses to rename a file an antivirus scanner or backup agent has
    # open (WinError 32); Linux never does, so the refusal is faked here for two
    # passes. The real one is proven under Wine (tests/windows/test_claim_while_held.py).
    from dropbox_sync.pipeline import archive, archive_names, discover

    inbox = tmp_path / "inbox"
    cfg = config.load(write_config(tmp_path, emu, settle_seconds=0))
    real_archive, refusals = archive.archive, [2]

    def held_twice(claimed, destination):
        if refusals[0] and "scanned" in claimed.name:
            refusals[0] -= 1
            refused = PermissionError(13, "The process cannot access the file because it is being used")
            refused.winerror = 32  # what Windows sets (ERROR_SHARING_VIOLATION); claim.is_busy reads it
            raise refused
        return real_archive(claimed, destination)

    monkeypatch.setattr(archive, "archive", held_twice)
    reports = []
    worker = InboxWorker(cfg.inboxes[0], listeners=[reports.append])
    stop = threading.Event()
    (inbox / "scanned.csv").write_text(good_csv("s1"), encoding="utf-8")
    (inbox / "next.csv").write_text(good_csv("s2"), encoding="utf-8")
    os.utime(inbox / "scanned.csv", (1_700_000_000, 1_700_000_000))
    try:
        worker.cycle(stop)  # scanned.csv sent but held; next.csv goes on
        (claimed,) = discover.claimed_files(inbox)
        assert "once another program releases it" in worker.snapshot().waiting[claimed.name]
        assert archive_names.result_path(claimed).exists(), "its outcome is on disk already"
        worker.cycle(stop)  # still held
        worker.cycle(stop)  # released
    finally:
        worker.close()
    assert [u.filename for u in emu.uploads()] == ["scanned.csv", "next.csv"], "sent once; the next file went on"
    assert len(archived(inbox, "processed")) == 2 and not discover.claimed_files(inbox)
    assert [r.original for r in reports] == ["scanned.csv", "next.csv"], "reported once each"


def test_outcomes_are_filed_and_logged_in_the_order_files_were_sent(tmp_path, emu):
    """A recorded file is filed while the server imports the next one (filing.py), or at once
    before anything else is recorded: uploads, a pre-flight rejection and a server refusal in
    one pass are logged, journalled and reported in the order they were taken, each log line
    after its file reached its folder, and nothing is left in sending/."""
    from tests.support import run_cli

    inbox = tmp_path / "inbox"
    config_path = write_config(tmp_path, emu, settle_seconds=0)
    files = {
        "a1.csv": good_csv("a1"),
        "a2-no-column.csv": "username,library-group\nu4,Year 7\n",
        "a3.csv": good_csv("a3"),
        "a4-bad-row.csv": HEADER + "u9,A,B,Year 7,Student,not-an-email\n",
        "a5.csv": good_csv("a5"),
    }
    for name, text in files.items():
        (inbox / name).write_text(text, encoding="utf-8")
    done = run_cli("--config", str(config_path), "once")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr  # 1: some files failed
    logged = [line.split('": ', 1)[1].split(" -> ")[0] for line in done.stderr.splitlines() if " -> " in line]
    assert logged == list(files), done.stderr
    history = run_cli("--config", str(config_path), "history", "--limit", "10")
    shown = [line.split()[3] for line in history.stdout.splitlines() if line[:1].isdigit()]
    assert shown == list(reversed(files)), history.stdout  # newest first
    assert not list((inbox / "sending").iterdir())
    assert len(archived(inbox, "processed")) == 3 and len(archived(inbox, "failed")) == 2
