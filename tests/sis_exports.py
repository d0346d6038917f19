"""Realistic exports of the four student systems docs/mapping.md has ready mappings for.

Column names as the systems write them (their public documentation and schools'
scripts); each sample carries the trap it is known for: TASS codes with leading
zeros in a Windows-1252 file, a Synergetic file saved by Excel as "CSV UTF-8"
(a BOM), a SEQTA enrolment with no username yet, MAZE's dotted names. Every
sample has a row Infiniti refuses (a bad email or an unknown group), so the
tests can follow a server-reported row back to the export.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "mapping.md"


def doc_mapping(system: str) -> str:
    """The TOML block of docs/mapping.md headed ``# mapping: <system>``."""
    text = DOC.read_text(encoding="utf-8")
    for block in re.findall(r"```toml\n(.*?)```", text, re.DOTALL):
        if block.startswith(f"# mapping: {system}\n"):
            return block
    raise AssertionError(f"docs/mapping.md has no ```toml block headed '# mapping: {system}'")


@dataclass(frozen=True)
class Sample:
    name: str  # file name as the SIS drops it
    data: bytes
    # username -> fields Infiniti must hold afterwards (library group, system group, then columns)
    expected: dict[str, dict[str, str]] = field(default_factory=dict)
    not_sent_lines: tuple[int, ...] = ()  # spreadsheet lines with an empty username
    refused: dict[str, int] = field(default_factory=dict)  # username -> spreadsheet line Infiniti refuses


def _csv(lines: list[str], *, encoding: str = "utf-8", bom: bool = False) -> bytes:
    text = "\r\n".join(lines) + "\r\n"
    return ("\ufeff" if bom else "").encode("utf-8") + text.encode(encoding)


def tass() -> Sample:
    lines = [
        "studCode,firstName,surname,preferredName,scholasticYear,pcTutorGroup,rollClass,emailAddress",
        "0009069,Zoë,Müller,Zoë,07,PC07A,7A,zoe.muller@school.example",
        "0009070,Seán,O’Brien,Seán,12,PC12C,12C,sean.obrien@school.example",  # ’ is 0x92 in cp1252
        "0012345,José,García,Pepe,09,PC09B,9B,not-an-email",
        "0000007,Anna,Lee,Anna,10,PC10A,10A,",
    ]
    expected = {
        "0009069": {
            "library": "Year 7",
            "firstName": "Zoë",
            "lastName": "Müller",
            "formClass": "7A",
            "emailAddress": "zoe.muller@school.example",
        },
        "0009070": {"library": "Year 12", "firstName": "Seán", "lastName": "O’Brien", "formClass": "12C"},
        "0000007": {"library": "Year 10", "firstName": "Anna", "emailAddress": ""},
    }
    return Sample("students.csv", _csv(lines, encoding="cp1252"), expected, refused={"0012345": 4})


def synergetic() -> Sample:
    lines = [
        "StudentID,GivenName,Preferred,MiddleName,FamilyName,YearLevel,HomeClass",
        "20231,Mia,Mimi,Rose,Nguyễn,7,7 Blue",
        '20232,Liam,,James,"Smith, Jr",11,11 Gold',
        "20233,Ava,,,Brown,13,Alumni",  # no "Year 13" library group: Infiniti refuses the row
    ]
    expected = {
        "20231": {"library": "Year 7", "firstName": "Mia", "lastName": "Nguyễn", "formClass": "7 Blue"},
        "20232": {"library": "Year 11", "lastName": "Smith, Jr", "formClass": "11 Gold"},
    }
    return Sample("Synergetic Students.csv", _csv(lines, bom=True), expected, refused={"20233": 4})


def seqta() -> Sample:
    lines = [
        "Code,Firstname,Surname,Gender,Username",
        "S0001,Olivia,Wang,F,owang",
        "S0002,Noah,Patel,M,",  # enrolled today: no login name yet
        "S0003,Isla,Kelly,F,ikelly",
        "",
        "S0004,Jack,Rossi,M,jrossi",
    ]
    expected = {
        "owang": {"library": "Students", "firstName": "Olivia", "lastName": "Wang", "barcode": "S0001"},
        "ikelly": {"library": "Students", "barcode": "S0003"},
        "jrossi": {"library": "Students", "barcode": "S0004"},
    }
    return Sample("seqta_students.csv", _csv(lines), expected, not_sent_lines=(3,))


def maze(*, without: str | None = None) -> Sample:
    header = ["ST.ENROLMENT_NUM", "ST.SURNAME", "ST.GIVEN_NAME", "ST.YR_LEVEL", "ST.CLASS"]
    rows = [
        ["004417", "TAYLOR", "GRACE", "08", "B"],
        ["004418", "NGATA", "WIREMU", "12", "A"],
        ["004419", "SMITH", "EMMA", "07", "C"],
    ]
    if without is not None:
        drop = header.index(without)
        header = [h for i, h in enumerate(header) if i != drop]
        rows = [[c for i, c in enumerate(r) if i != drop] for r in rows]
    lines = [",".join(header), *(",".join(r) for r in rows)]
    expected = {
        "004417": {"library": "Year 8", "firstName": "GRACE", "lastName": "TAYLOR", "formClass": "08B"},
        "004418": {"library": "Year 12", "formClass": "12A"},
        "004419": {"library": "Year 7", "formClass": "07C"},
    }
    return Sample("MAZE_STUDENTS.CSV", _csv(lines), expected)
