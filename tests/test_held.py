"""Files the shrink guard put in held/: visible everywhere, approved by their name, or discarded."""

from __future__ import annotations

import json

from dropbox_sync import config
from dropbox_sync.notify.notifier import Notifier
from dropbox_sync.state.journal import Journal
from tests.helpers import wait_until
from tests.support import archived, good_csv, result_of, run_cli, write_config
from tests.test_notify import FakeClock, notify_table, service, smtp_server

BIG = good_csv(*[f"u{n}" for n in range(10)])
SMALL = good_csv("u1", "u2", "u3")


def held_setup(tmp_path, emu):
    """A 10-row import, then a 3-row users.csv that the shrink guard holds."""
    inbox = tmp_path / "inbox"
    config_path = write_config(tmp_path, emu, settle_seconds=0, shrink_guard=0.5)
    (inbox / "users.csv").write_text(BIG, encoding="utf-8")
    assert run_cli("--config", str(config_path), "once").returncode == 0
    (inbox / "users.csv").write_text(SMALL, encoding="utf-8")
    assert run_cli("--config", str(config_path), "once").returncode == 0
    (held,) = archived(inbox, "held")
    return config_path, inbox, held


def test_a_held_file_shows_in_status_and_status_json_and_is_approved_by_its_name(tmp_path, emu):
    config_path, inbox, held = held_setup(tmp_path, emu)
    todo = "if the export is right: dropbox-sync approve users.csv; if not: dropbox-sync discard users.csv"

    text = run_cli("--config", str(config_path), "status")
    assert text.returncode == 0, text.stderr
    assert "HELD FOR APPROVAL: 1 file(s) in held/" in text.stdout
    assert f"held/    {held.name}" in text.stdout and "3 rows, but the last file imported" in text.stdout
    assert f"what to do: {todo}" in text.stdout

    data = json.loads(run_cli("--config", str(config_path), "status", "--json").stdout)
    (entry,) = data["inboxes"][0]["held_files"]
    assert (entry["file"], entry["original"], entry["what_to_do"]) == (held.name, "users.csv", todo)
    assert entry["held_since"].endswith("Z") and "3 rows" in entry["reason"]
    written = json.loads((tmp_path / "state" / "status.json").read_text(encoding="utf-8"))
    assert written["inboxes"]["inbox"]["held_files"] == [entry], "status.json says the same"
    assert result_of(held)["summary"].endswith(todo.capitalize())

    done = run_cli("--config", str(config_path), "approve", "users.csv")
    assert done.returncode == 0, done.stderr
    assert f"{held.name} approved; it is sent next" in done.stdout
    assert run_cli("--config", str(config_path), "once").returncode == 0
    assert held.name in [p.name for p in archived(inbox, "processed")]
    assert "held_files" in json.loads(run_cli("--config", str(config_path), "status", "--json").stdout)["inboxes"][0]


def test_approving_a_file_older_than_one_imported_since_needs_force(tmp_path, emu):
    config_path, inbox, held = held_setup(tmp_path, emu)
    (inbox / "users.csv").write_text(good_csv(*[f"u{n}" for n in range(12)]), encoding="utf-8")
    assert run_cli("--config", str(config_path), "once").returncode == 0, "a newer full export went in"
    assert held.name not in [p.name for p in archived(inbox, "processed")], "in the same second: its own name"

    refused = run_cli("--config", str(config_path), "approve", held.name)
    assert refused.returncode == 1
    assert f"{held.name} NOT approved: users.csv was dropped after it and imported" in refused.stderr
    assert "would overwrite that newer data" in refused.stderr
    assert "dropbox-sync approve --force users.csv" in refused.stderr
    assert archived(inbox, "held") == [held], "still held"

    forced = run_cli("--config", str(config_path), "approve", "--force", "users.csv")
    assert forced.returncode == 0, forced.stderr
    assert "warning:" in forced.stderr and "overwrite that newer data (--force)" in forced.stderr
    assert archived(inbox, "held") == []


def test_discard_files_a_held_file_in_failed_saying_who_and_when(tmp_path, emu):
    config_path, inbox, held = held_setup(tmp_path, emu)
    done = run_cli("--config", str(config_path), "discard", "users.csv")
    assert done.returncode == 0, done.stderr
    assert f"{held.name} discarded; filed as {inbox / 'failed' / held.name}" in done.stdout
    assert archived(inbox, "held") == []
    (failed,) = archived(inbox, "failed")
    result = result_of(failed)
    facts = result["dropbox_sync"]
    assert result["success"] is False and facts["stage"] == "discarded"
    assert facts["discarded_by"] == "root" and facts["discarded_at"].endswith("Z")
    assert result["summary"].startswith(f"Not imported: discarded by root at {facts['discarded_at']}")
    assert (facts["rows"], facts["held_reason"][:26]) == (3, "Held for approval: 3 rows,"), "the held facts stay"
    assert len(emu.uploads()) == 1, "never sent"

    history = json.loads(run_cli("--config", str(config_path), "history", "--json").stdout)
    assert history[0]["outcome"] == "failed" and "discarded by root" in history[0]["summary"]
    assert history[0]["path"] == str(failed)
    again = run_cli("--config", str(config_path), "discard", "users.csv")
    assert again.returncode == 1 and "users.csv: not found in any held/ folder" in again.stderr


def test_the_email_digest_lists_a_held_file_with_what_to_do(tmp_path, emu):
    inbox = tmp_path / "inbox"
    with smtp_server() as (server, box):
        path = write_config(tmp_path, emu, settle_seconds=0, shrink_guard=0.5)
        path.write_text(path.read_text(encoding="utf-8") + notify_table(server.port), encoding="utf-8")
        cfg = config.load(path)
        journal = Journal(cfg.state_dir / "journal.sqlite3")
        clock = FakeClock()
        notifier = Notifier(
            cfg.notify, cfg.inboxes, journal=journal, state_dir=cfg.state_dir, now=clock, check_seconds=0.02
        ).start()
        try:
            with service(cfg, journal, notifier):
                (inbox / "users.csv").write_text(BIG, encoding="utf-8")
                wait_until(lambda: archived(inbox, "processed"))
                (inbox / "users.csv").write_text(SMALL, encoding="utf-8")
                wait_until(lambda: archived(inbox, "held"))
                wait_until(lambda: notifier.tick() == 0 and notifier.pending == 1)
                clock.advance(minutes=15)
                wait_until(lambda: box.messages)
        finally:
            notifier.stop()
            journal.close()
    (message,) = box.messages
    assert message["Subject"] == "[dropbox-sync] 1 file held for approval (inbox)"
    body = message.get_content()
    assert "1 file is held for approval in held/" in body
    assert "approve:      dropbox-sync approve users.csv" in body
    assert "discard:      dropbox-sync discard users.csv" in body
    assert "went to failed/" not in body


def test_a_long_name_is_approved_and_discarded_by_the_name_it_was_dropped_with(tmp_path, emu):
    from dropbox_sync.pipeline import archive_names

    inbox = tmp_path / "inbox"
    config_path = write_config(tmp_path, emu, settle_seconds=0, shrink_guard=0.5)
    name = ("Year 7 students for the autumn term " * 7)[:228] + "users.csv"
    assert len(name.encode()) > archive_names.MAX_NAME_BYTES
    (inbox / name).write_text(BIG, encoding="utf-8")
    assert run_cli("--config", str(config_path), "once").returncode == 0
    (inbox / name).write_text(SMALL, encoding="utf-8")
    assert run_cli("--config", str(config_path), "once").returncode == 0
    (held,) = archived(inbox, "held")
    assert held.name != f"{held.name[:16]}_{name}", "the archive name was shortened"
    (entry,) = json.loads(run_cli("--config", str(config_path), "status", "--json").stdout)["inboxes"][0]["held_files"]
    assert entry["original"] == name and entry["what_to_do"].endswith(f"dropbox-sync discard {name}")
    done = run_cli("--config", str(config_path), "discard", name)
    assert done.returncode == 0, done.stderr
    assert result_of(archived(inbox, "failed")[0])["dropbox_sync"]["file"] == name


class Crash(BaseException):
    """The process dying at this step, raised in-process (nothing in the pipeline catches a
    BaseException): a real kill -9 cannot be aimed between a file's result and its filing."""


def test_approve_refuses_while_a_newer_import_waits_in_sending_with_its_result(tmp_path, emu, monkeypatch):
    """A newer full export is imported and its result saved, then the process dies before the
    file is filed (its journal row is written with the filing: the next start writes it). Until
    that start the journal does not know the import; the folders do. Approving the older held
    file then must still be refused: it would be sent first and overwrite the newer data."""
    import threading

    from dropbox_sync.pipeline.filing import Filing
    from dropbox_sync.pipeline.worker import InboxWorker

    config_path, inbox, held = held_setup(tmp_path, emu)
    (inbox / "users.csv").write_text(good_csv(*[f"u{n}" for n in range(12)]), encoding="utf-8")
    cfg = config.load(config_path)
    journal = Journal(tmp_path / "state" / "journal.sqlite3")

    def dies_filing(*args, **kwargs):
        raise Crash

    monkeypatch.setattr(Filing, "_file", dies_filing)
    worker = InboxWorker(cfg.inboxes[0], journal=journal)
    try:
        try:
            worker.cycle(threading.Event())
        except Crash:
            pass
        else:
            raise AssertionError("the pass was to die filing the newer export")
    finally:
        journal.close()
    (sent,) = [p for p in (inbox / "sending").glob("*.csv")]
    assert result_of(sent)["dropbox_sync"]["outcome"] == "processed", "imported, not filed yet"

    refused = run_cli("--config", str(config_path), "approve", "users.csv")
    assert refused.returncode == 1, refused.stdout
    assert f"{held.name} NOT approved: users.csv was dropped after it and imported" in refused.stderr
    assert archived(inbox, "held") == [held], "still held"
