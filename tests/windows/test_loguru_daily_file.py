"""Why log files carry the date in their name instead of being rotated.

loguru's rotation renames the current file when the new file would have the
same name; on Windows that rename fails while another process (an editor, a
backup agent, a technician's tail) holds the file (loguru #1170, #184). With
the date in the name, starting a new day's file renames nothing.

The test cannot wait for midnight and must not patch the clock, so the file
name carries the time down to the microsecond, which changes at each rotation
exactly as the date does at midnight; the rotation itself is triggered by a
switch the test flips.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from loguru import logger
from winhelpers import held_open

ERROR_SHARING_VIOLATION = 32


class RotateOnDemand:
    """A loguru rotation condition: rotate at the next message once armed."""

    def __init__(self) -> None:
        self.armed = False

    def __call__(self, message, file) -> bool:
        if self.armed:
            self.armed = False
            return True
        return False


def log_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.log"))


def test_new_dated_file_opens_while_previous_one_is_held(tmp_path: Path) -> None:
    rotate = RotateOnDemand()
    sink = logger.add(
        os.fspath(tmp_path / "dropbox-sync_{time:YYYY-MM-DD_HH-mm-ss_SSSSSS}.log"),
        rotation=rotate,
        format="{message}",
        catch=False,  # an error must reach the test, not loguru's stderr report
        encoding="utf-8",
    )
    try:
        logger.info("day one")
        (yesterday,) = log_files(tmp_path)
        with held_open(yesterday):
            rotate.armed = True
            logger.info("day two")
            logger.info("day two, again")
        files = log_files(tmp_path)
    finally:
        logger.remove(sink)

    assert len(files) == 2, files
    assert yesterday in files
    (today,) = [f for f in files if f != yesterday]
    assert yesterday.read_text(encoding="utf-8") == "day one\n"
    assert today.read_text(encoding="utf-8") == "day two\nday two, again\n"


def test_rotation_by_renaming_fails_while_the_file_is_held(tmp_path: Path) -> None:
    # The control experiment: same rotation, but a fixed name, so loguru must
    # rename the held file out of the way. This is the failure we design out.
    rotate = RotateOnDemand()
    path = tmp_path / "dropbox-sync.log"
    sink = logger.add(os.fspath(path), rotation=rotate, format="{message}", catch=False)
    try:
        logger.info("before")
        with held_open(path):
            rotate.armed = True
            with pytest.raises(PermissionError) as excinfo:
                logger.info("after")
    finally:
        logger.remove(sink)
    assert excinfo.value.winerror == ERROR_SHARING_VIOLATION
    assert path.read_text() == "before\n"
