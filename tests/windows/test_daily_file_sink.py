"""The product's log file sink (log.DailyFileSink) while other Windows processes hold its files.

Phase 1 (test_loguru_daily_file.py) showed why the date is in the file name:
renaming a held file fails on Windows. This proves our own sink: it writes
the day's file, opens the next day's file while another process (an editor,
a backup agent, a technician's ``Get-Content -Wait``) holds yesterday's, and
its retention pruning shrugs off a held file and deletes it once it is free.

The day comes from each message's record (as loguru passes it), so a test
sends a message dated tomorrow instead of waiting for midnight or patching
the clock.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from loguru import logger
from winhelpers import held_open

from dropbox_sync.log import DailyFileSink

TODAY = dt.date.today()


class Message(str):
    """What loguru hands a sink: the formatted text, with the record attached."""

    record: dict

    @classmethod
    def on(cls, day: dt.date, text: str) -> Message:
        message = cls(text + "\n")
        moment = dt.datetime.combine(day, dt.time(12, 0)).astimezone()
        message.record = {"time": moment}
        return message


def test_writes_the_days_file_through_loguru(tmp_path: Path) -> None:
    sink = DailyFileSink(tmp_path / "logs")
    handler = logger.add(sink, format="{level} {message}", catch=False)
    try:
        logger.info("first line, \u00e9l\u00e8ve \u65e5\u672c")
        logger.warning("second line")
    finally:
        logger.remove(handler)
        sink.stop()
    path = sink.path_for(dt.date.today())
    assert path.name == f"dropbox-sync_{dt.date.today().isoformat()}.log"
    assert path.read_text(encoding="utf-8") == "INFO first line, \u00e9l\u00e8ve \u65e5\u672c\nWARNING second line\n"


def test_a_reader_in_another_process_does_not_stop_todays_writes(tmp_path: Path) -> None:
    sink = DailyFileSink(tmp_path)
    try:
        sink.write(Message.on(TODAY, "before"))
        with held_open(sink.path_for(TODAY), "rb"):
            sink.write(Message.on(TODAY, "while a reader has it open"))
        # Another dropbox-sync process (a technician's `once` beside the
        # service) appending to the same day's file at the same time.
        with held_open(sink.path_for(TODAY), "ab"):
            sink.write(Message.on(TODAY, "while another writer has it open"))
    finally:
        sink.stop()
    assert sink.path_for(TODAY).read_text(encoding="utf-8").splitlines() == [
        "before",
        "while a reader has it open",
        "while another writer has it open",
    ]


def test_the_next_day_opens_a_new_file_while_yesterdays_is_held(tmp_path: Path) -> None:
    sink = DailyFileSink(tmp_path)
    tomorrow = TODAY + dt.timedelta(days=1)
    try:
        sink.write(Message.on(TODAY, "day one"))
        with held_open(sink.path_for(TODAY)):
            sink.write(Message.on(tomorrow, "day two"))  # closes day one's handle, opens day two's
            sink.write(Message.on(tomorrow, "day two, again"))
    finally:
        sink.stop()
    assert sink.path_for(TODAY).read_text(encoding="utf-8") == "day one\n"
    assert sink.path_for(tomorrow).read_text(encoding="utf-8") == "day two\nday two, again\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [sink.path_for(TODAY).name, sink.path_for(tomorrow).name]
    )


def test_retention_skips_a_held_old_file_and_deletes_it_once_released(tmp_path: Path) -> None:
    sink = DailyFileSink(tmp_path, retention_days=30)
    old_held = sink.path_for(TODAY - dt.timedelta(days=40))
    old_free = sink.path_for(TODAY - dt.timedelta(days=41))
    recent = sink.path_for(TODAY - dt.timedelta(days=29))
    someone_elses = tmp_path / "notes-2020-01-01.log"
    for path in (old_held, old_free, recent, someone_elses):
        path.write_text("old\n", encoding="utf-8")
    tomorrow = TODAY + dt.timedelta(days=1)
    try:
        with held_open(old_held):
            sink.write(Message.on(TODAY, "opening today's file prunes"))  # must not raise
            assert old_held.exists(), "a held file cannot be deleted on Windows"
            assert not old_free.exists()
        # The next day's first message prunes again, and the file is free now.
        sink.write(Message.on(tomorrow, "the next day"))
    finally:
        sink.stop()
    assert not old_held.exists()
    assert recent.exists() and someone_elses.exists()
    assert sink.path_for(TODAY).read_text(encoding="utf-8") == "opening today's file prunes\n"
