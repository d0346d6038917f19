"""Stopping while the mail server is slow: within the stop budget, and nothing queued is lost.

A real SMTP server (aiosmtpd) on 127.0.0.1 that sits on the message (DATA) until
the test lets it answer: the slow or hung relay a school's mail often is.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
from typing import Any

from dropbox_sync import paths
from dropbox_sync.notify import notifier as notify
from dropbox_sync.notify.notifier import Notifier
from dropbox_sync.service.core import STOP_MARGIN
from tests.helpers import wait_until
from tests.support import dropbox_sync_process, finish
from tests.test_notify import (
    FakeClock,
    LocalSMTP,
    Mailbox,
    config_file,
    failed_report,
    load,
    notify_table,
)


class SlowMailbox(Mailbox):
    """Takes the whole message, then answers only once ``gate`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.in_data = threading.Event()
        self.gate = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.in_data.set()
        await asyncio.get_running_loop().run_in_executor(None, self.gate.wait, 120)
        return await super().handle_DATA(server, session, envelope)


def notify_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "notify" and t.is_alive()]


def test_stop_keeps_to_its_budget_while_the_mail_server_sits_on_the_message(tmp_path):
    box = SlowMailbox()
    server = LocalSMTP(box)
    server.start()
    try:
        cfg = load(tmp_path, notify_table(server.port, smtp_timeout=60))
        notifier = Notifier(cfg.notify, cfg.inboxes, state_dir=cfg.state_dir, now=FakeClock(), flush_budget=1.0)
        notifier.start()
        notifier.on_report(failed_report(tmp_path / "inbox", "f.csv", {"success": False, "summary": "no"}))
        notifier.stop()
        # stop() has returned while its last email is still on the wire (the server has not
        # answered: its gate is shut): it kept to its budget instead of waiting on the server.
        assert notify_threads(), "stop waited for the mail server"
        assert box.messages == [] and not box.gate.is_set()
        saved = json.loads((cfg.state_dir / paths.NOTIFY_FILE).read_text(encoding="utf-8"))
        assert [f["original"] for f in saved["failed"]] == ["f.csv"], "queued failures are saved before sending"
    finally:
        box.gate.set()
        wait_until(lambda: not notify_threads(), timeout=30)  # the late answer comes; the thread ends
        server.stop()
    assert "f.csv" in box.body()


def test_the_last_email_fits_in_the_stop_margin_the_service_managers_allow():
    # After the workers (stop_timeout), the notifier's last email and closing the journal and
    # logs must fit in STOP_MARGIN (systemd TimeoutStopSec=, the SCM's wait hint, launchd ExitTimeOut).
    assert notify.FLUSH_BUDGET + 5 <= STOP_MARGIN


def test_a_kill_during_a_slow_mail_exchange_loses_no_queued_failure(tmp_path, emu):
    box = SlowMailbox()
    server = LocalSMTP(box)
    server.start()
    try:
        config_path = config_file(tmp_path, notify_table(server.port, smtp_timeout=60), emulator=emu)
        (tmp_path / "inbox" / "bad.csv").write_text("username\nx\n", encoding="utf-8")  # goes to failed/
        once = dropbox_sync_process("--config", str(config_path), "once")
        try:
            assert box.in_data.wait(60), "once did not send its digest"
            os.kill(once.pid, signal.SIGKILL)  # a service manager's kill, mid-exchange
        finally:
            code, err = finish(once)
        assert code == -signal.SIGKILL, err
        saved = json.loads((tmp_path / "state" / paths.NOTIFY_FILE).read_text(encoding="utf-8"))
        assert [f["original"] for f in saved["failed"]] == ["bad.csv"], "the next run mails it"
    finally:
        box.gate.set()
        server.stop()
