"""Where a Windows service keeps its config, state and logs.

A service running as LocalSystem has a user profile under System32, so the
product uses platformdirs' *site* directories (DESIGN.md 8.10). This proves
they resolve under the machine-wide ProgramData folder, not a user profile.
"""

from __future__ import annotations

import ntpath
import os

import platformdirs
import pytest

APP = "dropbox-sync"


def program_data() -> str:
    # The environment variable is set by Windows (and Wine) from the same
    # known folder (FOLDERID_ProgramData) that platformdirs asks for.
    return os.environ.get("ProgramData", r"C:\ProgramData")


def under(path: str, folder: str) -> bool:
    path, folder = ntpath.normcase(path), ntpath.normcase(folder)
    return path.startswith(folder.rstrip("\\") + "\\")


@pytest.mark.parametrize("kind", ["site_config_dir", "site_data_dir", "site_state_dir", "site_log_dir"])
def test_site_dirs_are_under_programdata(kind: str) -> None:
    path = getattr(platformdirs, kind)(APP, False)
    assert under(path, program_data()), path
    assert ntpath.normcase(program_data()) == ntpath.normcase(r"C:\ProgramData")
    assert APP in path.split("\\")


def test_site_data_dir_is_exactly_programdata_app() -> None:
    assert ntpath.normcase(platformdirs.site_data_dir(APP, False)) == ntpath.normcase(r"C:\ProgramData\dropbox-sync")


def test_user_dirs_differ_from_site_dirs() -> None:
    # The reason to prefer site dirs: user dirs follow the account's profile.
    assert not under(platformdirs.user_data_dir(APP, False), program_data())
