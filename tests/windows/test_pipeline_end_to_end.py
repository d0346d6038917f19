"""The whole job under Windows: the product's Pipeline.run, its Windows observer, TLS, results.

A real ``Pipeline.run`` watches an inbox on a drive-letter path with
watchdog's ``WindowsApiObserver`` (ReadDirectoryChangesW) and uploads to the
product's Infiniti emulator over TLS (certificate from trustme, verified
through ``ca_bundle``), with the password read from a ``password_file``.
Files are written the way Windows exporters write them (CRLF, Excel's BOM).
"""

from __future__ import annotations

import json
import ntpath
import os
import threading
import time
from pathlib import Path

from watchdog.observers.read_directory_changes import WindowsApiEmitter, WindowsApiObserver
from winhelpers import held_open, wait_until
from winpipeline import (
    PASSWORD,
    PROCESS_TIMEOUT,
    LogRecords,
    archived,
    csv_bytes,
    finished,
    good_row,
    original,
    result_of,
    running_pipeline,
    sha256,
    write_config,
)

from dropbox_sync.pipeline import watcher


def status_mode(path: Path) -> str:
    return json.loads(path.read_text(encoding="utf-8"))["mode"]


def emitter_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if isinstance(t, WindowsApiEmitter) and t.is_alive()]


def test_the_native_observer_on_windows_is_the_windows_api_observer() -> None:
    observer = watcher._native_observer()
    assert isinstance(observer, WindowsApiObserver)
    # 0.1 s, not watchdog's 1 s: events must flow during a slow copy
    # (tests/windows/test_watchdog_events.py shows why).
    assert observer.timeout == 0.1


def test_good_bad_row_and_missing_column_files_end_in_the_right_folders(tmp_path: Path, emulator) -> None:
    inbox = tmp_path / "inbox"
    drive, _ = ntpath.splitdrive(os.fspath(inbox))
    assert len(drive) == 2 and drive[1] == ":", f"not a drive-letter path: {inbox}"
    files = {
        # Excel's "CSV UTF-8": a BOM, CRLF line ends, and a leading zero that must survive.
        "good.csv": csv_bytes(good_row("s001"), good_row("0042"), bom=True),
        "bad-row.csv": csv_bytes("s003,First,Last,Year 7,Student,not-an-email"),
        "no-column.csv": b"username,library-group\r\ns004,Year 7\r\n",
    }
    config_path = write_config(tmp_path / "site", emulator, inbox=inbox)

    with running_pipeline(config_path) as pipeline:
        assert emitter_threads(), "the inbox is not watched by watchdog's Windows emitter"
        assert pipeline.workers[0].inbox.path == inbox
        started = time.monotonic()
        for name, data in files.items():
            (inbox / name).write_bytes(data)
        wait_until(
            lambda: len(finished(inbox)) == 3,
            timeout=PROCESS_TIMEOUT,
            message=f"not all of {sorted(files)} were filed: {os.listdir(inbox)}",
        )
        took = time.monotonic() - started
    # rescan_seconds is 120: only the observer's wake-up explains this.
    assert took < 60, f"took {took:.1f} s: the Windows observer did not wake the worker"

    (good,) = archived(inbox, "processed")
    assert original(good) == "good.csv"
    assert good.read_bytes() == files["good.csv"], "the archived file must be the dropped file, byte for byte"
    failed = {original(p): p for p in archived(inbox, "failed")}
    assert set(failed) == {"bad-row.csv", "no-column.csv"}
    assert not [p for p in inbox.iterdir() if p.is_file()], "nothing may be left in the inbox"
    assert not list((inbox / "sending").iterdir()), "nothing may be left claimed"

    # The server received exactly the dropped bytes (BOM and CRLF included).
    uploads = {u.filename: u for u in emulator.uploads()}
    assert set(uploads) == {"good.csv", "bad-row.csv"}, "pre-flight stops a file without required columns"
    for name in ("good.csv", "bad-row.csv"):
        assert uploads[name].stored_file.read_bytes() == files[name]
        assert uploads[name].sha256 == sha256(files[name])

    good_result = result_of(good)
    assert good_result["success"] is True
    assert good_result["summary"] == "2 users processed. 2 users created. 0 users updated. 0 users failed."
    facts = good_result["dropbox_sync"]
    assert facts["sha256"] == sha256(files["good.csv"]) and facts["bytes"] == len(files["good.csv"])
    assert facts["http_status"] == 200 and facts["file"] == "good.csv" and facts["outcome"] == "processed"
    assert {u.username for u in emulator.users()} == {"s001", "0042"}

    bad = result_of(failed["bad-row.csv"])
    assert bad["success"] is False and bad["dropbox_sync"]["stage"] == "upload"
    assert set(bad["details"]) == {"1"} and "emailAddress" in bad["details"]["1"]
    missing = result_of(failed["no-column.csv"])
    assert missing["success"] is False
    assert missing["summary"].startswith("Missing required column(s): system-group.")
    assert missing["dropbox_sync"]["stage"] == "preflight"

    # Results are UTF-8 JSON written with \n, and never carry the password.
    for path in (good, *failed.values()):
        raw = (path.parent / (path.name + ".result.json")).read_bytes()
        assert b"\r\n" not in raw and PASSWORD.encode() not in raw


def test_files_already_in_the_inbox_are_sent_at_start_up(tmp_path: Path, emulator) -> None:
    inbox = tmp_path / "inbox"
    config_path = write_config(tmp_path / "site", emulator, inbox=inbox)
    data = csv_bytes(good_row("early1"))
    (inbox / "early.csv").write_bytes(data)
    with running_pipeline(config_path):
        wait_until(lambda: finished(inbox), timeout=PROCESS_TIMEOUT)
    (done,) = archived(inbox, "processed")
    assert done.read_bytes() == data
    (upload,) = emulator.uploads()
    assert upload.stored_file.read_bytes() == data


def test_a_status_reader_holding_status_json_costs_a_warning_not_the_service(tmp_path: Path, emulator) -> None:
    # status.json is replaced (os.replace) every few seconds while a technician's
    # `dropbox-sync status` may be reading it. On Windows replacing a file that
    # another process has open fails; that must cost one warning, nothing else.
    inbox = tmp_path / "inbox"
    site = tmp_path / "site"
    status_file = site / "state" / "status.json"
    config_path = write_config(site, emulator, inbox=inbox)
    with LogRecords() as logs, running_pipeline(config_path) as pipeline:
        wait_until(status_file.is_file, timeout=PROCESS_TIMEOUT)
        with held_open(status_file):
            pipeline.write_status("lane-while-held")  # must not raise
            (inbox / "users.csv").write_bytes(csv_bytes(good_row("st1")))
            wait_until(lambda: finished(inbox), timeout=PROCESS_TIMEOUT)
            assert status_mode(status_file) != "lane-while-held", "a held file cannot have been replaced"
        pipeline.write_status("lane-after-release")
        # The supervisor rewrites it every few seconds too ("run").
        assert status_mode(status_file) in ("lane-after-release", "run")
    warnings = [r["message"] for r in logs.snapshot() if r["level"] == "WARNING"]
    assert any("cannot write" in w and "status.json" in w for w in warnings), warnings
    assert archived(inbox, "processed")
