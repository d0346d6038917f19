"""A work folder replaced by a junction, a symbolic link or a plain file holds the inbox.

On Windows there are no ``dir_fd`` calls: workdirs.py refuses a work folder
that is a reparse point (FILE_ATTRIBUTE_REPARSE_POINT: junctions and
symbolic links) each time it opens one, and holds the inbox saying so. Under
Wine, whichever kind of link Wine cannot make is skipped with the reason
(docs/windows-testing.md); the plain-file case needs nothing special.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from winpipeline import csv_bytes, good_row, write_config

from dropbox_sync import config
from dropbox_sync.errors import UnsafeFolder
from dropbox_sync.pipeline import workdirs
from dropbox_sync.pipeline.runner import Pipeline


def make_junction(link: Path, target: Path) -> None:
    import _winapi  # CPython's own (its test suite makes junctions with it)

    try:
        _winapi.CreateJunction(str(target), str(link))
    except OSError as exc:
        pytest.skip(f"this Windows (or Wine) cannot make a junction: {exc}")


def make_symlink(link: Path, target: Path) -> None:
    try:
        os.symlink(target, link, target_is_directory=True)
        os.lstat(link)
    except OSError as exc:
        # Wine 8 makes one it then cannot lstat (WinError 2): nothing to test against.
        pytest.skip(f"this Windows (or Wine) cannot make (or stat) a directory symbolic link: {exc}")


def once(config_path: Path):
    return Pipeline(config.load(config_path)).once(threading.Event())


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


@pytest.mark.parametrize("kind", ["junction", "symlink"])
def test_sending_as_a_link_holds_and_nothing_behind_it_moves(tmp_path: Path, emulator, kind: str) -> None:
    inbox = tmp_path / "inbox"
    config_path = write_config(tmp_path / "site", emulator, inbox=inbox)
    assert not once(config_path).held  # makes sending/, processed/, failed/
    elsewhere = tmp_path / "other-school-processed"
    elsewhere.mkdir()
    (elsewhere / "20261125T020000Z_staff.csv").write_bytes(csv_bytes(good_row("teacher")))
    before = snapshot(elsewhere)
    (inbox / "sending").rmdir()
    (make_junction if kind == "junction" else make_symlink)(inbox / "sending", elsewhere)
    info = os.lstat(inbox / "sending")
    assert info.st_file_attributes & 0x400, "a reparse point, as Windows reports it"
    (inbox / "new.csv").write_bytes(csv_bytes(good_row("n")))

    result = once(config_path)

    assert "is a link (or junction), not a folder" in result.held["lane"]
    assert snapshot(elsewhere) == before
    assert emulator.uploads() == [] and (inbox / "new.csv").is_file()
    with pytest.raises(UnsafeFolder), workdirs.work_folder(inbox, "sending"):
        pass


def test_a_plain_file_named_failed_holds_and_removing_it_resumes(tmp_path: Path, emulator) -> None:
    inbox = tmp_path / "inbox"
    config_path = write_config(tmp_path / "site", emulator, inbox=inbox)
    (inbox / "failed").write_bytes(b"not a folder\r\n")
    (inbox / "a.csv").write_bytes(csv_bytes(good_row("a")))

    result = once(config_path)

    assert "failed is a file, not a folder" in result.held["lane"]
    assert emulator.uploads() == [] and (inbox / "a.csv").is_file()
    (inbox / "failed").unlink()
    assert not once(config_path).held
    assert len(emulator.uploads()) == 1
