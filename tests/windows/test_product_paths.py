"""The product's own path handling on Windows: file names, drive letters, UNC, site dirs.

Phase 1 (test_paths.py, test_platformdirs.py) proved what Windows and
platformdirs do; this proves what dropbox-sync does with it: names in the
school's languages and long names go through the real pipeline, a UNC inbox
is recognised as a network path (and watched by polling) without any network
access, and the product's site directories are under C:\\ProgramData.
"""

from __future__ import annotations

import dataclasses
import ntpath
import os
import time
import unicodedata
from pathlib import Path

import pytest
from winhelpers import wait_until
from winpipeline import (
    PROCESS_TIMEOUT,
    archived,
    csv_bytes,
    finished,
    good_row,
    original,
    result_of,
    running_pipeline,
    write_config,
)

from dropbox_sync import config, paths
from dropbox_sync.pipeline import archive_names, claim, watcher
from dropbox_sync.service import plan

NON_ASCII = "\u00c9l\u00e8ves_\u00f1_\u65e5\u672c.csv"  # "Élèves_ñ_日本.csv", composed (NFC)
LONG_ASCII = "SIS export - " + "x" * 100 + ".csv"  # 117 characters
# 80 characters, but 240 bytes in UTF-8: over the archive's name budget
# (archive_names.MAX_NAME_BYTES), though Windows counts only 80 UTF-16 units.
LONG_CJK = "\u5b66\u751f" * 38 + ".csv"
UNC = r"\\lane-no-such-server.invalid\share\SIS export"


def test_non_ascii_and_long_names_go_through_the_pipeline(tmp_path: Path, emulator) -> None:
    inbox = tmp_path / "inbox"
    # A technician writes Windows paths with forward slashes in TOML (no
    # escaping needed), as the DESIGN example "D:/SIS/export" does.
    config_path = write_config(tmp_path / "site", emulator, inbox=inbox, path=str(inbox).replace("\\", "/"))
    names = (NON_ASCII, LONG_ASCII, LONG_CJK)
    files = {name: csv_bytes(good_row(f"p{number}")) for number, name in enumerate(names)}
    assert len(os.fsencode(LONG_CJK)) > archive_names.MAX_NAME_BYTES

    with running_pipeline(config_path) as pipeline:
        watched = pipeline.workers[0].inbox.path
        for name, data in files.items():
            (inbox / name).write_bytes(data)
        wait_until(
            lambda: len(finished(inbox)) == len(files),
            timeout=PROCESS_TIMEOUT,
            message=f"not all filed: {os.listdir(inbox)}",
        )

    # The config's forward slashes became an ordinary drive-letter path.
    assert str(watched) == str(inbox) and not str(watched).startswith("\\\\"), watched
    assert ntpath.splitdrive(str(watched))[0].endswith(":")

    # Each file's content is distinct: match archives and uploads by content.
    done = {p.read_bytes(): p for p in archived(inbox, "processed")}
    uploads = {u.stored_file.read_bytes(): u for u in emulator.uploads()}
    assert not archived(inbox, "failed")
    assert set(done) == set(uploads) == set(files.values()), "each file archived and received, byte for byte"
    for data in files.values():
        assert unicodedata.is_normalized("NFC", done[data].name)
    for name in (NON_ASCII, LONG_ASCII):
        archived_as = done[files[name]]
        assert original(archived_as) == name
        assert result_of(archived_as)["dropbox_sync"]["file"] == name
        assert uploads[files[name]].filename == name, "the server receives the name as the multipart filename"
    # The name over the budget is shortened in the middle of its stem for the
    # archive, keeping its extension; the full name is kept beside it (issue 11
    # item 12), so the result, the upload and routing carry the name as dropped.
    shortened = original(done[files[LONG_CJK]])
    assert shortened != LONG_CJK and shortened.endswith(".csv") and LONG_CJK.startswith(shortened[:-4])
    assert len(os.fsencode(shortened)) <= archive_names.MAX_NAME_BYTES
    assert result_of(done[files[LONG_CJK]])["dropbox_sync"]["file"] == LONG_CJK
    assert uploads[files[LONG_CJK]].filename == LONG_CJK
    assert claim.original_of(done[files[LONG_CJK]]) == LONG_CJK


def test_a_local_drive_is_not_a_network_path(tmp_path: Path) -> None:
    assert watcher.is_network_path(tmp_path) is False
    assert watcher.is_network_path(Path(os.environ.get("SystemDrive", "C:") + "\\")) is False


@pytest.mark.parametrize("text", [UNC, UNC.replace("\\", "/")], ids=["backslashes", "forward-slashes"])
def test_a_unc_path_is_a_network_path_without_touching_the_network(text: str) -> None:
    # The server name cannot resolve (.invalid, RFC 2606): any attempt to
    # reach it would take seconds to fail, or fail the call.
    started = time.monotonic()
    assert watcher.is_network_path(Path(text)) is True
    assert time.monotonic() - started < 0.5


def test_an_extended_length_local_path_is_not_a_network_path(tmp_path: Path) -> None:
    # \\?\C:\... is how Windows spells a local path beyond MAX_PATH: what a
    # technician pastes for a deep folder tree, and what Path.resolve() (which
    # config.load applies to the inbox path) returns for one on a Windows
    # without long-path support (ntpath.realpath keeps the prefix when the
    # short form does not resolve). It is local: a native observer, and the
    # installer grants the service account on it.
    # \\?\UNC\server\share is the same prefix on a share.
    extended = Path("\\\\?\\" + str(tmp_path))
    assert watcher.is_network_path(extended) is False
    assert plan.is_network_path(extended) is False
    share = Path("\\\\?\\UNC\\lane-no-such-server.invalid\\share\\x")
    assert watcher.is_network_path(share) is True
    assert plan.is_network_path(share) is True


def test_a_unc_inbox_is_watched_by_polling_and_a_local_one_natively(tmp_path: Path, emulator) -> None:
    inbox = tmp_path / "inbox"
    cfg = config.load(write_config(tmp_path / "site", emulator, inbox=inbox))
    local = cfg.inboxes[0]
    # config.load requires the folder to exist; a share cannot exist here.
    share = dataclasses.replace(local, name="share", path=Path(UNC))
    found = watcher.Watcher([local, share], lambda name: None)
    assert found.kind("lane") == "native"
    assert found.kind("share") == "polling"


def test_site_dirs_are_under_programdata_and_writable(monkeypatch) -> None:
    monkeypatch.delenv(paths.CONFIG_ENV, raising=False)
    program_data = ntpath.normcase(os.environ.get("ProgramData", r"C:\ProgramData"))
    assert program_data == ntpath.normcase(r"C:\ProgramData")
    home = ntpath.join(program_data, "dropbox-sync")

    assert ntpath.normcase(str(paths.site_config_dir())) == home
    assert ntpath.normcase(str(paths.default_config_path())) == ntpath.join(home, "config.toml")
    for directory in (paths.state_dir(), paths.log_dir()):
        normalized = ntpath.normcase(str(directory))
        assert normalized == home or normalized.startswith(home + "\\"), directory
        assert directory.is_dir()
        probe = directory / f".lane-probe-{os.getpid()}"
        probe.write_text("writable", encoding="utf-8")
        try:
            assert probe.read_text(encoding="utf-8") == "writable"
        finally:
            probe.unlink()
