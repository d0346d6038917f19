"""The service core and the sd_notify protocol, against real sockets, the real pipeline and emulator.

The notify socket is a real AF_UNIX datagram socket bound in tmp_path and
handed to the code the way systemd does (an address string). Messages are
received with deadlines; nothing sleeps to synchronise.
"""

from __future__ import annotations

import functools
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dropbox_sync import log
from dropbox_sync.pipeline import archive, discover
from dropbox_sync.pipeline import runner as pipeline_module
from dropbox_sync.pipeline.runner import InboxSnapshot, InboxWorker, Pipeline
from dropbox_sync.service.core import (
    DiscardStream,
    Reporter,
    run_service,
    status_line,
    stop_budget,
)
from dropbox_sync.service.sdnotify import Notifier, watchdog_seconds
from dropbox_sync.service.systemd import SystemdReporter
from tests.helpers import wait_until
from tests.support import (
    archived,
    emulator_with_password,
    good_csv,
    running,
    write_config,
)


@pytest.fixture(autouse=True)
def console_logging_only() -> Iterator[None]:
    """run_service adds a file sink in tmp_path; put logging back as the other tests expect."""
    yield
    log.setup()


@pytest.fixture
def emu(tmp_path):
    emulator = emulator_with_password(tmp_path).start()
    yield emulator
    emulator.stop()


class Listener:
    """The systemd side: a datagram socket that collects sd_notify messages."""

    def __init__(self, address: str | bytes) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.received: list[dict[str, str]] = []

    def next(self, timeout: float = 10.0) -> dict[str, str] | None:
        """The next message as a dict of assignments, or None if none came within timeout."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096)
        except TimeoutError:
            return None
        fields = dict(line.split("=", 1) for line in data.decode().split("\n") if line)
        self.received.append(fields)
        return fields

    def until(self, predicate, timeout: float = 10.0) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            message = self.next(remaining)
            if message is not None and predicate(message):
                return message
        raise AssertionError(f"no matching sd_notify message within {timeout} s; got {self.received}")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener(tmp_path) -> Iterator[Listener]:
    path = tmp_path / "notify.sock"
    assert len(str(path)) < 100, "AF_UNIX paths are limited to 108 bytes"
    sock = Listener(str(path))
    yield sock
    sock.close()


class SteerableClock:
    """time.monotonic plus an offset the test can push forward (the pipeline's clock seam)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset


# -- the protocol itself ---------------------------------------------------------------


def test_notifier_reaches_a_path_socket_and_an_abstract_one(listener: Listener) -> None:
    address = listener.sock.getsockname()
    assert Notifier(address).send("READY=1", "STATUS=multi\nline")
    assert listener.next(5) == {"READY": "1", "STATUS": "multi line"}

    abstract = f"@dropbox-sync-test-{os.getpid()}"
    other = Listener(b"\0" + abstract[1:].encode())
    try:
        assert Notifier.from_environ({"NOTIFY_SOCKET": abstract}).send("WATCHDOG=1")
        assert other.next(5) == {"WATCHDOG": "1"}
    finally:
        other.close()


def test_notifier_without_systemd_or_socket_is_quiet(tmp_path) -> None:
    assert not Notifier.from_environ({}).enabled
    assert Notifier.from_environ({}).send("READY=1") is False
    gone = Notifier(str(tmp_path / "nobody-listens.sock"))
    assert gone.send("READY=1") is False  # logged once, never raised
    assert gone.send("READY=1") is False


def test_watchdog_interval_honours_watchdog_pid() -> None:
    assert watchdog_seconds({"WATCHDOG_USEC": "60000000"}) == 60.0
    assert watchdog_seconds({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}) == 2.0
    assert watchdog_seconds({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_seconds({"WATCHDOG_USEC": "nonsense"}) is None
    assert watchdog_seconds({}) is None
    assert SystemdReporter(Notifier(None), 60.0).tick_seconds == 10.0  # status every 10 s at most
    assert SystemdReporter(Notifier(None), 1.0).tick_seconds == 0.5  # half the interval


def test_status_line_counts_inboxes_held_and_waiting(tmp_path) -> None:
    def snap(name, held=None, waiting=(), uploading=None, missing=False):
        return InboxSnapshot(name, tmp_path, missing, held, dict.fromkeys(waiting, "settling"), uploading, 0.0)

    assert status_line([snap("a"), snap("b")]) == "2 inboxes, 0 held, 0 waiting"
    line = status_line(
        [
            snap("a", held="HTTP 401", waiting=["x.csv"]),
            snap("b", waiting=["y", "z"], uploading="w.csv"),
            snap("c", missing=True),
        ],
        healthy=False,
    )
    assert line == (
        "3 inboxes, 1 held, 3 waiting, sending w.csv, folder missing: c"
        " - NOT HEALTHY (an inbox worker is stuck or dead)"
    )
    assert status_line([snap("a")]) == "1 inbox, 0 held, 0 waiting"


# -- the whole exchange, real pipeline and emulator --------------------------------------


def test_ready_only_after_observers_then_status_watchdog_until_wedged_then_stopping(
    tmp_path, emu, listener: Listener, monkeypatch
) -> None:
    """READY waits for the observers; WATCHDOG pings stop when a worker is wedged.

    The wedge is made through the pipeline's clock seam (InboxWorker(clock=...)),
    not by patching Pipeline.healthy: pushing the clock past the worker's
    allowance exercises the real wedged()/healthy() rule the watchdog relies on.
    """
    config_path = write_config(tmp_path, emu)
    archive.ensure_folders(tmp_path / "inbox")  # no folder events to wake the worker later
    gate = threading.Event()

    class GatedWatcher(pipeline_module.Watcher):
        def start(self) -> None:  # observers do not run until the test says so
            assert gate.wait(10)
            super().start()

    monkeypatch.setattr(pipeline_module, "Watcher", GatedWatcher)
    clock = SteerableClock()
    built: list[Pipeline] = []

    def factory(cfg, **kwargs):
        built.append(Pipeline(cfg, **kwargs, worker_factory=functools.partial(InboxWorker, clock=clock)))
        return built[-1]

    reporter = SystemdReporter(Notifier(listener.sock.getsockname()), watchdog=0.2)
    stop = threading.Event()
    service = threading.Thread(
        target=run_service,
        args=(config_path, stop),
        name="test-run-service",
        kwargs={"reporter": reporter, "console": DiscardStream(), "pipeline_factory": factory},
    )
    service.start()
    try:
        assert listener.next()["STATUS"] == "starting the inbox observers"
        quiet = listener.next(timeout=0.5)
        assert quiet is None, f"nothing may be announced before the observers run: {quiet}"

        gate.set()
        ready = listener.until(lambda m: "READY" in m)
        assert built[0].ready.is_set(), "READY=1 must follow the observers starting"
        assert ready == {"READY": "1", "STATUS": "1 inbox, 0 held, 0 waiting"}
        for _ in range(2):
            ping = listener.until(lambda m: "WATCHDOG" in m, timeout=5)
            assert ping["STATUS"] == "1 inbox, 0 held, 0 waiting"

        worker = built[0].workers[0]
        clock.offset += 3 * worker.inbox.rescan_seconds + 60 + 5  # silent for longer than wedged() allows
        listener.until(lambda m: "NOT HEALTHY" in m.get("STATUS", ""), timeout=5)
        after = [listener.next(timeout=5) for _ in range(3)]
        assert all(m is not None and "NOT HEALTHY" in m["STATUS"] for m in after), after
        assert not any("WATCHDOG" in m for m in after), "no watchdog pings while wedged"

        stop.set()
        assert listener.until(lambda m: "STOPPING" in m)["STOPPING"] == "1"
    finally:
        gate.set()
        stop.set()
        service.join(30)
    assert not service.is_alive()


class ReadyProbe(Reporter):
    def __init__(self) -> None:
        self.pipeline = None
        self.is_ready = threading.Event()

    def ready(self, pipeline) -> None:
        self.pipeline = pipeline
        self.is_ready.set()


def start_service(config_path: Path) -> tuple[threading.Thread, threading.Event, ReadyProbe]:
    probe, stop = ReadyProbe(), threading.Event()
    thread = threading.Thread(
        target=run_service,
        args=(config_path, stop),
        name="test-run-service",
        kwargs={"reporter": probe, "console": DiscardStream()},
    )
    thread.start()
    assert probe.is_ready.wait(10), "the service did not become ready"
    return thread, stop, probe


def test_a_stop_during_an_upload_ends_within_stop_timeout_and_nothing_is_lost(tmp_path, emu) -> None:
    inbox = tmp_path / "inbox"
    config_path = write_config(tmp_path, emu, stop_timeout=1.0)
    emu.inject("hang", hang_seconds=600)  # the server sits on the upload far past any test's patience
    thread, stop, _probe = start_service(config_path)
    try:
        (inbox / "students.csv").write_text(good_csv("u1"), encoding="utf-8")
        wait_until(lambda: any(u.fault == "hang" for u in emu.uploads()))
        stop.set()
        thread.join(30)  # a bound for a broken build, not the measure: see the next assertions
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()
    # The service ended while its upload was still on the wire (the server lets go only when
    # it is stopped below): the stop waited stop_timeout, not for the server. No clock read.
    assert any(t.name == "inbox-inbox" and t.is_alive() for t in threading.enumerate()), "stop waited for the upload"
    assert [p.name.split("_", 1)[1] for p in discover.claimed_files(inbox)] == ["students.csv"]
    assert archived(inbox, "processed") == []
    emu.stop()  # ends the hang; the abandoned upload ends with it
    wait_until(lambda: not any(t.name == "inbox-inbox" for t in threading.enumerate()), timeout=30)

    server = emulator_with_password(tmp_path / "again").start()
    try:
        thread, stop, _probe = start_service(write_config(tmp_path, server, stop_timeout=1.0))
        try:
            wait_until(lambda: archived(inbox, "processed"), timeout=15)
        finally:
            stop.set()
            thread.join(30)
    finally:
        server.stop()
    (done,) = archived(inbox, "processed")
    assert done.name.endswith("_students.csv"), "the abandoned file is sent at the next start"
    assert not discover.claimed_files(inbox)


def test_a_config_error_is_reported_to_the_host_and_raised(tmp_path) -> None:
    failures: list[BaseException] = []

    class Recorder(Reporter):
        def failed(self, error: BaseException) -> None:
            failures.append(error)

    stop = threading.Event()
    with pytest.raises(Exception, match="config file not found"):
        run_service(tmp_path / "missing.toml", stop, reporter=Recorder(), console=DiscardStream())
    assert len(failures) == 1 and "config file not found" in str(failures[0])


def test_stop_budget_covers_the_longest_stop_timeout(tmp_path, emu) -> None:
    from dropbox_sync import config

    cfg = config.load(write_config(tmp_path, emu, inboxes=2, stop_timeout=42.5))
    assert stop_budget(cfg) == 58.0  # 42.5 + 15, rounded up


def test_service_run_as_systemd_starts_it(tmp_path, emu, listener: Listener) -> None:
    """The unit's ExecStart for real: a process, NOTIFY_SOCKET in its environment, SIGTERM to stop."""
    config_path = write_config(tmp_path, emu)
    env = {**os.environ, "NOTIFY_SOCKET": listener.sock.getsockname(), "WATCHDOG_USEC": "400000"}
    process = subprocess.Popen(
        [sys.executable, "-m", "dropbox_sync", "--config", str(config_path), "service", "run", "--console", "none"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert listener.until(lambda m: "READY" in m, timeout=20)["STATUS"] == "1 inbox, 0 held, 0 waiting"
        listener.until(lambda m: "WATCHDOG" in m, timeout=5)
        assert (tmp_path / "state" / "status.json").is_file(), "composed like 'run': status.json for 'status'"
        process.terminate()  # what systemctl stop sends
        assert listener.until(lambda m: "STOPPING" in m)["STOPPING"] == "1"
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert out == b"" and err == b"", "with --console none nothing goes to stdout/stderr"
    logs = list((tmp_path / "logs").glob("dropbox-sync_*.log"))
    assert logs and "service stopped" in logs[0].read_text(encoding="utf-8")


def test_a_held_inbox_stays_healthy_for_longer_than_hold_retry_seconds(tmp_path, emu) -> None:
    """A held worker sleeps hold_retry_seconds (300 s) by design: the watchdog must not call that
    stuck (systemd would abort every inbox, mid-upload, during each hold). It is stuck only
    when it is late for its own next wake-up by more than a grace."""
    from dropbox_sync import config

    emu.set_password("autoimport", "changed-by-the-librarian")  # 401: the inbox holds
    cfg = config.load(write_config(tmp_path, emu, hold_retry_seconds=300, rescan_seconds=30))
    clock = SteerableClock()
    pipeline = Pipeline(cfg, worker_factory=functools.partial(InboxWorker, clock=clock))
    (worker,) = pipeline.workers
    with running(pipeline):
        (tmp_path / "inbox" / "a.csv").write_text(good_csv("a1"), encoding="utf-8")
        wait_until(lambda: worker.hold_reason is not None, timeout=30)
        wait_until(lambda: pipeline.sleeping(worker), timeout=10)  # the pass has ended; it waits for its retry
        assert pipeline.healthy()
        clock.offset += 300 + 10  # longer than hold_retry_seconds, and than the old 240 s allowance
        assert pipeline.healthy(), "a worker waiting for its own retry is not stuck"
        clock.offset += pipeline_module.WAKE_GRACE  # now late for its wake-up by more than the grace
        assert not pipeline.healthy(), "a worker that does not wake up when due is stuck"
