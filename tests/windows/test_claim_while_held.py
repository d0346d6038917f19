"""Claiming a file another Windows process holds open: "not ready", never an error.

On Windows the claim (a rename into sending/) fails with WinError 32 while
the writer, an antivirus scanner or Excel has the file open (DESIGN 5
"Claim", 8.7). The product must treat that as "not ready yet": leave the file
in the inbox, say why in the inbox's status, log no error or traceback, and
send it once the other process lets go. The same holds at the other end,
when a file already sent cannot be moved into processed/ yet. Real
processes, the real pipeline.
"""

from __future__ import annotations

from pathlib import Path

from winhelpers import held_open, slow_writer, wait_until
from winpipeline import (
    PROCESS_TIMEOUT,
    LogRecords,
    archived,
    csv_bytes,
    finished,
    good_row,
    result_of,
    running_pipeline,
    sha256,
    write_config,
)

from dropbox_sync.pipeline import archive_names, discover

HELD_REASON = "is open in another program"


def waiting_reason(pipeline, name: str) -> str | None:
    return pipeline.workers[0].snapshot().waiting.get(name)


def claim_attempts(logs: LogRecords, name: str) -> list[str]:
    # The worker logs each failed claim at DEBUG ("...; will look again").
    return [r["message"] for r in logs.snapshot() if name in r["message"] and "will look again" in r["message"]]


def test_a_file_held_open_by_another_process_waits_and_is_sent_after_release(tmp_path: Path, emulator) -> None:
    inbox = tmp_path / "inbox"
    config_path = write_config(tmp_path / "site", emulator, inbox=inbox)
    data = csv_bytes(good_row("held1"), good_row("held2"))
    dropped = inbox / "held.csv"
    dropped.write_bytes(data)

    # Held before the pipeline starts: started after, the holder (a Python process, slow to
    # start under Wine on a loaded machine) could lose the race with settling, and the file
    # was sent before it was held (seen in CI).
    with held_open(dropped) as holder, LogRecords() as logs, running_pipeline(config_path) as pipeline:
        # The file settles (it does not change), the claim fails with
        # WinError 32, and the inbox's status says why it waits.
        reason = wait_until(
            lambda: (
                HELD_REASON in (waiting_reason(pipeline, "held.csv") or "") and waiting_reason(pipeline, "held.csv")
            ),
            timeout=PROCESS_TIMEOUT,
        )
        assert dropped.read_bytes() == data, "a failed claim must leave the file where it was"
        assert not list((inbox / "sending").iterdir())
        assert emulator.uploads() == []
        # Retried, not given up on: the claim is attempted again and again.
        wait_until(lambda: len(claim_attempts(logs, "held.csv")) >= 2, timeout=PROCESS_TIMEOUT)
        holder.release()
        wait_until(lambda: finished(inbox), timeout=PROCESS_TIMEOUT)
        assert "held.csv" not in pipeline.workers[0].snapshot().waiting

    # The strerror of WinError 32: Windows says "...being used by another
    # process", Wine "Sharing violation".
    assert "being used by another process" in reason or "Sharing violation" in reason, reason
    (done,) = archived(inbox, "processed")
    assert done.read_bytes() == data
    (upload,) = emulator.uploads()
    assert upload.stored_file.read_bytes() == data
    assert logs.problems() == [], "a held file is an expected situation, not an error"


def test_a_file_being_written_slowly_is_uploaded_once_and_complete(tmp_path: Path, emulator) -> None:
    inbox = tmp_path / "inbox"
    config_path = write_config(tmp_path / "site", emulator, inbox=inbox, settle_seconds=0.5)
    rows = [good_row(f"slow{n:02}") for n in range(30)]
    pieces = [csv_bytes(*rows[:10]), *(f"{row}\r\n".encode() for row in rows[10:])]
    complete = b"".join(pieces)
    assert complete == csv_bytes(*rows)
    target = inbox / "export.csv"

    with LogRecords() as logs, running_pipeline(config_path) as pipeline:
        with slow_writer(target) as writer:
            writer.write(pieces[0])
            # The writer pauses longer than settle_seconds with the file still
            # open: the file looks settled, but the claim must fail, not
            # upload the first third.
            wait_until(lambda: HELD_REASON in (waiting_reason(pipeline, "export.csv") or ""), timeout=PROCESS_TIMEOUT)
            for piece in pieces[1:]:
                writer.write(piece)
            assert emulator.uploads() == [], "nothing may be sent while the writer has the file open"
            writer.release()
        wait_until(lambda: finished(inbox), timeout=PROCESS_TIMEOUT)

    (upload,) = emulator.uploads()
    assert upload.stored_file.read_bytes() == complete
    (done,) = archived(inbox, "processed")
    assert done.read_bytes() == complete
    result = result_of(done)
    assert result["summary"].startswith("30 users processed. 30 users created.")
    assert result["dropbox_sync"]["sha256"] == sha256(complete)
    assert logs.problems() == []


def filing_reason(worker, name: str) -> str | None:
    """Why a sent file waits in sending/ (not the "retrying: ..." of before the upload)."""
    reason = worker.snapshot().waiting.get(name)
    return reason if reason and not reason.startswith("retrying") else None


def test_a_sent_file_held_in_sending_is_filed_once_released_without_an_error(tmp_path: Path, emulator) -> None:
    # An antivirus scanner, backup agent or search indexer opening the claimed
    # file just as the upload ends. (Found by this lane: the PermissionError
    # used to escape as an "unexpected error" with a traceback on every pass,
    # and the upload never reached the journal.) The first attempt gets a 503 with
    # Retry-After, which leaves the claimed file in sending/ long enough to
    # open it; a handle in this process blocks the rename exactly as another
    # process's would (sharing modes are per handle).
    inbox = tmp_path / "inbox"
    config_path = write_config(tmp_path / "site", emulator, inbox=inbox, retry_first_seconds=0.2)
    data = csv_bytes(good_row("av1"))
    emulator.inject("503", retry_after=2)

    with LogRecords() as logs, running_pipeline(config_path) as pipeline:
        worker = pipeline.workers[0]
        (inbox / "scanned.csv").write_bytes(data)
        wait_until(lambda: [u for u in emulator.uploads() if u.status == 503], timeout=PROCESS_TIMEOUT)
        (claimed,) = wait_until(lambda: discover.claimed_files(inbox), timeout=PROCESS_TIMEOUT)
        with open(claimed, "rb"):
            wait_until(lambda: [u for u in emulator.uploads() if u.status == 200], timeout=PROCESS_TIMEOUT)
            # Sent and its result saved; the move into processed/ cannot happen yet.
            wait_until(lambda: filing_reason(worker, claimed.name) or logs.problems(), timeout=10)
            assert logs.problems() == [], "a held file is an expected situation, not an error"
            assert archive_names.result_path(claimed).is_file()
        wait_until(lambda: finished(inbox), timeout=PROCESS_TIMEOUT)
        last = worker.journal.last("lane", "processed")

    (done,) = archived(inbox, "processed")
    assert done.read_bytes() == data and result_of(done)["success"] is True
    assert [u.status for u in emulator.uploads()] == [503, 200], "sent once: never again because of the hold"
    assert last is not None and last.original == "scanned.csv", "the upload belongs in the journal (status)"
    assert logs.problems() == []
