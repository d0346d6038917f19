"""Starting in a bad state: a missing inbox folder, damaged state files.

A technician cannot watch the server: whatever the service finds at start-up
(an unmounted share, a journal cut in half by a full disk), it keeps working
the inboxes it can, loses nothing and says clearly what is wrong.
"""

from __future__ import annotations

import json
import shutil

from dropbox_sync.cli import main
from tests.helpers import wait_until
from tests.support import archived, dropbox_sync_process, finish, good_csv, write_config

# -- a missing inbox folder (an unmounted share) ------------------------------------------


def test_run_with_one_inbox_folder_missing_works_the_other_and_picks_it_up_when_it_appears(tmp_path, emu, capsys):
    config_path = write_config(tmp_path, emu, inboxes=2)
    share = tmp_path / "inbox2"
    shutil.rmtree(share)  # the share is not mounted yet at boot
    process = dropbox_sync_process("--config", str(config_path), "run")
    try:
        (tmp_path / "inbox" / "local.csv").write_text(good_csv("l1"), encoding="utf-8")
        wait_until(lambda: archived(tmp_path / "inbox", "processed"), timeout=30)
        assert process.poll() is None, "one missing folder must not stop the service"

        assert main(["--config", str(config_path), "status", "--json"]) == 0
        shown = {i["name"]: i for i in json.loads(capsys.readouterr().out)["inboxes"]}
        assert shown["inbox2"]["folder_missing"] is True and shown["inbox"]["folder_missing"] is False

        share.mkdir()  # mounted
        (share / "remote.csv").write_text(good_csv("r1"), encoding="utf-8")
        wait_until(lambda: archived(share, "processed"), timeout=30)
    finally:
        code, err = finish(process, stop=True)
    assert code == 0, err
    assert f"folder {share} is missing" in err and f"folder {share} is back" in err


def test_once_with_one_inbox_folder_missing_does_the_rest_and_exits_3_naming_it(tmp_path, emu, capsys):
    config_path = write_config(tmp_path, emu, inboxes=2)
    share = tmp_path / "inbox2"
    shutil.rmtree(share)
    (tmp_path / "inbox" / "local.csv").write_text(good_csv("l1"), encoding="utf-8")
    assert main(["--config", str(config_path), "once"]) == 3
    assert len(archived(tmp_path / "inbox", "processed")) == 1
    err = capsys.readouterr().err
    assert f'inbox "inbox2": not worked: folder {share} is missing' in err
    assert not share.exists(), "a missing inbox folder is never created by us (it may be a mount point)"


def test_check_names_a_missing_inbox_folder_as_a_problem(tmp_path, emu, capsys):
    config_path = write_config(tmp_path, emu, inboxes=2)
    shutil.rmtree(tmp_path / "inbox2")
    assert main(["--config", str(config_path), "check"]) == 1
    out = capsys.readouterr().out
    assert f"FAIL  inbox inbox2: folder {tmp_path / 'inbox2'} is missing" in out
    assert "ok    inbox inbox:" in out
