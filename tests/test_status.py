"""``status`` shows what waits, what is held and why, and what last happened."""

from __future__ import annotations

import json

import pytest

from dropbox_sync.cli import main
from tests.helpers import wait_until
from tests.support import USER, emulator_with_password, good_csv, running_service, write_config


@pytest.fixture
def emu(tmp_path):
    emulator = emulator_with_password(tmp_path).start()
    yield emulator
    emulator.stop()


def status_json(config_path, capsys) -> dict:
    capsys.readouterr()
    assert main(["--config", str(config_path), "status", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_status_json_shows_a_held_inbox_with_its_reason(tmp_path, emu, capsys):
    config_path = write_config(tmp_path, emu)
    inbox = tmp_path / "inbox"
    (inbox / "good.csv").write_text(good_csv("g"), encoding="utf-8")
    assert main(["--config", str(config_path), "once"]) == 0
    emu.set_password(USER, "rotated")
    (inbox / "stuck.csv").write_text(good_csv("s"), encoding="utf-8")
    (inbox / "later.csv").write_text(good_csv("l"), encoding="utf-8")
    assert main(["--config", str(config_path), "once"]) == 3

    data = status_json(config_path, capsys)
    (box,) = data["inboxes"]
    assert "HTTP 401: credentials were rejected" in box["held"]
    assert data["service"]["running"] is False and data["service"]["mode"] == "once"
    waiting = {entry["file"].split("_", 1)[-1]: entry for entry in box["waiting"]}
    assert set(waiting) == {"stuck.csv", "later.csv"}
    assert waiting["stuck.csv"]["where"] == "sending/"
    assert "held" in waiting["stuck.csv"]["reason"]
    assert box["last_success"]["file"] == "good.csv"
    assert box["today"]["processed"] == 1 and box["today"]["held"] >= 1


def test_status_text_while_the_service_runs(tmp_path, emu, capsys):
    config_path = write_config(tmp_path, emu)
    with running_service(config_path):
        (tmp_path / "inbox" / "bad.csv").write_text("name\nx\n", encoding="utf-8")
        wait_until(lambda: status_json(config_path, capsys)["inboxes"][0]["failed_files"] == 1)
        assert status_json(config_path, capsys)["service"]["running"] is True
        capsys.readouterr()
        assert main(["--config", str(config_path), "status"]) == 0
        text = capsys.readouterr().out
    assert "service: running" in text
    assert "held: no" in text
    assert "last failure:" in text and "bad.csv: Missing required column(s)" in text
    assert "in failed/: 1 file(s)" in text


def test_status_before_anything_ran(tmp_path, emu, capsys):
    config_path = write_config(tmp_path, emu)
    (tmp_path / "inbox" / "new.csv").write_text(good_csv("n"), encoding="utf-8")
    capsys.readouterr()
    assert main(["--config", str(config_path), "status"]) == 0
    text = capsys.readouterr().out
    assert "no status yet" in text and "new.csv" in text
