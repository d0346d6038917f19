"""keep_days never deletes anything young by any measure we have (issue 11, item 15).

The wall clock is injected into the worker (``wall``), the monotonic one too
(``clock``); the files and the emulator are real.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from pathlib import Path

from dropbox_sync import config
from dropbox_sync.pipeline import archive_names
from dropbox_sync.pipeline.retention import PRUNE_EVERY
from dropbox_sync.pipeline.worker import InboxWorker
from tests.support import archived, good_csv, write_config
from tests.test_settle import FakeClock

YEARS_AGO = dt.datetime(2019, 3, 4, 5, 6, 7, tzinfo=dt.UTC)


def prune_pass(cfg: config.Config, now: dt.datetime) -> None:
    """One pass of a freshly started worker whose wall clock says ``now`` (it prunes first)."""
    worker = InboxWorker(cfg.inboxes[0], clock=FakeClock(), wall=lambda: now)
    try:
        worker.cycle(threading.Event())
    finally:
        worker.close()


def age(path: Path, moment: dt.datetime) -> None:
    os.utime(path, (moment.timestamp(), moment.timestamp()))


def test_a_file_claimed_while_the_clock_was_years_behind_is_kept(tmp_path, emu):
    inbox = tmp_path / "inbox"
    cfg = config.load(write_config(tmp_path, emu, settle_seconds=0, keep_days=7))
    wall = [YEARS_AGO]
    clock = FakeClock()
    worker = InboxWorker(cfg.inboxes[0], clock=clock, wall=lambda: wall[0])
    stop = threading.Event()
    (inbox / "users.csv").write_text(good_csv("k1"), encoding="utf-8")
    try:
        worker.cycle(stop)
        (done,) = archived(inbox, "processed")
        assert done.name.startswith("20190304T050607Z_"), "stamped by the wrong clock"
        wall[0] = dt.datetime.now(dt.UTC)  # NTP puts the clock right; the service runs on
        clock.advance(PRUNE_EVERY + 1)
        worker.cycle(stop)
        assert done.exists(), "archived by this process a moment ago (its monotonic clock says so)"
    finally:
        worker.close()
    # The next run: every time we wrote then is years old, and so is the export's
    # mtime; only the kernel's change time (ctime, set by the archiving rename) is not.
    for path in (done, archive_names.result_path(done)):
        age(path, YEARS_AGO)
    prune_pass(cfg, dt.datetime.now(dt.UTC))
    assert done.exists() and archive_names.result_path(done).exists()


def test_only_what_is_old_by_every_measure_is_deleted(tmp_path, emu):
    inbox = tmp_path / "inbox"
    cfg = config.load(write_config(tmp_path, emu, settle_seconds=0, keep_days=7))
    now = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)  # so that even the ctime of today is old
    young = now - dt.timedelta(days=1)
    processed = inbox / "processed"
    processed.mkdir()

    def put(
        name: str,
        *,
        stamp: dt.datetime = YEARS_AGO,
        mtime: dt.datetime = YEARS_AGO,
        result_mtime: dt.datetime = YEARS_AGO,
        finished: dt.datetime = YEARS_AGO,
    ) -> Path:
        path = processed / f"{stamp.strftime('%Y%m%dT%H%M%SZ')}_{name}"
        path.write_text(good_csv(name), encoding="utf-8")
        iso = finished.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        archive_names.result_path(path).write_text(
            json.dumps({"success": True, "summary": "", "dropbox_sync": {"started": iso, "finished": iso}}),
            encoding="utf-8",
        )
        age(path, mtime)
        age(archive_names.result_path(path), result_mtime)
        return path

    old = put("old.csv")
    kept = [
        put("young-name.csv", stamp=young),
        put("young-mtime.csv", mtime=young),
        put("young-result-file.csv", result_mtime=young),
        put("young-result-times.csv", finished=young),
    ]
    sent_copy = archive_names.sent_path(kept[0])  # a companion goes with its file, never on its own
    sent_copy.write_text(good_csv("mapped"), encoding="utf-8")
    age(sent_copy, YEARS_AGO)
    orphan = archive_names.result_path(put("orphan.csv"))
    orphan.with_name(orphan.name[: -len(archive_names.RESULT_SUFFIX)]).unlink()  # its file was taken back (aftercare)
    failed = inbox / "failed" / old.name
    failed.parent.mkdir()
    failed.write_text("x", encoding="utf-8")
    age(failed, YEARS_AGO)
    prune_pass(cfg, now)
    assert not old.exists() and not archive_names.result_path(old).exists()
    assert not orphan.exists(), "a result whose file is gone goes by its own times"
    assert [p.exists() and archive_names.result_path(p).exists() for p in kept] == [True] * 4
    assert sent_copy.exists()
    assert failed.exists(), "failed/ is never pruned"
