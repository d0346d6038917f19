"""Every command agrees on which files are ours, and prepares them the same way.

Regressions of issue 11 items 12 (long names routed by their shortened name),
13 (``once`` waiting for a file that matches no route) and 14 (UTF-8 files
garbled by ``source_encoding = "cp1252"``), on the real emulator and real folders.
"""

from __future__ import annotations

import codecs
import fnmatch
import itertools
import json
import os
import threading

import pytest

from dropbox_sync import config
from dropbox_sync.cli import main
from dropbox_sync.pipeline import archive_names, claim
from dropbox_sync.pipeline.runner import Pipeline
from dropbox_sync.pipeline.watcher import matches
from tests.support import (
    archived,
    emulator_with_password,
    good_csv,
    result_of,
    with_routes,
    write_config,
)


@pytest.fixture
def emu(tmp_path):
    emulator = emulator_with_password(tmp_path).start()
    yield emulator
    emulator.stop()


# -- item 12: route by the original name -------------------------------------------------


def test_a_long_name_is_routed_by_its_original_name_not_its_shortened_one(tmp_path, emu):
    inbox = tmp_path / "inbox"
    config_path = write_config(tmp_path, emu, settle_seconds=0)
    with_routes(config_path, emu)
    name = ("year7 " + "autumn term export " * 12)[:228] + "groups.csv"  # 238 bytes: the archive name is cut
    assert len(name.encode()) == 238 and len(name.encode()) > archive_names.MAX_NAME_BYTES
    (inbox / name).write_text(good_csv("long1"), encoding="utf-8")
    assert main(["--config", str(config_path), "once"]) == 0
    (upload,) = emu.uploads()
    assert (upload.path, upload.tenant) == ("/api/import/userGroups", "school1")
    assert upload.filename == name, "the server is told the name that was dropped"
    (done,) = archived(inbox, "processed")
    assert "groups" not in done.name, "the archive name is still the shortened one"
    facts = result_of(done)["dropbox_sync"]
    assert facts["file"] == name
    assert facts["endpoint"] == emu.base_url + "/api/import/userGroups?tenantId=school1"
    assert claim.original_of(done) == name, "the original name travels with the file"


def test_retry_gives_a_long_name_back_in_full(tmp_path, emu):
    inbox = tmp_path / "inbox"
    config_path = write_config(tmp_path, emu, settle_seconds=0)
    name = "Students export for the autumn term " * 6 + "broken.csv"
    (inbox / name).write_text("username\nx\n", encoding="utf-8")
    assert main(["--config", str(config_path), "once"]) == 1
    (failed,) = archived(inbox, "failed")
    assert result_of(failed)["dropbox_sync"]["file"] == name
    assert main(["--config", str(config_path), "retry"]) == 0
    assert (inbox / name).read_text(encoding="utf-8") == "username\nx\n"
    assert [p.name for p in (inbox / "failed").iterdir() if not p.name.endswith(archive_names.RESULT_SUFFIX)] == []


# -- item 13: every command agrees on what is ours ----------------------------------------


def test_once_does_not_wait_for_a_file_that_matches_no_route(tmp_path, emu, capsys):
    inbox = tmp_path / "inbox"
    config_path = write_config(tmp_path, emu, settle_seconds=0, once_retry_seconds=30)
    with_routes(config_path, emu)
    (inbox / "users-2026.csv").write_text(good_csv("u1"), encoding="utf-8")
    (inbox / "other.csv").write_text(good_csv("o1"), encoding="utf-8")
    stop = threading.Event()
    timer = threading.Timer(20, stop.set)  # the old code waited once_retry_seconds, then exit 3
    timer.start()
    try:
        code = main(["--config", str(config_path), "once"])
    finally:
        timer.cancel()
    assert code == 0, capsys.readouterr().err
    assert [u.filename for u in emu.uploads()] == ["users-2026.csv"]
    assert (inbox / "other.csv").exists(), "a file matching no route stays where it is"
    assert "ignoring other.csv: it matches no route" in capsys.readouterr().err


def test_check_and_status_agree_with_the_pipeline_on_what_is_ours(tmp_path, emu, capsys):
    inbox = tmp_path / "inbox"
    config_path = write_config(tmp_path, emu, settle_seconds=0, include=["*"])
    with_routes(config_path, emu)
    (inbox / "users-2026.csv").write_text(good_csv("u1"), encoding="utf-8")
    (inbox / "other.csv").write_text(good_csv("o1"), encoding="utf-8")
    (inbox / "report.html").write_text("<html>our own page</html>", encoding="utf-8")
    assert main(["--config", str(config_path), "check"]) == 0
    out = capsys.readouterr().out
    assert "users-2026.csv: would be uploaded" in out
    assert "other.csv: it matches no route" in out and "other.csv: would be uploaded" not in out
    assert "report.html" not in out, "our own report is never a candidate"
    assert main(["--config", str(config_path), "status", "--json"]) == 0
    (shown,) = json.loads(capsys.readouterr().out)["inboxes"]
    assert [w["file"] for w in shown["waiting"]] == ["users-2026.csv"]
    assert [(i["file"], i["reason"]) for i in shown["not_sent"]] == [
        ("other.csv", "matches no route of this inbox; left in place, not uploaded")
    ]
    assert main(["--config", str(config_path), "once"]) == 0
    assert [u.filename for u in emu.uploads()] == ["users-2026.csv"]
    assert (inbox / "report.html").exists() and (inbox / "other.csv").exists()


def test_send_routes_by_the_file_name_like_the_pipeline(tmp_path, emu, capsys):
    config_path = write_config(tmp_path, emu)
    with_routes(config_path, emu)
    groups = tmp_path / "year8-groups.csv"
    groups.write_text(good_csv("g1"), encoding="utf-8")
    assert main(["--config", str(config_path), "send", str(groups)]) == 0
    (upload,) = emu.uploads()
    assert (upload.path, upload.tenant) == ("/api/import/userGroups", "school1")
    stray = tmp_path / "notes.csv"
    stray.write_text(good_csv("n1"), encoding="utf-8")
    capsys.readouterr()
    assert main(["--config", str(config_path), "send", str(stray)]) == 1
    assert json.loads(capsys.readouterr().out) == {
        "success": False,
        "summary": 'Not uploaded: notes.csv matches no route of inbox "inbox".',
    }
    assert len(emu.uploads()) == 1


# -- item 14: UTF-8 files in a cp1252 inbox ------------------------------------------------


UTF8_TEXT = good_csv("zoe").replace("First,Last", "Zoë,Müller")


@pytest.mark.parametrize("bom", [b"", codecs.BOM_UTF8], ids=["no-bom", "bom"])
def test_a_utf8_file_in_a_cp1252_inbox_is_sent_unchanged(tmp_path, emu, bom):
    inbox = tmp_path / "inbox"
    config_path = write_config(tmp_path, emu, settle_seconds=0, source_encoding="cp1252")
    dropped = bom + UTF8_TEXT.encode("utf-8")
    (inbox / "office.csv").write_bytes(dropped)
    legacy = UTF8_TEXT.replace("zoe", "zoe2").encode("cp1252")
    (inbox / "sis.csv").write_bytes(legacy)
    os.utime(inbox / "sis.csv", (1_700_000_000, 1_700_000_000))  # the SIS file goes first
    Pipeline(config.load(config_path)).once(threading.Event())
    first, second = emu.uploads()
    assert first.stored_file.read_bytes() == legacy.decode("cp1252").encode("utf-8"), "cp1252 is transcoded"
    assert second.stored_file.read_bytes() == dropped, "valid UTF-8 is sent as it is"
    names = {archive_names.original_name(p.name): result_of(p)["dropbox_sync"] for p in archived(inbox, "processed")}
    assert names["sis.csv"]["transcoded_from"] == "cp1252"
    assert "transcoded_from" not in names["office.csv"]
    stored = {u.username: u.fields for u in emu.users()}
    assert stored["zoe"]["firstName"] == stored["zoe2"]["firstName"] == "Zoë", "no ZoÃ« in the library"


def test_check_and_send_transcode_like_the_pipeline(tmp_path, emu, capsys):
    config_path = write_config(tmp_path, emu, source_encoding="cp1252")
    legacy = tmp_path / "inbox" / "sis.csv"
    legacy.write_bytes(UTF8_TEXT.encode("cp1252"))
    assert main(["--config", str(config_path), "check"]) == 0
    assert "sis.csv: would be uploaded" in capsys.readouterr().out
    assert main(["--config", str(config_path), "send", str(legacy)]) == 0
    (upload,) = emu.uploads()
    assert upload.stored_file.read_bytes() == UTF8_TEXT.encode("utf-8")
    assert sorted(p.name for p in (tmp_path / "inbox").iterdir()) == ["sis.csv"], "send leaves nothing behind"


def test_status_shows_a_file_waiting_for_its_done_marker_and_once_does_not_wait(tmp_path, emu, capsys):
    inbox = tmp_path / "inbox"
    config_path = write_config(tmp_path, emu, settle_seconds=0, done_marker=".done", once_retry_seconds=30)
    (inbox / "half.csv").write_text(good_csv("h1"), encoding="utf-8")
    assert main(["--config", str(config_path), "status", "--json"]) == 0
    (shown,) = json.loads(capsys.readouterr().out)["inboxes"]
    assert [(w["file"], w["reason"]) for w in shown["waiting"]] == [
        ("half.csv", "waits for its done marker half.csv.done")
    ]
    assert shown["not_sent"] == []
    assert main(["--config", str(config_path), "once"]) == 0, "a file without its marker is not work yet"
    assert emu.uploads() == [] and (inbox / "half.csv").exists()
    (inbox / "half.csv.done").write_text("", encoding="utf-8")
    assert main(["--config", str(config_path), "once"]) == 0
    assert [u.filename for u in emu.uploads()] == ["half.csv"]


def test_a_long_name_keeps_its_full_name_through_held_and_approve(tmp_path, emu):
    inbox = tmp_path / "inbox"
    config_path = write_config(tmp_path, emu, settle_seconds=0, shrink_guard=0.5)
    name = ("Students export for the autumn term " * 7)[:230] + ".csv"
    (inbox / name).write_text(good_csv(*[f"u{n}" for n in range(10)]), encoding="utf-8")
    assert main(["--config", str(config_path), "once"]) == 0
    (inbox / name).write_text(good_csv("u1"), encoding="utf-8")  # 1 row after 10: held
    assert main(["--config", str(config_path), "once"]) == 0
    (held,) = archived(inbox, "held")
    assert claim.original_of(held) == name and result_of(held)["dropbox_sync"]["file"] == name
    assert main(["--config", str(config_path), "approve", held.name]) == 0
    assert main(["--config", str(config_path), "once"]) == 0
    assert [u.filename for u in emu.uploads()] == [name, name]
    assert sorted(claim.original_of(p) for p in archived(inbox, "processed")) == [name, name]


PATTERNS = ["*.csv", "*.CSV", "users*.csv", "*groups*.csv", "[!~]*.csv", "?x.txt", "*", "a[b-d]c", "*.[ct]sv"]
PATTERNS += ["[", "x|y", "(a)", "\\d*", "", "*.tmp", "~$*", ".*", "*\n*", "é*.csv"]
NAMES = ["a.csv", "A.CSV", "users1.csv", "MyGroups.CSV", "~$lock.csv", "ax.txt", "abc", "aec", "b.tsv", "[", "x|y"]
NAMES += ["(a)", "\\d1", "", "x.tmp", ".hidden", "a\nb", "É1.csv", "x.csv\n", "a.csvx"]


def test_include_and_exclude_patterns_mean_what_fnmatch_says_ignoring_case():
    """The patterns are matched as one compiled regex per set (a scan matches every name);
    the meaning stays fnmatch's, case ignored: any include and no exclude, regex characters
    and an unclosed bracket taken literally as fnmatch takes them, an empty set matching nothing."""

    def fnmatch_says(name, include, exclude):
        lowered = name.lower()
        found = any(fnmatch.fnmatchcase(lowered, p.lower()) for p in include)
        return found and not any(fnmatch.fnmatchcase(lowered, p.lower()) for p in exclude)

    for size in range(3):
        for include in itertools.combinations(PATTERNS, size):
            for exclude in [(), ("*.tmp",), ("~$*", ".*"), ("[",)]:
                for name in NAMES:
                    assert matches(name, include, exclude) == fnmatch_says(name, include, exclude), (name, include)
