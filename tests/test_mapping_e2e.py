"""Column mapping end to end: real exports, the ready mappings of docs/mapping.md, the real
pipeline and the emulator over TLS; then what arrived, what was kept, and what the result says."""

from __future__ import annotations

import csv
import io
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from dropbox_sync.pipeline import archive_names
from tests import sis_exports
from tests.helpers import wait_until
from tests.support import (
    PASSWORD,
    USER,
    archived,
    result_of,
    running_service,
    write_config,
)


def mapped_config(tmp_path: Path, emu, system: str, **overrides) -> Path:
    """The test config with the ready mapping of ``system`` from docs/mapping.md after its [[inbox]]."""
    block = sis_exports.doc_mapping(system)
    # Plain keys of the block (source_encoding) belong to the [[inbox]] table itself.
    plain, _, tables = block.partition("\n[")
    path = write_config(tmp_path, emu, **overrides)
    keys = "".join(line + "\n" for line in plain.splitlines() if "=" in line and not line.startswith("#"))
    path.write_text(path.read_text(encoding="utf-8") + keys + "[" + tables, encoding="utf-8")
    return path


def run_one(tmp_path: Path, emu, system: str, sample: sis_exports.Sample) -> Path:
    """Drop the export in the inbox of a running service; the archived file once filed."""
    inbox = tmp_path / "inbox"
    with running_service(mapped_config(tmp_path, emu, system)):
        (inbox / sample.name).write_bytes(sample.data)
        wait_until(lambda: archived(inbox, "processed") + archived(inbox, "failed"), timeout=30)
    (filed,) = archived(inbox, "processed") + archived(inbox, "failed")
    return filed


def sent_rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"), newline="")))


SYSTEMS = {
    "TASS": sis_exports.tass,
    "Synergetic": sis_exports.synergetic,
    "SEQTA": sis_exports.seqta,
    "MAZE": sis_exports.maze,
}


@pytest.mark.parametrize("system", list(SYSTEMS))
def test_a_ready_mapping_sends_the_export_as_infiniti_needs_it(tmp_path, emu, system):
    sample = SYSTEMS[system]()
    filed = run_one(tmp_path, emu, system, sample)

    # The export is archived as it was dropped; what was sent is kept beside it, byte for byte.
    assert filed.read_bytes() == sample.data
    sent = archive_names.sent_path(filed)
    (upload,) = emu.uploads()
    assert upload.filename == sample.name
    assert sent.read_bytes() == upload.stored_file.read_bytes()
    assert not sent.read_bytes().startswith(b"\xef\xbb\xbf"), "the upload is UTF-8 without a BOM"

    # Infiniti holds the users with the groups and patron fields the mapping produced.
    users = {u.username: u for u in emu.users()}
    for username, fields in sample.expected.items():
        user = users[username]
        assert user.library_group == fields["library"]
        assert user.system_group == "Student"
        for column, value in fields.items():
            if column != "library":
                assert user.fields[column] == value, (username, column)
    refused = set(sample.refused)
    assert set(users) == set(sample.expected), "exactly the mapped users, refused rows excepted"
    assert not refused & set(users)

    result = result_of(filed)
    ours = result["dropbox_sync"]
    assert [s["line"] for s in ours["mapping"]["not_sent"]] == list(sample.not_sent_lines)
    assert ours["mapping"]["rows_sent"] == len(sample.expected) + len(sample.refused)
    if refused:
        # Infiniti's details stay verbatim; our rows say where each reported row is in the export.
        assert filed.parent.name == "failed"
        by_user = {row["username"]: row for row in ours["export_rows"].values()}
        for username, line in sample.refused.items():
            assert by_user[username]["line"] == line
            assert by_user[username]["row"] == line - 1
        assert set(ours["export_rows"]) == set(result["details"])
    else:
        assert filed.parent.name == "processed"


def test_leading_zeros_long_numbers_and_dates_pass_through_as_text(tmp_path, emu):
    inbox = tmp_path / "inbox"
    config = write_config(tmp_path, emu)
    config.write_text(
        config.read_text() + '[inbox.columns]\nusername = "{id}"\nlibrary-group = "Students"\n'
        'system-group = "Student"\nbarcode = "{card}"\nyearOfGraduation = "{grad}"\n',
        encoding="utf-8",
    )
    data = b"id,card,grad\r\n0000042,12345678901234567890,2031-12-01\r\n"
    with running_service(config):
        (inbox / "ids.csv").write_bytes(data)
        wait_until(lambda: archived(inbox, "processed"), timeout=30)
    (user,) = emu.users()
    assert (user.username, user.fields["barcode"], user.fields["yearOfGraduation"]) == (
        "0000042",
        "12345678901234567890",
        "2031-12-01",
    )


def test_an_export_missing_a_column_fails_naming_it_and_its_header_and_sends_nothing(tmp_path, emu):
    sample = sis_exports.maze(without="ST.YR_LEVEL")
    filed = run_one(tmp_path, emu, "MAZE", sample)
    assert filed.parent.name == "failed"
    assert filed.read_bytes() == sample.data
    summary = result_of(filed)["summary"]
    assert "lacks column(s) the mapping uses: ST.YR_LEVEL." in summary
    assert "The header has: ST.ENROLMENT_NUM, ST.SURNAME, ST.GIVEN_NAME, ST.CLASS." in summary
    assert emu.uploads() == []
    assert not archive_names.sent_path(filed).exists()


def test_the_emulator_keeps_every_patron_field_and_still_checks_email(emu):
    header = (
        "username,library-group,system-group,firstName,lastName,emailAddress,barcode,yearOfGraduation,"
        "formClass,enabled\n"
    )
    body = (
        header + "p1,Year 7,Student,Ann,Lee,ann@school.example,B001,2031,7A,TRUE\n"
        "p2,Year 8,Student,Bo,Ng,bo-at-school,B002,2030,8B,FALSE\n"
    ).encode()
    reply = httpx.post(
        emu.import_url("users"),
        files={"file": ("p.csv", body)},
        auth=(USER, PASSWORD),
        verify=ssl.create_default_context(cafile=str(emu.ca_file)),
        timeout=30,
    ).json()
    assert reply["details"]["2"].startswith("Field (emailAddress) is not a well-formed email address.")
    (user,) = emu.users()
    assert dict(user.fields) == {
        "username": "p1",
        "library-group": "Year 7",
        "system-group": "Student",
        "firstName": "Ann",
        "lastName": "Lee",
        "emailAddress": "ann@school.example",
        "barcode": "B001",
        "yearOfGraduation": "2031",
        "formClass": "7A",
        "enabled": "TRUE",
    }


# -- preview and check --------------------------------------------------------------------


def cli(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dropbox_sync", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_preview_prints_the_rows_as_infiniti_will_receive_them_and_sends_nothing(tmp_path, emu):
    config = mapped_config(tmp_path, emu, "SEQTA")
    export = tmp_path / "seqta_students.csv"
    export.write_bytes(sis_exports.seqta().data)
    done = cli(config, "preview", str(export), "--rows", "2")
    assert done.returncode == 0, done.stderr
    assert (
        "username,firstName,lastName,barcode,library-group,system-group\n"
        "owang,Olivia,Wang,S0001,Students,Student\n"
        "ikelly,Isla,Kelly,S0003,Students,Student\n---\n"
    ) in done.stdout
    assert "jrossi" not in done.stdout  # --rows 2
    assert "line 3: username is empty; not sent" in done.stdout
    assert "3 of 5 rows will be sent" in done.stdout
    assert emu.uploads() == []
    assert export.read_bytes() == sis_exports.seqta().data


def test_preview_of_a_cp1252_export_decodes_then_maps(tmp_path, emu):
    config = mapped_config(tmp_path, emu, "TASS")
    export = tmp_path / "students.csv"
    export.write_bytes(sis_exports.tass().data)
    done = cli(config, "preview", str(export))
    assert done.returncode == 0, done.stderr
    assert "0009070,Seán,O’Brien,Year 12,Student,sean.obrien@school.example,12C" in done.stdout
    assert "transcoded from cp1252" in done.stdout


def test_preview_of_an_export_missing_a_column_exits_1_naming_it(tmp_path, emu):
    config = mapped_config(tmp_path, emu, "MAZE")
    export = tmp_path / "maze.csv"
    export.write_bytes(sis_exports.maze(without="ST.CLASS").data)
    done = cli(config, "preview", str(export))
    assert done.returncode == 1
    assert "would go to failed/: The export lacks column(s) the mapping uses: ST.CLASS." in done.stdout
    assert emu.uploads() == []


def test_check_validates_the_mapping_against_the_files_waiting(tmp_path, emu):
    config = mapped_config(tmp_path, emu, "MAZE")
    inbox = tmp_path / "inbox"
    (inbox / "good.csv").write_bytes(sis_exports.maze().data)
    (inbox / "renamed.csv").write_bytes(sis_exports.maze(without="ST.ENROLMENT_NUM").data)
    done = cli(config, "check")
    assert done.returncode == 1
    assert "good.csv: would be uploaded" in done.stdout
    assert (
        "renamed.csv: would go to failed/: The export lacks column(s) the mapping uses: ST.ENROLMENT_NUM."
        in done.stdout
    )
    assert emu.uploads() == []
    assert sorted(p.name for p in inbox.iterdir() if p.is_file()) == ["good.csv", "renamed.csv"]


def test_send_maps_the_file_like_the_service(tmp_path, emu):
    config = mapped_config(tmp_path, emu, "Synergetic")
    export = tmp_path / "export.csv"
    export.write_bytes(sis_exports.synergetic().data)
    done = cli(config, "send", str(export))
    assert done.returncode == 1, done.stderr  # the Year 13 row is refused
    assert {u.username for u in emu.users()} == {"20231", "20232"}
    assert [r["library-group"] for r in sent_rows(emu.uploads()[0].stored_file)] == ["Year 7", "Year 11", "Year 13"]
    assert USER and PASSWORD not in done.stdout + done.stderr


def test_rows_left_out_still_lead_each_reported_row_to_its_line(tmp_path, emu):
    inbox = tmp_path / "inbox"
    config = write_config(tmp_path, emu)
    config.write_text(
        config.read_text() + '[inbox.columns]\nusername = "{ID}"\nlibrary-group = "Students"\n'
        'system-group = "Student"\nemailAddress = "{Mail}"\n',
        encoding="utf-8",
    )
    lines = [
        "ID,Mail",
        "a1,a1@school.example",
        ",nobody@school.example",
        "",
        "a4,not-an-email",
        "a5,a5@school.example",
        "  ,blank-username@school.example",
        "a7,also bad",
    ]
    with running_service(config):
        (inbox / "export.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        wait_until(lambda: archived(inbox, "failed"), timeout=30)
    (filed,) = archived(inbox, "failed")
    result = result_of(filed)
    # The server numbered the 4 rows it received; each leads back to the export's line.
    assert set(result["details"]) == {"1", "2", "3", "4"}
    assert result["dropbox_sync"]["export_rows"] == {
        "1": {"row": 1, "line": 2, "username": "a1"},
        "2": {"row": 4, "line": 5, "username": "a4"},
        "3": {"row": 5, "line": 6, "username": "a5"},
        "4": {"row": 7, "line": 8, "username": "a7"},
    }
    assert result["dropbox_sync"]["mapping"]["not_sent"] == [
        {"row": 2, "line": 3, "reason": "username is empty"},
        {"row": 6, "line": 7, "reason": "username is empty"},
    ]
    assert result["dropbox_sync"]["rows"] == 4
    assert {u.username for u in emu.users()} == {"a1", "a5"}


def test_each_route_maps_with_its_own_columns(tmp_path, emu):
    inbox = tmp_path / "inbox"
    config = write_config(tmp_path, emu)
    text = "".join(line + "\n" for line in config.read_text().splitlines() if not line.startswith("url ="))
    text += (
        f'[[inbox.route]]\nmatch = "users*"\nurl = "{emu.base_url}/api/import/users"\n'
        '[inbox.route.columns]\nusername = "{Code}"\nlibrary-group = "Year {Year}"\nsystem-group = "Student"\n'
        '[inbox.route.values.library-group]\n"Year 07" = "Year 7"\n'
        f'[[inbox.route]]\nmatch = "*groups*"\nurl = "{emu.base_url}/api/import/userGroups?tenantId=s1"\n'
        '[inbox.route.columns]\nusername = "{Code}"\nlibrary-group = "{Club}"\nsystem-group = "Student"\n'
        'group = "{Club}"\n'
    )
    config.write_text(text, encoding="utf-8")
    with running_service(config):
        (inbox / "users.csv").write_text("Code,Year\n0001,07\n", encoding="utf-8")
        (inbox / "groups.csv").write_text("Code,Club\n0001,Staff\n", encoding="utf-8")
        wait_until(lambda: len(archived(inbox, "processed")) == 2, timeout=30)
    (user,) = emu.users()
    assert (user.username, user.library_group) == ("0001", "Year 7")
    (member,) = emu.users("s1")
    assert dict(member.fields) == {
        "username": "0001",
        "library-group": "Staff",
        "system-group": "Student",
        "group": "Staff",
    }
