"""Messages a person can act on: what a wrong file is, where the bad byte is, why a file waits."""

from __future__ import annotations

import io
import json
import zipfile

from dropbox_sync.cli import main
from tests.helpers import wait_until
from tests.support import HEADER, archived, good_csv, result_of, run_cli, running_service, write_config

WORKBOOK = "File is an Excel workbook, not a CSV: in Excel use Save As, CSV UTF-8"
OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # the first bytes of an .xls (Excel 97-2003) file


def xlsx() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as book:
        book.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types/>')
        book.writestr("xl/worksheets/sheet1.xml", "<worksheet/>")
    return buffer.getvalue()


def test_a_workbook_saved_as_csv_is_called_a_workbook(tmp_path, emu):
    # source_encoding set: a workbook must still not be "transcoded" into text.
    config_path = write_config(tmp_path, emu, settle_seconds=0, source_encoding="cp1252")
    inbox = tmp_path / "inbox"
    (inbox / "roster.csv").write_bytes(xlsx())
    (inbox / "old-excel.csv").write_bytes(OLE + bytes(600))
    checked = run_cli("--config", str(config_path), "check")
    assert checked.returncode == 1
    assert checked.stdout.count(WORKBOOK) == 2, checked.stdout
    assert main(["--config", str(config_path), "once"]) == 1
    summaries = {p.name.split("_", 1)[1]: result_of(p)["summary"] for p in archived(inbox, "failed")}
    assert all(s.startswith(WORKBOOK) for s in summaries.values()) and len(summaries) == 2
    assert emu.uploads() == [], "never sent"


def test_a_file_in_another_encoding_names_the_line_and_shows_the_text(tmp_path, emu):
    config_path = write_config(tmp_path, emu, settle_seconds=0)
    inbox = tmp_path / "inbox"
    text = good_csv("a1", "a2") + "eleve1,Élodie,Lefèvre,Year 7,Student,\n"
    (inbox / "ansi.csv").write_bytes(text.encode("cp1252"))
    checked = run_cli("--config", str(config_path), "check")
    assert checked.returncode == 1
    expected = (
        "File is not valid UTF-8: line 4 has a character saved in another encoding (byte 0xc9, shown as "
        '\ufffd) here: "eleve1,\ufffdlodie,Lef\ufffdvre,Year 7,Stu"'
    )
    assert expected in checked.stdout
    assert "byte offset" not in checked.stdout
    assert main(["--config", str(config_path), "once"]) == 1
    (failed,) = archived(inbox, "failed")
    summary = result_of(failed)["summary"]
    assert (
        summary.startswith(expected)
        and "Excel: 'CSV UTF-8'" in summary
        and 'source_encoding (e.g. "cp1252")' in summary
    )


def test_status_says_a_file_is_queued_behind_one_being_retried(tmp_path, emu):
    config_path = write_config(tmp_path, emu, settle_seconds=0, retry_first_seconds=30, retry_max_seconds=60)
    inbox = tmp_path / "inbox"
    emu.inject("503", count=50)
    with running_service(config_path):
        (inbox / "first.csv").write_text(good_csv("f1"), encoding="utf-8")
        wait_until(lambda: emu.uploads(), timeout=30)
        (inbox / "second.csv").write_text(good_csv("s1"), encoding="utf-8")

        def reasons() -> dict[str, str]:
            done = run_cli("--config", str(config_path), "status", "--json")
            entries = json.loads(done.stdout)["inboxes"][0]["waiting"]
            return {e["file"].split("_", 1)[-1]: e["reason"] for e in entries}

        found = wait_until(lambda: (r := reasons()).get("second.csv", "").startswith("queued behind") and r, 30)
        text = run_cli("--config", str(config_path), "status").stdout
    assert found["second.csv"] == "queued behind first.csv (retrying)"
    assert found["first.csv"].startswith("retrying: ")
    assert "queued behind first.csv (retrying)" in text and "settling" not in text


def test_check_online_on_a_wrong_path_says_what_once_says_and_suggests_the_paths(tmp_path, emu):
    config_path = write_config(tmp_path, emu, settle_seconds=0, url=f"{emu.base_url}/api/import/user")
    (tmp_path / "inbox" / "users.csv").write_text(HEADER, encoding="utf-8")
    reason = (
        "HTTP 404: the import URL does not exist; check its path: Infiniti imports at /api/import/users "
        "or /api/import/userGroups?tenantId=TENANT"
    )
    checked = run_cli("--config", str(config_path), "check", "--online")
    assert checked.returncode == 3, checked.stdout + checked.stderr
    assert f"FAIL  inbox inbox: online check: {reason}" in checked.stdout
    once = run_cli("--config", str(config_path), "once")
    assert once.returncode == 3
    assert f"HELD: {reason}" in once.stderr
