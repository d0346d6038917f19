"""report.html: rendered by the real pipeline, read the way a person's browser shows it.

The page is opened in headless Debian chromium (tests/browser.py) and
checked by its DOM after load: the words a person reads, the links, and that
hostile names and server messages stayed text (no element, nothing run).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
import urllib.parse
from pathlib import Path

import pytest

from dropbox_sync import config, when
from dropbox_sync.config import ConfigError
from dropbox_sync.pipeline import archive_names
from dropbox_sync.pipeline.runner import Pipeline
from dropbox_sync.pipeline.worker import InboxSnapshot
from dropbox_sync.report import content, pagefile
from dropbox_sync.report import page as report
from dropbox_sync.session import Session, pipeline_session
from dropbox_sync.state.journal import Journal
from tests import sis_exports
from tests.badservers import Scripted, ScriptedServer
from tests.browser import Dom, dump_dom
from tests.helpers import wait_until
from tests.support import (
    HEADER,
    PASSWORD,
    USER,
    archived,
    good_csv,
    running,
    write_config,
)
from tests.test_mapping_e2e import mapped_config

HOSTILE_NAME = "<script>alert(1)<\\script>.csv"  # '/' cannot be in a file name; '\' opens no less
IMG_NAME = "<img src=x onerror=alert(1)>.csv"
PWN = "<script>document.body.className='pwned'</script>"  # changes the DOM if it ever runs (no comma: a CSV cell)


def page_of(inbox: Path) -> Path:
    return inbox / "report.html"


def text_of(inbox: Path) -> str:
    """The page's text without a browser (for waits); the browser has the last word."""
    return Dom(page_of(inbox).read_text(encoding="utf-8")).text if page_of(inbox).is_file() else ""


def once(config_path: Path) -> None:
    with pipeline_session(config.load(config_path)) as pipeline:
        pipeline.once(threading.Event())


def test_the_page_a_person_sees_after_once(tmp_path, emu):
    config_path = write_config(tmp_path, emu)
    inbox = tmp_path / "inbox"
    (inbox / "good.csv").write_text(good_csv("ann", "bob"), encoding="utf-8")
    os.utime(inbox / "good.csv", (1, 1))  # oldest: sent first
    hostile = (
        HEADER + "ok1,First,Last,Year 7,Student,ok1@school.example\n"
        "O'Brien,Siobhan,O'Brien,Year 7,Student,not-an-email\n"
        "\n"  # a blank line: a spreadsheet row, not an import row
        f"pwn,A,B,{PWN},Student,pwn@school.example\n"
    )
    (inbox / HOSTILE_NAME).write_text(hostile, encoding="utf-8")
    os.utime(inbox / HOSTILE_NAME, (2, 2))
    (inbox / IMG_NAME).write_text(good_csv("cid"), encoding="utf-8")
    os.utime(inbox / IMG_NAME, (3, 3))

    once(config_path)

    assert [p.name for p in archived(inbox, "failed")] and len(archived(inbox, "processed")) == 2
    dom = Dom(dump_dom(page_of(inbox)))
    assert dom.all("script") == [] and dom.all("img") == [], "a name or message became markup"
    assert dom.all("body") == [{}], "a script ran"
    text = dom.text
    assert "Imports from this folder: inbox" in text
    assert "Checked A scheduled run sent the files" in text
    assert "No files are waiting." in text
    # Newest first: the <img> file, then the hostile one, then good.csv; names as text.
    assert text.index(IMG_NAME) < text.index(HOSTILE_NAME) < text.index("good.csv")
    assert (
        f"{HOSTILE_NAME}\n3 users processed. 1 user created. 0 users updated. 2 users failed.\n"
        "Roster changes: 3 added: ok1, O'Brien, pwn; 2 leavers: ann, bob | Failed | 1 | 0 | 2"
    ) in text
    assert (
        "good.csv\n2 users processed. 2 users created. 0 users updated. 0 users failed.\n"
        "Roster changes: 2 added: ann, bob | Imported | 2 | 0 | 0"
    ) in text
    # The failed rows: Infiniti's row, the spreadsheet line (header 1, blank line counted), username, reason.
    assert "Row | Spreadsheet line | Username | Reason" in text
    assert "| 2 | 3 | O'Brien | Field (emailAddress) is not a well-formed email address." in text
    assert f"| 3 | 5 | pwn | Library group ({PWN}) does not exist." in text
    assert f"Last successful import\n{IMG_NAME} on " in text
    # Links: relative, and each opens the archived file, its result and (when written) its failed-rows CSV.
    links = dom.links()
    assert links and all(not urllib.parse.urlsplit(h).scheme and not h.startswith("/") for h in links)
    targets = {inbox / urllib.parse.unquote(h) for h in links}
    assert all(t.is_file() for t in targets), targets
    failed_file = archived(inbox, "failed")[0]
    assert {failed_file, archive_names.result_path(failed_file), archive_names.failed_rows_path(failed_file)} <= targets
    assert {p for p in archived(inbox, "processed")} <= targets


def test_once_from_the_command_line_writes_local_times_with_the_zone(tmp_path, emu):
    config_path = write_config(tmp_path, emu)
    (tmp_path / "inbox" / "a.csv").write_text(good_csv("a"), encoding="utf-8")
    env = {**os.environ, "TZ": "Asia/Kolkata"}  # UTC+05:30: no UTC time can be mistaken for it
    result = subprocess.run(
        [sys.executable, "-m", "dropbox_sync", "--config", str(config_path), "once"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    text = text_of(tmp_path / "inbox")
    assert "Times are this computer's local time, IST (UTC+05:30)." in text
    stamp = json.loads(
        archive_names.result_path(archived(tmp_path / "inbox", "processed")[0]).read_text(encoding="utf-8")
    )["dropbox_sync"]["finished"]
    local = when.parse_iso(stamp).astimezone(dt.timezone(dt.timedelta(hours=5, minutes=30)))
    assert local.strftime("%d %b %Y %H:%M IST") in text.split("Recent imports")[1]


def test_the_page_stays_current_under_run(tmp_path, emu):
    config_path = write_config(tmp_path, emu, hold_retry_seconds=300)
    inbox = tmp_path / "inbox"
    with pipeline_session(config.load(config_path)) as pipeline, running(pipeline):
        wait_until(lambda: "Watching New files in this folder" in text_of(inbox))
        (inbox / "first.csv").write_text(good_csv("ann"), encoding="utf-8")
        wait_until(lambda: "first.csv\n1 users processed" in text_of(inbox) or "first.csv\n1 user" in text_of(inbox))
        assert "Last successful import\nfirst.csv on" in text_of(inbox)

        emu.inject("401", count=1000)
        (inbox / "second.csv").write_text(good_csv("bob"), encoding="utf-8")
        held = wait_until(lambda: (t := text_of(inbox)) and "Held Files are not being sent" in t and t)
        assert "credentials were rejected" in held
        assert "second.csv | sending/ | held: HTTP 401" in held  # waiting, with why
    text = text_of(inbox)
    assert "Held Files are not being sent" in text  # still held as it stopped: said first
    assert "Files waiting (1)" in text


def test_a_stopped_service_says_so(tmp_path, emu):
    inbox = tmp_path / "inbox"
    with pipeline_session(config.load(write_config(tmp_path, emu))) as pipeline, running(pipeline):
        wait_until(lambda: "Watching" in text_of(inbox))
    assert "Stopped The service stopped when this page was written." in text_of(inbox)


def test_a_burst_is_rendered_a_bounded_number_of_times_and_ends_current(tmp_path, emu):
    """300 files in one pass: the page is written at the start and at the end, not 300 times.

    The pages' clock is frozen (the seam ReportPages offers) so "no time has
    passed" is exact; the rest is the real pipeline and emulator."""
    cfg = config.load(write_config(tmp_path, emu, settle_seconds=0))
    inbox = tmp_path / "inbox"
    for number in range(300):
        (inbox / f"f{number:03}.csv").write_text(good_csv(f"u{number}"), encoding="utf-8")
        os.utime(inbox / f"f{number:03}.csv", (number + 1, number + 1))
    journal = Journal(tmp_path / "state" / "journal.sqlite3")
    pages = report.ReportPages(cfg.inboxes, journal, clock=lambda: 1000.0)
    try:
        pipeline = Pipeline(cfg, journal=journal, listeners=[pages.on_report])
        pages.start(pipeline)
        wait_until(lambda: pages.renders >= 1)
        pipeline.once(threading.Event())
        pages.stop()
    finally:
        journal.close()
    assert len(archived(inbox, "processed")) == 300
    assert pages.renders == 2, "one page at the start, one with the final state"
    text = text_of(inbox)
    assert "The last 50 at most, newest first." in text
    assert text.count("| Imported |") == 50 and text.index("f299.csv") < text.index("f250.csv")
    assert "f249.csv" not in text.split("Recent imports")[1]


def test_once_writes_its_page_at_the_end_and_during_a_run_longer_than_render_every(tmp_path, emu):
    """``once`` starts its pages with at_once=False: no render before its first uploads, so a
    short run writes the page once, at its end; a run still going after RENDER_EVERY shows
    it is under way. The pages' clock is the seam (frozen, then moved on by hand)."""
    cfg = config.load(write_config(tmp_path, emu, settle_seconds=0))
    inbox = tmp_path / "inbox"
    for number in range(3):
        (inbox / f"f{number}.csv").write_text(good_csv(f"u{number}"), encoding="utf-8")
    now = [1000.0]
    journal = Journal(tmp_path / "state" / "journal.sqlite3")
    pages = report.ReportPages(cfg.inboxes, journal, clock=lambda: now[0])
    pipeline = Pipeline(cfg, journal=journal, listeners=[pages.on_report])
    pages.start(pipeline, at_once=False)
    try:
        pipeline.once(threading.Event())
        assert pages.renders == 0, "no time passed on the pages' clock: nothing written yet"
        assert not page_of(inbox).exists()
        now[0] += report.RENDER_EVERY
        wait_until(lambda: pages.renders == 1)  # the thread looks every CHECK_EVERY
    finally:
        pages.stop()
        journal.close()
    assert pages.renders == 2, "the one a long run shows, then the final state"
    assert len(archived(inbox, "processed")) == 3 and "f2.csv" in text_of(inbox)


def test_once_rewrites_its_page_during_uploads_only_every_once_render_every(tmp_path, emu):
    """A rewrite while files upload delays them by about its own length (the page thread and
    the uploading one take turns at the GIL), so ``once``, a batch run read afterwards, keeps
    the 2 s cadence for services only: a run shorter than ONCE_RENDER_EVERY writes its page
    once, at its end. The pages' clock is the seam, as above."""
    cfg = config.load(write_config(tmp_path, emu, settle_seconds=0))
    with Session(cfg, once=True) as session:
        assert session.pages.render_every == report.ONCE_RENDER_EVERY > report.RENDER_EVERY
    with Session(cfg) as session:
        assert session.pages.render_every == report.RENDER_EVERY, "the service keeps its page fresh"
    inbox = tmp_path / "inbox"
    for number in range(3):
        (inbox / f"f{number}.csv").write_text(good_csv(f"u{number}"), encoding="utf-8")
    now = [1000.0]
    journal = Journal(tmp_path / "state" / "journal.sqlite3")
    pages = report.ReportPages(
        cfg.inboxes, journal, clock=lambda: now[0], render_every=report.ONCE_RENDER_EVERY, idle_refresh=1e9
    )
    pipeline = Pipeline(cfg, journal=journal, listeners=[pages.on_report])
    pages.start(pipeline, at_once=False)
    try:
        pipeline.once(threading.Event())
        now[0] += report.RENDER_EVERY
        pages.tick()  # what the thread does every CHECK_EVERY, done here
        assert pages.renders == 0, "2 s into a once run: no rewrite yet"
        now[0] += report.ONCE_RENDER_EVERY - report.RENDER_EVERY
        wait_until(lambda: pages.renders == 1)
    finally:
        pages.stop()
        journal.close()
    assert pages.renders == 2, "the one a long run shows, then the final state"


def test_a_link_planted_at_the_page_is_replaced_never_followed(tmp_path, emu):
    inbox = tmp_path / "inbox"
    outside = tmp_path / "precious.txt"
    outside.write_text("the service must never write here\n", encoding="utf-8")
    config_path = write_config(tmp_path, emu)
    page_of(inbox).symlink_to(outside)
    (inbox / "a.csv").write_text(good_csv("a"), encoding="utf-8")
    once(config_path)
    assert outside.read_text(encoding="utf-8") == "the service must never write here\n"
    assert not page_of(inbox).is_symlink() and "a.csv" in text_of(inbox)
    assert oct(page_of(inbox).stat().st_mode & 0o777) == oct(pagefile.PAGE_MODE)
    assert [p.name for p in inbox.iterdir() if pagefile.is_page_file(p.name, "report.html")] == ["report.html"], (
        "a temporary was left"
    )


def test_a_fifo_or_link_in_place_of_a_result_does_not_hang_or_leak(tmp_path, emu):
    config_path = write_config(tmp_path, emu)
    inbox = tmp_path / "inbox"
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({"details": {"1": "SECRET-DETAIL"}}), encoding="utf-8")
    (inbox / "a.csv").write_text(HEADER + "a,F,L,Nope,Student,a@school.example\n", encoding="utf-8")
    (inbox / "b.csv").write_text(HEADER + "b,F,L,Nope,Student,b@school.example\n", encoding="utf-8")
    once(config_path)
    first, second = archived(inbox, "failed")
    archive_names.result_path(first).unlink()
    os.mkfifo(archive_names.result_path(first))  # would block a plain open() for ever
    archive_names.result_path(second).unlink()
    archive_names.result_path(second).symlink_to(secret)
    once(config_path)  # nothing new to send: the final page is written all the same
    text = text_of(inbox)
    assert "Library group (Nope) does not exist" not in text and "SECRET-DETAIL" not in text
    assert text.count("| Failed | 0 | 0 | 1 | file") == 2  # no link to a result that is not a plain file


def test_the_page_is_never_an_import_whatever_include_says(tmp_path, emu):
    inbox = tmp_path / "inbox"
    config_path = write_config(tmp_path, emu, include=["*"], exclude=[])
    (inbox / "a.csv").write_text(good_csv("a"), encoding="utf-8")
    once(config_path)
    assert page_of(inbox).is_file()
    # A name the page writer takes for its own temporary, however it spells them.
    (inbox / ".report.html.0123456789abcdef.report.html.tmp").write_text("left by a crash", encoding="utf-8")
    once(config_path)  # the page and its temporaries are not files to send
    assert [p.name for p in archived(inbox, "processed")] == [archived(inbox, "processed")[0].name]
    assert archived(inbox, "failed") == []
    assert not (inbox / ".report.html.0123456789abcdef.report.html.tmp").exists(), "a crash's temporary is cleared"


def test_report_names_and_bounds_are_configurable(tmp_path, emu):
    inbox = tmp_path / "inbox"
    (inbox.parent / "inbox").mkdir()
    (inbox / "a.csv").write_text(good_csv("a"), encoding="utf-8")
    once(write_config(tmp_path, emu, report=""))
    assert not page_of(inbox).exists() and [p.name for p in inbox.iterdir() if p.suffix == ".html"] == []
    (inbox / "b.csv").write_text(good_csv("b"), encoding="utf-8")
    (inbox / "c.csv").write_text(good_csv("c"), encoding="utf-8")
    once(write_config(tmp_path, emu, report="Imports.htm", report_imports=1))
    text = Dom((inbox / "Imports.htm").read_text(encoding="utf-8")).text
    assert "The last 1 at most" in text and text.count("| Imported |") == 1
    for bad in ("../x.html", "sub/x.html", "x.csv", ".hidden.html", "a:b.html"):
        with pytest.raises(ConfigError, match="report must be a file name ending in .html"):
            config.load(write_config(tmp_path, emu, report=bad))
    for bad in (0, 1001, 2.5, True):
        with pytest.raises(ConfigError, match="report_imports must be a whole number from 1 to 1000"):
            config.load(write_config(tmp_path, emu, report_imports=bad))


def test_a_mapped_export_shows_the_export_row_its_line_and_username(tmp_path, emu):
    """The upload was a different CSV (mapped): failed rows are traced back to the export the
    school dropped (the result's export_rows), so the line is the one staff can open and fix."""
    sample = sis_exports.tass()
    config_path = mapped_config(tmp_path, emu, "TASS")
    (tmp_path / "inbox" / sample.name).write_bytes(sample.data)
    once(config_path)
    text = text_of(tmp_path / "inbox")
    ((username, line),) = sample.refused.items()
    assert f"| {line} | {username} |" in text, text


def test_held_files_show_why_and_the_command_that_releases_them(tmp_path, emu):
    inbox = tmp_path / "inbox"
    config_path = write_config(tmp_path, emu, shrink_guard=0.5)
    (inbox / "full.csv").write_text(good_csv(*[f"u{n}" for n in range(10)]), encoding="utf-8")
    once(config_path)
    (inbox / "O'Brien short.csv").write_text(good_csv("u1"), encoding="utf-8")
    once(config_path)
    held = [p.name for p in (inbox / "held").iterdir() if archive_names.is_archived_file(p.name)]
    assert len(held) == 1
    dom = Dom(dump_dom(page_of(inbox)))
    assert "Files held for approval (1)" in dom.text
    assert f'dropbox-sync approve "{held[0]}"' in dom.text
    assert "Held for approval: 1 rows, but the last file imported on this route had 10" in dom.text
    assert "| Held for approval |" in dom.text


def test_a_server_message_quoting_the_password_never_reaches_the_page(tmp_path, emu):
    # A server that quotes the password and hostile markup back (the emulator never would).
    reply = {
        "success": False,
        "summary": f"Password {PASSWORD} is wrong for {USER} {PWN}",
        "details": {"1": f"User failed: {PWN} {PASSWORD}"},
    }
    with ScriptedServer(Scripted(body=json.dumps(reply).encode())) as server:
        config_path = write_config(tmp_path, emu, url=server.url)
        (tmp_path / "inbox" / "a.csv").write_text(good_csv("a"), encoding="utf-8")
        once(config_path)
    page = page_of(tmp_path / "inbox").read_text(encoding="utf-8")
    assert PASSWORD not in page and urllib.parse.quote(PASSWORD, safe="") not in page
    dom = Dom(dump_dom(page_of(tmp_path / "inbox")))
    assert dom.all("script") == [] and dom.all("body") == [{}]
    assert f"Password *** is wrong for {USER} {PWN}" in dom.text
    assert f"| 1 | 2 | a | User failed: {PWN} ***" in dom.text


def test_the_demo_leaves_a_page_to_open(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "dropbox_sync", "demo"],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "TMPDIR": str(tmp_path)},
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (page,) = tmp_path.glob("dropbox-sync-demo-*/inbox/report.html")
    assert f"What office staff see, in a browser: {page.as_uri()}" in result.stdout
    text = Dom(page.read_text(encoding="utf-8")).text
    assert "Stopped" in text and "students.csv" in text
    assert "| 2 | 3 | t2002 | Field (emailAddress) is not a well-formed email address." in text


def test_a_page_that_cannot_be_written_is_logged_once_and_tried_again_later(tmp_path, emu):
    """Windows: a browser or scanner holding report.html makes the rename fail. Here a folder
    of that name does the same on Linux; the pages' clock is the seam, so "later" is exact."""
    from loguru import logger

    cfg = config.load(write_config(tmp_path, emu))
    inbox = tmp_path / "inbox"
    page_of(inbox).mkdir()
    messages: list[str] = []
    sink = logger.add(lambda m: messages.append(m.record["message"]), level="INFO")
    now = [1000.0]
    pages = report.ReportPages(cfg.inboxes, None, clock=lambda: now[0])
    pages._pipeline = Pipeline(cfg)  # its snapshots, without running it
    try:
        for _ in range(3):
            pages.tick()
        assert pages.renders == 0 and sum("cannot write report.html" in m for m in messages) == 1
        page_of(inbox).rmdir()
        now[0] += report.RETRY_FAILED - 1
        pages.tick()
        assert pages.renders == 0, "not before the retry is due"
        now[0] += 1
        pages.tick()
        assert pages.renders == 1 and "No imports from this folder yet." in text_of(inbox)
        assert any("report.html is written again" in m for m in messages)
    finally:
        logger.remove(sink)


def test_a_burst_waiting_is_counted_not_listed(tmp_path, emu):
    """10,000 files dropped at once must not make a 10,000-row page each time it is written."""
    cfg = config.load(write_config(tmp_path, emu))
    inbox = tmp_path / "inbox"
    for number in range(content.MAX_WAITING + 50):
        (inbox / f"w{number:04}.csv").write_text(good_csv(f"u{number}"), encoding="utf-8")
    html = report.render(content.gather(cfg.inboxes[0], None, "watching", None, report.utc_now()))
    text = Dom(html).text
    assert f"Files waiting ({content.MAX_WAITING + 50})" in text and "… and 50 more, sent in turn." in text
    assert text.count("| queued |") == content.MAX_WAITING


def test_an_idle_watching_page_is_rewritten_now_and_then_so_its_time_shows_the_service_lives(tmp_path, emu):
    cfg = config.load(write_config(tmp_path, emu))
    now = [1000.0]
    pages = report.ReportPages(cfg.inboxes, None, clock=lambda: now[0])
    pipeline = Pipeline(cfg)  # its snapshots and activity, without running it
    pages._pipeline = pipeline
    pipeline.activity = "watching"
    pages.tick()
    now[0] += report.IDLE_REFRESH - 1
    pages.tick()
    assert pages.renders == 1, "nothing changed: no rewrite"
    now[0] += 1
    pages.tick()
    assert pages.renders == 2, "an idle service still shows it is alive"
    pipeline.activity = "stopped"
    pages.tick()
    now[0] += 10 * report.IDLE_REFRESH
    pages.tick()
    assert pages.renders == 3, "a stopped service's page says so once, then stays"


def test_a_name_or_reason_that_is_not_utf8_never_stops_the_page(tmp_path, emu):
    """A reason or name from anywhere (a worker message quoting a raw Linux name) may hold
    surrogates; the page shows U+FFFD for them instead of failing to be written."""
    cfg = config.load(write_config(tmp_path, emu))
    raw = b"caf\xe9.csv".decode("utf-8", "surrogateescape")
    snapshot = InboxSnapshot(
        "inbox", tmp_path / "inbox", False, f"held because of {raw}", {raw: f"{raw} is open"}, raw, 0.0
    )
    html = report.render(content.gather(cfg.inboxes[0], snapshot, "watching", None, report.utc_now()))
    pagefile.write_page(tmp_path / "inbox", "report.html", html)
    assert "held because of caf\ufffd.csv" in text_of(tmp_path / "inbox")


def test_each_import_shows_the_roster_changes_it_made(tmp_path, emu):
    inbox = tmp_path / "inbox"
    config_path = write_config(tmp_path, emu, leavers="report")
    (inbox / "monday.csv").write_text(good_csv("ann", "bob", "cid"), encoding="utf-8")
    once(config_path)
    tuesday = good_csv("bob", "dan") + "ann,First,Last,Year 8,Student,ann@school.example\n"
    (inbox / "tuesday.csv").write_text(tuesday, encoding="utf-8")
    once(config_path)
    text = Dom(dump_dom(page_of(inbox))).text
    assert "Roster changes: 1 added: dan; 1 changed: ann; 1 unchanged; 1 leaver: cid" in text
    assert "Roster changes: 3 added: ann, bob, cid" in text
    assert text.index("1 added: dan") < text.index("3 added: ann, bob, cid"), "newest first"
