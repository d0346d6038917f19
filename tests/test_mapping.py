"""Column mapping, the pure parts: templates, config keys, and the streaming row mapper."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import pytest

from dropbox_sync import config
from dropbox_sync.config.mapping import Column, build, parse_template
from dropbox_sync.errors import ConfigError, TemplateError
from dropbox_sync.pipeline import archive, archive_names, discover, mapper, retention, workdirs

# -- templates ---------------------------------------------------------------------


def test_a_template_is_literal_text_and_column_references():
    template = parse_template("Year {scholasticYear}{ rollClass }")
    assert template.parts == ("Year ", Column("scholasticYear"), Column("rollClass"))
    assert template.columns == ("scholasticYear", "rollClass")
    assert template.constant is None


def test_double_braces_are_literal_and_a_template_without_placeholders_is_a_constant():
    assert parse_template("{{x}} Student").constant == "{x} Student"
    assert parse_template("Student").constant == "Student"


def test_a_column_name_may_hold_dots_spaces_and_dashes_as_exports_write_them():
    assert parse_template("{ST.ENROLMENT_NUM}").columns == ("ST.ENROLMENT_NUM",)
    assert parse_template("{Home Class-2}").columns == ("Home Class-2",)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "is empty"),
        ("   ", "is empty"),
        ("{studCode", 'never closed (write "{{"'),
        ("studCode}", 'a "}" with no "{"'),
        ("{}", "empty placeholder"),
        ("{ }", "empty placeholder"),
        ("{code:05}", "a format spec"),
        ("{code!r}", "a conversion"),
        ("{row[0]}", "indexing"),
        ("{a{b}", 'a "{" inside a placeholder'),
    ],
)
def test_unknown_placeholder_syntax_is_refused_with_a_reason(text, says):
    with pytest.raises(TemplateError, match=None) as caught:
        parse_template(text)
    assert says in str(caught.value)


# -- config keys ---------------------------------------------------------------------

BASE = {
    "name": "students",
    "path": "inbox",
    "url": "https://library.example.edu/api/import/users",
    "username": "autoimport",
    "password": "s3cret-Password",
}
COLUMNS = {"username": "{studCode}", "library-group": "Year {scholasticYear}", "system-group": "Student"}


def parse(tmp_path: Path, **table):
    (tmp_path / "inbox").mkdir(exist_ok=True)
    return config.parse({"inbox": [{**BASE, **table}]}, source=tmp_path / "config.toml")


def test_columns_and_values_keep_their_order_and_reach_the_route(tmp_path):
    cfg = parse(
        tmp_path, columns={**COLUMNS, "emailAddress": "{emailAddress}"}, values={"library-group": {"Year 07": "Year 7"}}
    )
    (route,) = cfg.inboxes[0].routes
    assert route.mapping.output_names == ("username", "library-group", "system-group", "emailAddress")
    assert route.mapping.replacements("library-group") == {"Year 07": "Year 7"}


def test_without_columns_nothing_is_mapped(tmp_path):
    assert parse(tmp_path).inboxes[0].routes[0].mapping is None


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"columns": {**COLUMNS, "username": ""}}, 'inbox "students": columns.username is empty'),
        ({"columns": {**COLUMNS, "username": "{studCode"}}, 'columns.username has a "{" that is never closed'),
        ({"columns": {**COLUMNS, "formClass": "{year:02}"}}, "columns.formClass uses a format spec"),
        (
            {"columns": {**COLUMNS, "username": "{{studCode}}"}},
            'columns.username must name a column of the export, e.g. "{StudentID}": a fixed username would make every '
            'row the same user ("{{" and "}}" are literal braces: write "{studCode}")',
        ),
        ({"columns": {**COLUMNS, "username": "student"}}, "a fixed username would make every row the same user"),
        ({"columns": {**COLUMNS, "formClass": 7}}, "columns.formClass must be text in quotes"),
        ({"columns": {"username": "{a}", "library-group": "x"}}, "columns lacks system-group"),
        ({"columns": "{studCode}"}, "columns must be a table"),
        ({"columns": {**COLUMNS, "Username": "{b}"}}, 'columns.Username repeats column "username"'),
        (
            {"columns": COLUMNS, "values": {"yearLevel": {"7": "Year 7"}}},
            "values.yearLevel names a column that columns does not produce",
        ),
        ({"columns": COLUMNS, "values": {"library-group": {"07": 7}}}, 'values.library-group."07" must be text'),
        ({"columns": COLUMNS, "values": {"library-group": "Year 7"}}, "values.library-group must be a table"),
        ({"values": {"library-group": {"a": "b"}}}, "values needs [inbox.columns]"),
    ],
)
def test_a_mapping_mistake_is_one_config_line_naming_the_key(tmp_path, table, message):
    with pytest.raises(ConfigError) as caught:
        parse(tmp_path, **table)
    assert message in str(caught.value)
    assert str(caught.value).startswith('config.toml: inbox "students": ')
    assert "\n" not in str(caught.value)


def route(match: str, endpoint: str, **extra):
    return {"match": [match], "url": f"https://library.example.edu/api/import/{endpoint}", **extra}


def test_a_route_may_have_its_own_columns_and_values(tmp_path):
    groups = {"username": "{Code}", "library-group": "{Group}", "system-group": "Student", "group": "{Group}"}
    base = {k: v for k, v in BASE.items() if k != "url"}
    (tmp_path / "inbox").mkdir()
    cfg = config.parse(
        {
            "inbox": [
                {
                    **base,
                    "columns": COLUMNS,
                    "values": {"library-group": {"Year 07": "Year 7"}},
                    "route": [
                        route("users*", "users"),
                        route("*groups*", "userGroups", columns=groups),
                        route("seniors*", "users", values={"library-group": {"Year 12": "Seniors"}}),
                    ],
                }
            ]
        },
        source=tmp_path / "config.toml",
    )
    users, groups_route, seniors = cfg.inboxes[0].routes
    assert users.mapping.output_names == ("username", "library-group", "system-group")
    assert groups_route.mapping.output_names == ("username", "library-group", "system-group", "group")
    assert groups_route.mapping.replacements("library-group") == {}  # own columns: own values only
    # A route's [values.X] replaces the inbox's [values.X] as a whole, column by column.
    assert seniors.mapping.replacements("library-group") == {"Year 12": "Seniors"}
    assert users.mapping.replacements("library-group") == {"Year 07": "Year 7"}


def test_a_route_mistake_names_the_route(tmp_path):
    base = {k: v for k, v in BASE.items() if k != "url"}
    (tmp_path / "inbox").mkdir()
    raw = {"inbox": [{**base, "route": [route("*", "users", values={"library-group": {"a": "b"}})]}]}
    with pytest.raises(ConfigError, match=r'inbox "students": route #1 values needs \[inbox.columns\]'):
        config.parse(raw, source=tmp_path / "config.toml")
    raw = {"inbox": [{**base, "route": [route("*", "users", columns={**COLUMNS, "x": "{"})]}]}
    with pytest.raises(ConfigError, match=r"route #1 columns.x has"):
        config.parse(raw, source=tmp_path / "config.toml")


def test_check_exits_2_with_the_line_for_a_bad_template(tmp_path):
    (tmp_path / "inbox").mkdir()
    path = tmp_path / "config.toml"
    path.write_text(
        '[[inbox]]\nname = "students"\npath = "inbox"\nurl = "https://h.example/api/import/users"\n'
        'username = "autoimport"\npassword_env = "NO_SUCH_VARIABLE_HERE"\n'
        '[inbox.columns]\nusername = "{{studCode}"\n',
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, "-m", "dropbox_sync", "--config", str(path), "check"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert (
        done.stderr.strip().splitlines()[-1].startswith('dropbox-sync: config.toml: inbox "students": columns.username')
    )
    assert "Traceback" not in done.stderr


# -- the row mapper ------------------------------------------------------------------

TASS = build(
    {
        "username": "{studCode}",
        "library-group": "Year {scholasticYear}",
        "system-group": "Student",
        "emailAddress": "{emailAddress}",
        "formClass": "{scholasticYear}{rollClass}",
    },
    {"library-group": {"Year 07": "Year 7", "Year 12": "Seniors"}},
)


def run(mapping, text: str) -> tuple[mapper.MapResult, list[list[str]]]:
    sink = io.StringIO()
    result = mapper.map_rows(mapping, io.StringIO(text, newline=""), sink)
    return result, list(csv.reader(io.StringIO(sink.getvalue(), newline="")))


def test_rows_become_the_configured_columns_values_untouched_and_replaced():
    text = (
        " StudCode ,firstName,SCHOLASTICYEAR,rollClass,emailAddress\r\n"
        "0009069,Ann,07,B,ann@school.example\r\n"
        "12345678901234567890,Bo,12,A,\r\n"
        "0000001,Cy,10,C,cy@school.example\r\n"
    )
    result, rows = run(TASS, text)
    assert result.problem is None
    assert rows == [
        ["username", "library-group", "system-group", "emailAddress", "formClass"],
        ["0009069", "Year 7", "Student", "ann@school.example", "07B"],
        ["12345678901234567890", "Seniors", "Student", "", "12A"],
        ["0000001", "Year 10", "Student", "cy@school.example", "10C"],
    ]
    assert (result.rows_read, result.rows_sent) == (3, 3)


def test_commas_quotes_and_newlines_in_values_are_quoted_again_on_the_way_out():
    mapping = build({"username": "{id}", "library-group": "{g}", "system-group": "S", "lastName": "{n}"}, None)
    _, rows = run(mapping, 'id,g,n\n1,"Year 7","O\'Brien, ""Jo""\nsecond line"\n')
    assert rows[1] == ["1", "Year 7", "S", 'O\'Brien, "Jo"\nsecond line']


def test_an_empty_username_is_not_sent_and_listed_with_its_row_and_line_blank_rows_silently():
    text = "studCode,scholasticYear,rollClass,emailAddress\n0001,7,A,\n,8,B,\n\n,,,\n0005,9,C,\n  ,10,D,\n"
    result, rows = run(TASS, text)
    assert [r[0] for r in rows[1:]] == ["0001", "0005"]
    assert [(s.row, s.line, s.reason) for s in result.skipped] == [
        (2, 3, "username is empty"),
        (6, 7, "username is empty"),
    ]
    assert result.skipped_count == 2
    assert (result.row_map.export_row(1), result.row_map.export_row(2)) == (1, 5)
    assert result.row_map.line(2) == 6


def test_short_rows_are_padded_and_a_repeated_header_takes_its_first_column():
    mapping = build({"username": "{id}", "library-group": "{g}", "system-group": "S"}, None)
    result, rows = run(mapping, "id,g,id\n1\n2,Year 8,99\n")
    assert rows[1:] == [["1", "", "S"], ["2", "Year 8", "S"]]
    assert result.warnings == ["library-group is empty on line(s) 2 (the server will refuse those rows)"]


def test_a_missing_column_names_it_and_the_header_the_export_has():
    result, rows = run(TASS, "studCode,Year,emailAddress\n1,7,a@b.example\n")
    assert result.problem == (
        "The export lacks column(s) the mapping uses: scholasticYear, rollClass. "
        "The header has: studCode, Year, emailAddress. "
        "Fix the export or [inbox.columns] in the config."
    )
    assert rows == []


def test_a_semicolon_header_gets_a_hint():
    result, _ = run(TASS, "studCode;scholasticYear\n1;7\n")
    assert "separated by ';'" in result.problem


def test_an_empty_export_maps_to_an_empty_upload():
    result, rows = run(TASS, "")
    assert (result.problem, rows, result.rows_sent) == (None, [], 0)


def test_map_file_reads_a_bom_and_writes_utf8_without_one(tmp_path):
    source, target = tmp_path / "in.csv", tmp_path / "out.csv"
    source.write_bytes("\ufeffstudCode,scholasticYear,rollClass,emailAddress\r\n0009069,07,Ä,\r\n".encode())
    result = mapper.map_file(TASS, source, target)
    assert result.problem is None
    assert (
        target.read_bytes()
        == ("username,library-group,system-group,emailAddress,formClass\r\n0009069,Year 7,Student,,07Ä\r\n").encode()
    )


def test_map_file_leaves_no_output_behind_a_problem(tmp_path):
    source, target = tmp_path / "in.csv", tmp_path / "out.csv"
    source.write_text("other\n1\n", encoding="utf-8")
    assert mapper.map_file(TASS, source, target).problem is not None
    assert not target.exists()


def test_row_map_agrees_with_counting_by_hand():
    gaps = [1, 2, 5, 6, 7, 10, 30]
    row_map = mapper.RowMap(gaps)
    sent = [n for n in range(1, 60) if n not in gaps]
    assert [row_map.export_row(i) for i in range(1, len(sent) + 1)] == sent


def test_reported_rows_lead_back_to_the_export_and_its_usernames(tmp_path):
    sent = tmp_path / "sent.csv"
    text = "studCode,scholasticYear,rollClass,emailAddress\n0001,7,A,\n,8,B,\n0003,9,C,bad\n0004,9,C,\n"
    source = tmp_path / "in.csv"
    source.write_text(text, encoding="utf-8")
    result = mapper.map_file(TASS, source, sent)
    details = {
        "1": "User Created",
        "2": "Field (emailAddress) is not a well-formed email address.",
        "3": "User Updated",
    }
    rows = mapper.reported_rows(details, result.row_map, sent, TASS.username_index)
    assert rows == {
        "1": {"row": 1, "line": 2, "username": "0001"},
        "2": {"row": 3, "line": 4, "username": "0003"},
        "3": {"row": 4, "line": 5, "username": "0004"},
    }
    assert mapper.reported_rows(None, result.row_map, sent, 0) == {}
    # A reply is untrusted: odd row keys are skipped, never an exception (which would re-send the file).
    odd = {"²": "x", "9" * 5000: "y", "-1": "z", "1": "User Created"}
    assert mapper.reported_rows(odd, result.row_map, sent, TASS.username_index) == {
        "1": {"row": 1, "line": 2, "username": "0001"}
    }


# -- the sent copy in the work folders ----------------------------------------------------


def test_a_sent_copy_follows_its_file_and_is_never_taken_for_a_claimed_one(tmp_path):
    archive.ensure_folders(tmp_path)
    claimed = tmp_path / "sending" / "20261125T020000Z_students.csv"
    claimed.write_text("export\n")
    archive_names.sent_path(claimed).write_text("sent\n")
    assert discover.claimed_files(tmp_path) == [claimed]
    target = archive.archive(claimed, workdirs.PROCESSED)
    assert archive_names.sent_path(target).read_text() == "sent\n"
    assert not archive_names.sent_path(claimed).exists()


def test_a_user_file_named_like_a_sent_copy_is_still_sent(tmp_path):
    """Office staff may drop a sent copy back into the inbox: claimed, it must not be stranded."""
    archive.ensure_folders(tmp_path)
    claimed = tmp_path / "sending" / "20261126T020000Z_20261125T020000Z_students.csv.sent.csv"
    claimed.write_text("username,library-group,system-group\n")
    assert discover.claimed_files(tmp_path) == [claimed]


def test_retry_drops_the_old_sent_copy_and_prune_removes_it_with_its_file(tmp_path):
    import datetime as dt

    from dropbox_sync.commands.retry import retry_failed

    cfg = parse(tmp_path)
    inbox = cfg.inboxes[0].path
    archive.ensure_folders(inbox)
    failed = inbox / "failed" / "20261125T020000Z_students.csv"
    failed.write_text("export\n")
    archive_names.sent_path(failed).write_text("sent\n")
    moved, problems = retry_failed(cfg, [])
    assert (len(moved), problems) == (1, [])
    assert not archive_names.sent_path(failed).exists()
    assert (inbox / "students.csv").read_text() == "export\n"

    done = inbox / "processed" / "20261125T020000Z_old.csv"
    done.write_text("export\n")
    archive_names.sent_path(done).write_text("sent\n")
    retention.prune_processed(inbox, 1, dt.datetime(2026, 12, 30, tzinfo=dt.UTC))
    assert list((inbox / "processed").iterdir()) == []
