"""Claiming a file by renaming it fails while another process holds it open.

The pipeline's claim step (DESIGN.md 5, "Claim") treats that failure as "not
ready yet, retry later". This proves the failure really is PermissionError with
winerror 32 (ERROR_SHARING_VIOLATION) when a *separate Windows process* holds
the file, and that the same rename succeeds once the holder lets go.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from winhelpers import held_open

ERROR_SHARING_VIOLATION = 32


@pytest.mark.parametrize("mode", ["rb", "ab"], ids=["reader", "writer"])
def test_rename_fails_while_held_and_succeeds_after(tmp_path: Path, mode: str) -> None:
    inbox = tmp_path / "inbox"
    work = inbox / ".work"
    work.mkdir(parents=True)
    source = inbox / "students.csv"
    source.write_bytes(b"username,library-group,system-group\r\ns001,Students,Student\r\n")
    claimed = work / source.name

    with held_open(source, mode) as holder:
        with pytest.raises(PermissionError) as excinfo:
            os.rename(source, claimed)
        assert excinfo.value.winerror == ERROR_SHARING_VIOLATION
        # The failed claim must leave the file where it was, untouched.
        assert source.exists()
        assert not claimed.exists()

        holder.release()

        os.rename(source, claimed)

    assert claimed.read_bytes().startswith(b"username,")
    assert not source.exists()


def test_os_replace_reports_the_same_error(tmp_path: Path) -> None:
    # os.replace (MoveFileEx with MOVEFILE_REPLACE_EXISTING) is the other way
    # a claim or an atomic result write might move a file.
    source = tmp_path / "held.csv"
    source.write_bytes(b"x")
    with held_open(source), pytest.raises(PermissionError) as excinfo:
        os.replace(source, tmp_path / "moved.csv")
    assert excinfo.value.winerror == ERROR_SHARING_VIOLATION
