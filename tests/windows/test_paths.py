"""Windows path shapes the inbox configuration will meet.

Inbox paths come from technicians (drive letters, UNC shares, names in the
school's language) and file names from SIS exports; create, stat and rename
must work on all of them.
"""

from __future__ import annotations

import ntpath
import os
import unicodedata
from pathlib import Path, PureWindowsPath

import pytest

# Composed (NFC) on purpose: Windows keeps names as given, so the name read
# back must be the same code points.
NON_ASCII = "\u00c9l\u00e8ves_\u00f1.csv"  # "Élèves_ñ.csv"


def test_tmp_path_has_a_drive_letter(tmp_path: Path) -> None:
    drive, rest = ntpath.splitdrive(os.fspath(tmp_path))
    assert len(drive) == 2 and drive[1] == ":" and drive[0].isalpha(), drive
    assert rest.startswith("\\")


@pytest.mark.parametrize(
    "name",
    [
        NON_ASCII,
        "Cours pr\u00e9paratoire \u2013 Gar\u00e7ons & Filles (2026).csv",
        # A long file name (the component limit is 255); the whole path stays
        # below MAX_PATH so this holds on Windows without long-path support.
        "x" * 120 + ".csv",
    ],
    ids=["accents", "spaces-punctuation", "long-name"],
)
def test_create_stat_rename(tmp_path: Path, name: str) -> None:
    inbox = tmp_path / "inbox"
    archive = inbox / "processed"
    archive.mkdir(parents=True)
    data = "username,library-group,system-group\r\n\u00e9l\u00e8ve1,A,B\r\n".encode()

    path = inbox / name
    path.write_bytes(data)
    assert name in os.listdir(inbox)
    assert all(unicodedata.is_normalized("NFC", n) for n in os.listdir(inbox))
    assert os.stat(path).st_size == len(data)

    target = archive / ("20261125T020000Z_" + name)
    os.rename(path, target)
    assert not path.exists()
    assert target.read_bytes() == data
    assert os.stat(target).st_size == len(data)


def test_extended_length_path_beyond_max_path(tmp_path: Path) -> None:
    # Deep inbox trees on file servers exceed MAX_PATH (260); the \\?\ form
    # works on every Windows without the LongPathsEnabled policy.
    deep = Path("\\\\?\\" + os.fspath(tmp_path))
    for i in range(6):
        deep = deep / (f"level{i}_" + "d" * 40)
    os.makedirs(deep)
    path = deep / NON_ASCII
    path.write_bytes(b"ok")
    assert len(os.fspath(path)) > 300
    renamed = deep / ("renamed_" + NON_ASCII)
    os.rename(path, renamed)
    assert renamed.read_bytes() == b"ok"


@pytest.mark.parametrize(
    "path, drive, rest",
    [
        (r"\\server\share\x", r"\\server\share", r"\x"),
        (r"\\server\share\SIS\export\students.csv", r"\\server\share", r"\SIS\export\students.csv"),
        ("//server/share/x", "//server/share", "/x"),
        (r"D:\SIS\export", "D:", r"\SIS\export"),
        ("D:/SIS/export", "D:", "/SIS/export"),
    ],
)
def test_splitdrive_recognises_unc_and_drive_paths(path: str, drive: str, rest: str) -> None:
    assert os.path.splitdrive(path) == (drive, rest)
    assert os.path.isabs(path)


def test_pathlib_sees_unc_share_as_the_drive() -> None:
    p = PureWindowsPath(r"\\server\share\SIS\export")
    assert p.drive == r"\\server\share"
    assert p.anchor == "\\\\server\\share\\"
    assert p.is_absolute()
