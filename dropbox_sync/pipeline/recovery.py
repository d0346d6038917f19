"""Putting right what a crash can leave in sending/ (the worker looks at start and on each pass).

A crash can stop the pipeline between any two of its steps; each leaves a
trace that says how far it got. A dot-name ending .tmp is a half-written
result or copy (ours, never a user's file); a kept original name without its
file is a claim that never happened; a result without its file is an archive
move cut between its two renames: the file went ahead, the result follows it.
"""

from __future__ import annotations

from pathlib import Path

from dropbox_sync.pipeline import workdirs
from dropbox_sync.pipeline.archive_names import ORIGINAL_SUFFIX, RESULT_SUFFIX
from dropbox_sync.pipeline.folder import TEMPORARY_SUFFIX
from dropbox_sync.pipeline.workdirs import FAILED, PROCESSED, SENDING
from dropbox_sync.pipeline.workfiles import folders_of


def remove_stale_temporaries(inbox: Path) -> list[Path]:
    """Delete half-written results and UTF-8 copies a crash left in sending/
    (ours, never user files: dot-names ending .tmp), and a kept original name
    whose claim never happened (a crash before the rename)."""
    removed = []
    with workdirs.inbox_folders(inbox) as folders:
        sending = folders.optional(SENDING)
        names = set(sending.names()) if sending is not None else set()
        for name in sorted(names):
            temporary = name.startswith(".") and name.endswith(TEMPORARY_SUFFIX)
            unclaimed = (
                name.startswith(".") and name.endswith(ORIGINAL_SUFFIX) and name[1 : -len(ORIGINAL_SUFFIX)] not in names
            )
            if temporary or unclaimed:
                try:
                    sending.unlink(name)
                    removed.append(inbox / SENDING / name)
                except OSError:
                    pass
    return removed


def orphan_results(inbox: Path) -> list[Path]:
    """Results in sending/ whose file was already archived (a crash between the two renames)."""
    with workdirs.inbox_folders(inbox) as folders:
        sending = folders.optional(SENDING)
        names = set(sending.names()) if sending is not None else set()
    return [
        inbox / SENDING / name
        for name in sorted(names)
        if name.endswith(RESULT_SUFFIX) and name[: -len(RESULT_SUFFIX)] not in names
    ]


def reunite_orphan_result(result: Path) -> Path | None:
    """Put an orphan result beside its archived file; None if the file is nowhere."""
    file_name = result.name[: -len(RESULT_SUFFIX)]
    with folders_of(result) as folders:
        sending = folders.get(SENDING)
        for destination in (PROCESSED, FAILED):
            directory = folders.optional(destination)
            if directory is not None and directory.exists(file_name) and not directory.exists(result.name):
                sending.rename(result.name, directory, result.name)
                return result.parent.parent / destination / file_name
    return None
