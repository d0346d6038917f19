"""The shutdown order, written once in session.py, is the order things really stop in.

The real pipeline, journal, notifier and report pages over the real emulator;
each part's own stop is wrapped by a spy that records the moment and calls
through (a spy, not a fake: the parts do their real work).
"""

from __future__ import annotations

import threading
from pathlib import Path

from dropbox_sync import config
from dropbox_sync.session import Session
from tests.helpers import wait_until
from tests.support import archived, emulator_with_password, good_csv, write_config


def spy(order: list[str], label: str, method):
    def recorded(*args, **kwargs):
        result = method(*args, **kwargs)
        order.append(label)
        return result

    return recorded


def test_a_session_stops_its_parts_in_the_documented_order(tmp_path: Path) -> None:
    emulator = emulator_with_password(tmp_path).start()
    try:
        path = write_config(tmp_path, emulator, settle_seconds=0.05)
        text = path.read_text(encoding="utf-8")
        # An SMTP server that is never reached: the notifier only has to stop in its turn.
        path.write_text(
            text + '[notify]\nsmtp_host = "127.0.0.1"\nsmtp_port = 9\nstarttls = false\n'
            'from = "dropbox-sync@school.example"\nto = ["it@school.example"]\n',
            encoding="utf-8",
        )
        session = Session(config.load(path))
        assert session.notifier is not None and session.pages is not None
        order: list[str] = []
        session.pipeline.run = spy(order, "pipeline", session.pipeline.run)
        session.notifier.stop = spy(order, "notifier", session.notifier.stop)
        session.pages.stop = spy(order, "pages", session.pages.stop)
        session.journal.close = spy(order, "journal", session.journal.close)
        stop = threading.Event()

        def monitor(pipeline, flag: threading.Event) -> None:
            flag.wait()  # a service host's monitor ends once the stop is asked for
            order.append("monitor")

        inbox = tmp_path / "inbox"
        runner = threading.Thread(target=session.run, args=(stop,), kwargs={"monitor": monitor})
        runner.start()
        try:
            (inbox / "a.csv").write_text(good_csv("a"), encoding="utf-8")
            wait_until(lambda: archived(inbox, "processed"))
        finally:
            stop.set()  # all a signal handler or service adapter does
            runner.join(60)
        session.close()
        session.close()  # twice is harmless
        assert order[:2] in (["pipeline", "monitor"], ["monitor", "pipeline"])  # run returns after both end
        assert order[2:] == ["notifier", "pages", "journal"]
        assert not runner.is_alive()
    finally:
        emulator.stop()
