"""Routes by file name, the shrink guard, retention and other encodings."""

from __future__ import annotations

import datetime as dt
import os
import threading

import pytest

from dropbox_sync import config
from dropbox_sync.cli import main
from dropbox_sync.errors import ConfigError
from dropbox_sync.pipeline import archive_names, workfiles
from dropbox_sync.pipeline.runner import Pipeline
from dropbox_sync.pipeline.worker import InboxWorker
from dropbox_sync.state.journal import Journal
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


def test_routes_send_users_before_groups_and_leave_unmatched_files(tmp_path, emu):
    inbox = tmp_path / "inbox"
    config_path = write_config(tmp_path, emu, settle_seconds=0)
    with_routes(config_path, emu)
    files = {"year7-groups.csv": 1, "users-2026.csv": 2, "other.csv": 3}
    for name, age in files.items():
        (inbox / name).write_text(good_csv(name[:5]), encoding="utf-8")
        os.utime(inbox / name, (1_700_000_000 + age, 1_700_000_000 + age))  # groups file is the oldest
    Pipeline(config.load(config_path)).once(threading.Event())
    assert [(u.filename, u.path, u.tenant) for u in emu.uploads()] == [
        ("users-2026.csv", "/api/import/users", None),
        ("year7-groups.csv", "/api/import/userGroups", "school1"),
    ]
    assert (inbox / "other.csv").exists(), "a file matching no route stays where it is"
    endpoints = {result_of(p)["dropbox_sync"]["endpoint"] for p in archived(inbox, "processed")}
    assert endpoints == {emu.base_url + "/api/import/users", emu.base_url + "/api/import/userGroups?tenantId=school1"}


def test_route_config_mistakes_name_the_key(tmp_path, emu):
    config_path = write_config(tmp_path, emu)
    with open(config_path, "a", encoding="utf-8") as handle:
        handle.write('[[inbox.route]]\nmatch = "x*.csv"\nurl = "https://h/api"\n')
    with pytest.raises(ConfigError, match="url conflicts with \\[\\[inbox.route\\]\\]"):
        config.load(config_path)
    config_path = write_config(tmp_path, emu)
    with_routes(config_path, emu)
    text = config_path.read_text(encoding="utf-8").replace('match = "users*.csv"', 'pattern = "users*.csv"')
    config_path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match="inbox \"inbox\": route #1: unknown key 'pattern'"):
        config.load(config_path)


def test_shrink_guard_holds_a_suspiciously_small_file_until_approved(tmp_path, emu, capsys):
    inbox = tmp_path / "inbox"
    config_path = write_config(tmp_path, emu, settle_seconds=0, shrink_guard=0.5)
    (inbox / "users.csv").write_text(good_csv(*[f"u{n}" for n in range(10)]), encoding="utf-8")
    assert main(["--config", str(config_path), "once"]) == 0
    (inbox / "users.csv").write_text(good_csv("u1", "u2", "u3"), encoding="utf-8")  # 3 rows after 10
    assert main(["--config", str(config_path), "once"]) == 0
    (held,) = archived(inbox, "held")
    summary = result_of(held)["summary"]
    assert "Held for approval: 3 rows, but the last file imported on this route had 10" in summary
    assert len(emu.uploads()) == 1, "the small file was not sent"
    capsys.readouterr()
    assert main(["--config", str(config_path), "approve", held.name]) == 0
    assert main(["--config", str(config_path), "once"]) == 0
    assert len(emu.uploads()) == 2
    done = [p for p in archived(inbox, "processed") if p.name == held.name]
    assert done and result_of(done[0])["dropbox_sync"]["approved"] is True
    assert archived(inbox, "held") == [] and not list((inbox / "sending").iterdir())
    assert main(["--config", str(config_path), "approve", "nothing.csv"]) == 1


def test_keep_days_prunes_processed_but_never_failed(tmp_path, emu):
    # Every time a file has must be old for it to go (tests/test_retention.py has
    # each measure); the wall clock is a month ahead so that even today's ctime is.
    inbox = tmp_path / "inbox"
    cfg = config.load(write_config(tmp_path, emu, settle_seconds=0, keep_days=7))
    now = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
    young = (now - dt.timedelta(days=1)).strftime("%Y%m%dT%H%M%SZ")
    for folder in ("processed", "failed"):
        (inbox / folder).mkdir(parents=True, exist_ok=True)
        for stamp in ("20200101T000000Z", young):
            path = inbox / folder / f"{stamp}_old.csv"
            path.write_text("x", encoding="utf-8")
            archive_names.result_path(path).write_text("{}", encoding="utf-8")
            for each in (path, archive_names.result_path(path)):
                os.utime(each, (1_577_836_800, 1_577_836_800))  # 2020-01-01
    worker = InboxWorker(cfg.inboxes[0], wall=lambda: now)
    try:
        worker.cycle(threading.Event())
    finally:
        worker.close()
    assert [p.name for p in archived(inbox, "processed")] == [f"{young}_old.csv"]
    assert not (inbox / "processed" / "20200101T000000Z_old.csv.result.json").exists()
    assert len(archived(inbox, "failed")) == 2, "failed/ is never pruned"


@pytest.mark.parametrize("encoding", ["cp1252", "utf-16"])
def test_source_encoding_transcodes_to_utf8_and_archives_the_original(tmp_path, emu, encoding):
    inbox = tmp_path / "inbox"
    config_path = write_config(tmp_path, emu, settle_seconds=0, source_encoding=encoding)
    text = good_csv("zoe").replace("First,Last", "Zoë,Müller")
    original = text.encode(encoding)
    (inbox / "export.csv").write_bytes(original)
    Pipeline(config.load(config_path)).once(threading.Event())
    (done,) = archived(inbox, "processed")
    assert done.read_bytes() == original, "the archive keeps what was dropped"
    (upload,) = emu.uploads()
    assert upload.stored_file.read_bytes() == text.encode("utf-8"), "Infiniti gets UTF-8"
    assert result_of(done)["dropbox_sync"]["transcoded_from"] in ("cp1252", "utf-16")
    assert not [p for p in (inbox / "sending").iterdir()], "the UTF-8 copy is gone"


def test_a_file_not_in_the_source_encoding_fails_with_the_offset(tmp_path, emu):
    inbox = tmp_path / "inbox"
    config_path = write_config(tmp_path, emu, settle_seconds=0, source_encoding="utf-16")
    (inbox / "odd.csv").write_bytes(b"\xff\xfeu\x00\x00\xd8")  # a lone surrogate at the end
    Pipeline(config.load(config_path)).once(threading.Event())
    (failed,) = archived(inbox, "failed")
    assert "File is not valid utf-16" in result_of(failed)["summary"]
    assert emu.uploads() == []


def test_journal_keeps_rows_per_route(tmp_path):
    journal = Journal(tmp_path / "j.sqlite3")
    from dropbox_sync.state.journal import Attempt

    journal.record(Attempt("i", "f", "f", None, 1, "t", "t", 200, "processed", "ok", "https://h/u", 12))
    journal.record(Attempt("i", "g", "g", None, 1, "t", "t", 200, "failed", "no", "https://h/u", 1))
    assert journal.last_rows("i", "https://h/u") == 12
    assert journal.last_rows("i", "https://h/g") is None
    journal.close()


def test_a_crash_between_guard_result_and_move_still_ends_in_held(tmp_path, emu):
    inbox = tmp_path / "inbox"
    config_path = write_config(tmp_path, emu, settle_seconds=0)
    (inbox / "sending").mkdir()
    claimed = inbox / "sending" / "20261125T020000Z_users.csv"
    claimed.write_text(good_csv("g"), encoding="utf-8")
    workfiles.write_json_atomically(
        archive_names.result_path(claimed),
        {"success": False, "summary": "Held for approval: ...", "dropbox_sync": {"outcome": "guarded"}},
    )
    Pipeline(config.load(config_path)).once(threading.Event())
    assert [p.name for p in archived(inbox, "held")] == [claimed.name]
    assert emu.uploads() == []
