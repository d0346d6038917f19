"""A partly failed file leaves ``<archived>.failed-rows.csv`` that a person fixes and drops back."""

from __future__ import annotations

import codecs
import csv
import io

from dropbox_sync.cli import main
from dropbox_sync.emulator import wording
from dropbox_sync.pipeline import archive_names
from tests.support import archived, good_csv, result_of, run_cli, with_routes, write_config

HEADER = ["username", "firstName", "lastName", "library-group", "system-group", "emailAddress", "notes"]
BAD_EMAIL = wording.BAD_EMAIL


def export_bytes() -> bytes:
    """What Excel's 'CSV UTF-8' writes: a BOM, CRLF, quotes around a cell with a line break,
    leading zeros, accents, and a blank line in the middle (which Infiniti skips, not counts)."""
    rows = [
        HEADER,
        ["0042", "Zoë", "Ng", "Year 7", "Student", "zoe@school.example", "plain"],
        ["0043", "Ana", "Lopes", "Year 7", "Student", "not-an-email", 'said "hi",\r\nthen left'],
        [],
        ["0044", "Émile", "Roy", "Year 99", "Student", "emile@school.example", ""],
        ["0045", "Bo", "Li", "Year 8", "Student", "bo@school.example", "ok"],
    ]
    text = io.StringIO(newline="")
    csv.writer(text, lineterminator="\r\n").writerows(rows)
    return codecs.BOM_UTF8 + text.getvalue().encode("utf-8")


def read_rows(path) -> list[list[str]]:
    with open(path, encoding="utf-8-sig", newline="") as handle:
        return list(csv.reader(handle))


def test_failed_rows_spreadsheet_fixed_and_dropped_back_imports_just_those_rows(tmp_path, emu):
    config_path = write_config(tmp_path, emu, settle_seconds=0)
    inbox = tmp_path / "inbox"
    (inbox / "students.csv").write_bytes(export_bytes())

    done = run_cli("--config", str(config_path), "once")
    assert done.returncode == 1, done.stderr
    (failed,) = archived(inbox, "failed")
    details = result_of(failed)["details"]
    assert set(details) == {"1", "2", "3", "4"}, "the blank line is not a row"
    rows_file = failed.with_name(failed.name + ".failed-rows.csv")
    assert rows_file.is_file()
    raw = rows_file.read_bytes()
    assert raw.startswith(codecs.BOM_UTF8), "Excel opens UTF-8 with accents intact only with a BOM"
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b""), "the export's CRLF, kept everywhere"
    rows = read_rows(rows_file)
    assert rows[0] == [*HEADER, "import_error"]
    assert rows[1] == [
        "0043",
        "Ana",
        "Lopes",
        "Year 7",
        "Student",
        "not-an-email",
        'said "hi",\r\nthen left',
        BAD_EMAIL + ".",
    ]
    assert rows[2] == [
        "0044",
        "Émile",
        "Roy",
        "Year 99",
        "Student",
        "emile@school.example",
        "",
        wording.library_group_missing("Year 99") + ".",
    ]
    assert len(rows) == 3

    # The log line names the first failed rows, where a spreadsheet shows them.
    assert f"row 2 (line 3): {BAD_EMAIL}" in done.stderr
    assert f"row 3 (line 5): {wording.library_group_missing('Year 99')}" in done.stderr
    # status and retry see one failed file, not two.
    assert main(["--config", str(config_path), "status"]) == 0

    # Office staff fix both rows in Excel (import_error left in) and drop the file back.
    fixed = [rows[0], [*rows[1][:5], "ana@school.example", *rows[1][6:]], [*rows[2][:3], "Year 8", *rows[2][4:]]]
    text = io.StringIO(newline="")
    csv.writer(text, lineterminator="\r\n").writerows(fixed)
    dropped = codecs.BOM_UTF8 + text.getvalue().encode("utf-8")
    (inbox / rows_file.name).write_bytes(dropped)
    done = run_cli("--config", str(config_path), "once")
    assert done.returncode == 0, done.stderr
    last = emu.uploads()[-1]
    assert last.success is True and last.summary == wording.summary(2, 2, 0, 0)
    sent = read_rows(last.stored_file)
    assert sent[0] == HEADER, "import_error is never sent to Infiniti"
    assert [row[0] for row in sent[1:]] == ["0043", "0044"]
    users = {u.username: u for u in emu.users()}
    assert users["0043"].fields["emailAddress"] == "ana@school.example"
    assert users["0044"].library_group == "Year 8"
    (processed,) = archived(inbox, "processed")
    assert processed.read_bytes() == dropped, "the archive keeps the file as dropped"


def test_retry_leaves_the_failed_rows_and_counts_one_file(tmp_path, emu, capsys):
    config_path = write_config(tmp_path, emu, settle_seconds=0)
    inbox = tmp_path / "inbox"
    (inbox / "students.csv").write_bytes(export_bytes())
    assert main(["--config", str(config_path), "once"]) == 1
    (failed,) = archived(inbox, "failed")
    assert main(["--config", str(config_path), "status", "--json"]) == 0
    assert '"failed_files": 1' in capsys.readouterr().out
    assert main(["--config", str(config_path), "retry"]) == 0
    assert sorted(p.name for p in inbox.iterdir() if p.is_file() and p.suffix == ".csv") == ["students.csv"]
    assert archive_names.failed_rows_path(failed).is_file(), "history, like the old result"
    assert main(["--config", str(config_path), "retry"]) == 0
    assert "nothing in failed/ to retry" in capsys.readouterr().out, "the rows file is not a failed file"


def test_failed_rows_in_the_source_encoding_and_routed_like_their_export(tmp_path, emu):
    config_path = write_config(tmp_path, emu, settle_seconds=0, source_encoding="cp1252")
    with_routes(config_path, emu)
    inbox = tmp_path / "inbox"
    export = good_csv("g1") + "g2,Renée,Brontë,Year 7,Student,not-an-email\n"
    (inbox / "groups.csv").write_bytes(export.encode("cp1252"))
    assert main(["--config", str(config_path), "once"]) == 1
    (failed,) = archived(inbox, "failed")
    rows_file = archive_names.failed_rows_path(failed)
    raw = rows_file.read_bytes()
    assert "Renée,Brontë".encode("cp1252") in raw, "written back in the export's encoding"
    assert raw.endswith(b"\n") and b"\r\n" not in raw

    fixed = raw.replace(b"not-an-email", b"renee@school.example")
    (inbox / rows_file.name).write_bytes(fixed)
    assert main(["--config", str(config_path), "once"]) == 0
    last = emu.uploads()[-1]
    assert (last.path, last.tenant) == ("/api/import/userGroups", "school1"), "routed as groups.csv was"
    assert last.summary == wording.summary(1, 1, 0, 0)
    assert {u.username: u.fields.get("lastName") for u in emu.users("school1")}["g2"] == "Brontë"


def test_a_whole_file_failure_has_no_failed_rows_file(tmp_path, emu):
    config_path = write_config(tmp_path, emu, settle_seconds=0)
    inbox = tmp_path / "inbox"
    (inbox / "x.csv").write_text("username\nx\n", encoding="utf-8")
    assert main(["--config", str(config_path), "once"]) == 1
    assert min(p.name for p in (inbox / "failed").iterdir()).endswith("_x.csv")
    assert not any(p.name.endswith(".failed-rows.csv") for p in (inbox / "failed").iterdir())


def test_with_a_column_mapping_the_failed_rows_are_the_exports_rows(tmp_path, emu):
    """A cp1252 TASS export, mapped: the refused row is written as the export had it (its own
    header, its own encoding), found through the result's trace of server rows to export rows."""
    from tests import sis_exports
    from tests.test_mapping_e2e import mapped_config, run_one

    sample = sis_exports.tass()
    filed = run_one(tmp_path, emu, "TASS", sample)
    assert filed.parent.name == "failed"
    rows_file = archive_names.failed_rows_path(filed)
    export = list(csv.reader(io.StringIO(sample.data.decode("cp1252"), newline="")))
    got = list(csv.reader(io.StringIO(rows_file.read_bytes().decode("cp1252"), newline="")))
    ((username, line),) = sample.refused.items()
    assert got[0] == [*export[0], "import_error"], "the export's own header, not the mapped one"
    assert len(got) == 2 and got[1][:-1] == export[line - 1] and username in got[1]
    assert got[1][-1] == BAD_EMAIL + ".", "Infiniti's reason, said once"

    # Dropped back as it is, it goes through the same mapping: one row sent, refused again.
    inbox = tmp_path / "inbox"
    config_path = mapped_config(tmp_path, emu, "TASS")
    (inbox / rows_file.name).write_bytes(rows_file.read_bytes())
    assert run_cli("--config", str(config_path), "once").returncode == 1
    last = emu.uploads()[-1]
    sent = list(csv.reader(io.StringIO(last.stored_file.read_text(encoding="utf-8"), newline="")))
    assert len(sent) == 2 and "import_error" not in sent[0] and sent[1][0] == username


def test_odd_row_numbers_in_a_reply_are_skipped_not_raised(tmp_path):
    """A reply is untrusted: '²' passes str.isdigit() and then int() raises; 5,000 digits too."""
    from dropbox_sync.pipeline import failed_rows

    export = tmp_path / "x.csv"
    export.write_text(good_csv("a", "b"), encoding="utf-8")
    details = {
        "²": "Bad. User failed to import: Bad. ",
        "9" * 5000: "Odd",
        "2": "Field (x) is required",
        "1": "User Created",
    }
    (row,) = failed_rows.write_beside(export, details)
    assert (row.number, row.reason) == (2, "Field (x) is required")
    assert failed_rows.write_beside(export, details, export_rows={"²": {"row": 1}, "2": {"row": True}}) == []
    assert failed_rows.for_log(export, details, {}, "inbox").startswith(" Failed: row 2 (line 3)")


def test_an_import_error_column_is_left_out_whatever_its_case_and_a_file_without_one_is_sent_as_it_is(tmp_path, emu):
    """The pre-flight reads the header anyway, so a file that cannot hold the column skips the
    copy without it (the common case: one read fewer per file). Any spelling Excel users type
    is still caught, and a header longer than what the pre-flight reads is always checked."""
    from dropbox_sync.config import load
    from dropbox_sync.pipeline import preflight
    from dropbox_sync.pipeline.prepare import prepare

    inbox_config = load(write_config(tmp_path, emu, settle_seconds=0)).inboxes[0]
    sending = tmp_path / "inbox" / "sending"
    sending.mkdir(parents=True)
    row = ["0042", "Zoë", "Ng", "Year 7", "Student", "zoe@school.example", "plain"]
    # A quoted header cell with a line break, longer than the pre-flight reads of the header.
    long_note = "note\n" + "n" * preflight.HEADER_LIMIT
    cases = {
        "plain.csv": ([HEADER, row], False),
        "upper.csv": ([[*HEADER, " IMPORT_ERROR "], [*row, "bad email"]], True),
        "long.csv": ([[*HEADER, long_note, "Import_Error"], [*row, "", "x"]], True),
    }
    for name, (rows, dropped) in cases.items():
        text = io.StringIO(newline="")
        csv.writer(text, lineterminator="\r\n").writerows(rows)
        (sending / name).write_bytes(text.getvalue().encode("utf-8"))
        upload = prepare(inbox_config, sending / name)
        try:
            assert (upload.path != sending / name) is dropped, name
            sent = read_rows(upload.path)
            assert all(cell.strip().lower() != "import_error" for cell in sent[0]), (name, sent[0])
            assert sent[1][:7] == row, name
        finally:
            upload.discard()
