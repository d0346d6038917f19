"""The real Windows service: install, start, process a file, stop, uninstall.

Everything goes through the product's own command, ``dropbox-sync service
...``, run as a separate Windows process, and the service runs for real:
the Service Control Manager starts pywin32's ``pythonservice.exe`` (copied
into ``sys.prefix`` by the install), which hosts
``dropbox_sync.service.windows.DropboxSyncService``, which runs the pipeline
against the emulator served from this test process over TLS. The test checks
each step through the SCM (QueryServiceStatus / QueryServiceConfig, the data
``sc query`` and ``sc qc`` print), the registry and the inbox.

The service gets a name of its own, so on a real Windows host this never
touches an installed dropbox-sync. Its folders live under C:\\ProgramData
(where a service account can read them; not in a user's temp folder) and are
removed afterwards. Whatever happens, the service is uninstalled.

Under Wine, services run only while some Windows user process does: this
pytest process is that process for the whole test.

The steps are printed at the end of the run (conftest.py ``lane_steps``).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
import winreg
from pathlib import Path

import pytest
from winhelpers import wait_until
from winpipeline import archived, csv_bytes, good_row, result_of, write_config

from dropbox_sync.service import windows as service_windows
from dropbox_sync.service.core import STOP_MARGIN

SERVICE = "dropbox-sync-lane"
STOP_TIMEOUT = 5  # the config's stop_timeout: a stop must finish within it
COMMAND_TIMEOUT = 120.0  # bounds each `dropbox-sync service ...` (start waits up to 60 s itself)
PROCESS_TIMEOUT = 60.0
SERVICES_KEY = r"SYSTEM\CurrentControlSet\Services"
SERVICE_STOPPED, SERVICE_STOP_PENDING, SERVICE_RUNNING = 1, 3, 4
ERROR_SERVICE_DOES_NOT_EXIST = 1060

# In the lane (DROPBOX_SYNC_WINLANE, set by lane.sh) it never skips: there it
# must run, and without rights it fails loudly at the install.
pytestmark = pytest.mark.skipif(
    not ctypes.windll.shell32.IsUserAnAdmin() and not os.environ.get("DROPBOX_SYNC_WINLANE"),
    reason="installing a service needs an administrator prompt",
)


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False)


def dropbox_sync(config_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The product's command line, as a technician runs it (a separate process)."""
    return run(sys.executable, "-m", "dropbox_sync", "--config", str(config_path), *args)


def output(done: subprocess.CompletedProcess[str]) -> str:
    return (done.stdout + done.stderr).strip()


def scm_status(name: str) -> tuple[int, int] | None:
    """(state, win32 exit code) from the SCM, None if no such service."""
    import pywintypes
    import win32service

    scm = win32service.OpenSCManager(None, None, win32service.SC_MANAGER_CONNECT)
    try:
        try:
            handle = win32service.OpenService(scm, name, win32service.SERVICE_QUERY_STATUS)
        except pywintypes.error as exc:
            if exc.winerror == ERROR_SERVICE_DOES_NOT_EXIST:
                return None
            raise
        try:
            status = win32service.QueryServiceStatus(handle)
        finally:
            win32service.CloseServiceHandle(handle)
    finally:
        win32service.CloseServiceHandle(scm)
    return status[1], status[3]


def scm_config(name: str) -> tuple[int, str, str]:
    """(start type, binary path, account): what ``sc qc`` shows."""
    import win32service

    scm = win32service.OpenSCManager(None, None, win32service.SC_MANAGER_CONNECT)
    try:
        handle = win32service.OpenService(scm, name, win32service.SERVICE_QUERY_CONFIG)
        try:
            config = win32service.QueryServiceConfig(handle)
        finally:
            win32service.CloseServiceHandle(handle)
    finally:
        win32service.CloseServiceHandle(scm)
    return config[1], config[3], config[7]


def registry_value(name: str, subkey: str, value: str) -> str | None:
    path = rf"{SERVICES_KEY}\{name}\{subkey}"
    try:
        with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, path) as key:
            return str(winreg.QueryValueEx(key, value)[0])
    except FileNotFoundError:
        return None


class StateTimeline:
    """Polls the SCM on a thread and keeps when each state was first seen."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.seen: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="scm-poller")

    def _poll(self) -> None:
        while not self._stop.is_set():
            status = scm_status(self.name)
            if status is not None:
                self.seen.setdefault(status[0], time.monotonic())
            self._stop.wait(0.02)

    def first(self, state: int) -> float | None:
        return self.seen.get(state)

    def __enter__(self) -> StateTimeline:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(10)


def sc_state_line(name: str) -> str:
    """The STATE line of ``sc query NAME`` (Windows' own tool, not pywin32)."""
    done = run("sc", "query", name)
    assert done.returncode == 0, f"sc query {name} -> {done.returncode}: {output(done)}"
    return next(line.strip() for line in done.stdout.splitlines() if line.strip().startswith("STATE"))


def force_remove(name: str) -> None:
    """Last resort when the product's uninstall failed: stop and delete through pywin32."""
    import win32serviceutil

    status = scm_status(name)
    if status is None:
        return
    if status[0] != SERVICE_STOPPED:
        try:
            win32serviceutil.StopService(name)
        except Exception:  # noqa: BLE001 - already stopping, or stuck: delete it anyway
            pass
        try:
            wait_until(lambda: (scm_status(name) or (SERVICE_STOPPED,))[0] == SERVICE_STOPPED, timeout=30)
        except AssertionError:
            pass
    win32serviceutil.RemoveService(name)


@pytest.fixture
def site(emulator):
    """A config for the service under C:\\ProgramData, removed afterwards."""
    base = Path(os.environ.get("ProgramData", r"C:\ProgramData")) / f"dropbox-sync-lane-{uuid.uuid4().hex[:8]}"
    inbox = base / "inbox"
    config_path = write_config(base, emulator, inbox=inbox, settle_seconds=0.5, stop_timeout=STOP_TIMEOUT)
    try:
        yield config_path
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def service(site, lane_steps):
    """The service's name; uninstalled at the end whatever happened."""
    assert scm_status(SERVICE) is None, f"a service {SERVICE} is already installed (left by an earlier run?)"
    try:
        yield SERVICE
    finally:
        if scm_status(SERVICE) is not None:
            done = dropbox_sync(site, "service", "uninstall", "--name", SERVICE)
            if scm_status(SERVICE) is not None:
                lane_steps(f"cleanup: uninstall failed ({done.returncode}): {output(done)}; removing directly")
                force_remove(SERVICE)
            else:
                lane_steps("cleanup: uninstalled after a failure")


def test_install_start_process_stop_uninstall(service: str, site: Path, emulator, lane_steps) -> None:
    inbox = site.parent / "inbox"
    step = lane_steps

    # -- install ------------------------------------------------------------------
    done = dropbox_sync(site, "service", "install", "--name", service)
    assert done.returncode == 0, output(done)
    assert scm_status(service) is not None
    step(f"service installed: {service}  (dropbox-sync service install -> {done.returncode})")
    step("\n".join("  | " + line for line in done.stdout.strip().splitlines()))

    start_type, binary, account = scm_config(service)
    host = Path(binary.strip('"'))
    assert host.name.lower() == "pythonservice.exe"
    assert Path(os.path.normcase(host.parent)) == Path(os.path.normcase(sys.prefix)), binary
    assert host.is_file() and (host.parent / f"pywintypes{sys.version_info[0]}{sys.version_info[1]}.dll").is_file()
    assert account.lower() in ("nt authority\\localservice", "nt authority\\local service"), account
    assert start_type == 2, f"start type {start_type}, expected automatic (2)"
    config_path = registry_value(service, "Parameters", service_windows.CONFIG_PARAMETER)
    assert config_path == str(site)
    # pywin32 keeps the class to host as the default value of a PythonClass subkey.
    assert registry_value(service, "PythonClass", "") == service_windows.CLASS_STRING
    step(f"registered: BINARY_PATH_NAME {binary}")
    step(f"            SERVICE_START_NAME {account}, START_TYPE {start_type} (automatic)")
    step(f"            Parameters\\ConfigPath {config_path}")
    sc_qc = run("sc", "qc", service)
    if sc_qc.returncode == 0:  # Wine 8's sc has no qc; Windows' does
        assert "pythonservice.exe" in sc_qc.stdout.lower() and "localservice" in sc_qc.stdout.lower().replace(" ", "")
        step("sc qc agrees")

    # -- start --------------------------------------------------------------------
    done = dropbox_sync(site, "service", "start", "--name", service)
    assert done.returncode == 0, output(done)
    # Wine starts an automatic service as soon as it is registered:
    # "already running" is as good as "running".
    assert "is running" in done.stdout or "already running" in done.stdout, output(done)
    state = sc_state_line(service)
    assert "RUNNING" in state, state
    step(f"service started: {done.stdout.strip()}")
    step(f"sc query {service}: {' '.join(state.split())}")
    done = dropbox_sync(site, "service", "status", "--name", service)
    assert done.returncode == 0 and "RUNNING" in done.stdout and str(site) in done.stdout, output(done)
    # It names the log folder the service really writes to: the config's log_dir.
    assert f"logs:    {site.parent / 'logs'}" in done.stdout, output(done)

    # -- a file dropped while it runs ------------------------------------------------
    data = csv_bytes(good_row("svc001"), good_row("svc002"), bom=True)
    (inbox / "from-the-sis.csv").write_bytes(data)
    wait_until(
        lambda: [p for p in archived(inbox, "processed") if result_of_exists(p)],
        timeout=PROCESS_TIMEOUT,
        message=f"the service did not process the file: {sorted(os.listdir(inbox))}",
    )
    (done_file,) = archived(inbox, "processed")
    result = result_of(done_file)
    assert result["success"] is True and result["dropbox_sync"]["file"] == "from-the-sis.csv"
    assert done_file.read_bytes() == data
    (upload,) = emulator.uploads()
    assert upload.stored_file.read_bytes() == data
    step(f"processed: {done_file.name} -> processed\\ with {done_file.name}.result.json")
    step(f"           server said: {result['summary']}")
    log_files = sorted((site.parent / "logs").glob("dropbox-sync_*.log"))
    assert log_files, "the service wrote no log file in the configured log_dir"
    log_text = log_files[-1].read_text(encoding="utf-8")
    assert "from-the-sis.csv -> processed/" in log_text
    # The technician's `dropbox-sync status`, a second process reading the
    # running service's status.json and SQLite journal.
    done = dropbox_sync(site, "status")
    assert done.returncode == 0, output(done)
    assert "service: running (pid " in done.stdout and f"(pid {os.getpid()}," not in done.stdout, output(done)
    assert "last success: " in done.stdout and "from-the-sis.csv: 2 users processed" in done.stdout, output(done)
    step("dropbox-sync status: " + next(line for line in done.stdout.splitlines() if "last success" in line).strip())

    # -- stop ---------------------------------------------------------------------
    with StateTimeline(service) as timeline:
        started = time.monotonic()
        done = dropbox_sync(site, "service", "stop", "--name", service)
        took = time.monotonic() - started
        assert done.returncode == 0, output(done)
        wait_until(lambda: timeline.first(SERVICE_STOPPED) is not None, timeout=10)
    state = sc_state_line(service)
    assert "STOPPED" in state, state
    assert scm_status(service) == (SERVICE_STOPPED, 0), "stopped with an error code"
    # From the SCM's first STOP_PENDING (the service accepted the stop) to
    # STOPPED; the command's own time adds a Python start-up and its polling.
    draining = timeline.first(SERVICE_STOPPED) - (timeline.first(SERVICE_STOP_PENDING) or started)
    step(
        f"service stopped: {done.stdout.strip()} (command {took:.1f} s; STOP_PENDING -> STOPPED in "
        f"{draining:.1f} s, stop_timeout {STOP_TIMEOUT} s)"
    )
    step(f"sc query {service}: {' '.join(state.split())}")
    assert draining < STOP_TIMEOUT, f"the stop took {draining:.1f} s, more than stop_timeout ({STOP_TIMEOUT} s)"
    assert "service stopped" in log_files[-1].read_text(encoding="utf-8")

    # -- start again: a file that arrived while it was stopped is sent ------------------
    later = csv_bytes(good_row("svc003"))
    (inbox / "while-stopped.csv").write_bytes(later)
    done = dropbox_sync(site, "service", "start", "--name", service)
    assert done.returncode == 0 and "RUNNING" in sc_state_line(service), output(done)
    wait_until(
        lambda: len([p for p in archived(inbox, "processed") if result_of_exists(p)]) == 2, timeout=PROCESS_TIMEOUT
    )
    step("started again: the file dropped while it was stopped was processed at start-up")

    # -- a stop while an upload hangs: the stop does not wait for the server ----------
    emulator.inject("hang", hang_seconds=120)
    (inbox / "hangs.csv").write_bytes(csv_bytes(good_row("svc004")))
    wait_until(lambda: any(u.fault == "hang" for u in emulator.uploads()), timeout=PROCESS_TIMEOUT)
    step("an upload hangs (the server accepted the file and never answers); stopping")
    with StateTimeline(service) as timeline:
        started = time.monotonic()
        done = dropbox_sync(site, "service", "stop", "--name", service)
        assert done.returncode == 0, output(done)
        wait_until(lambda: timeline.first(SERVICE_STOPPED) is not None, timeout=10)
    draining = timeline.first(SERVICE_STOPPED) - (timeline.first(SERVICE_STOP_PENDING) or started)
    budget = STOP_TIMEOUT + STOP_MARGIN  # the wait hint the service gives the SCM
    step(
        f"service stopped with the upload abandoned: STOP_PENDING -> STOPPED in {draining:.1f} s "
        f"(stop_timeout {STOP_TIMEOUT} s, wait hint {budget:g} s)"
    )
    assert draining < budget, f"the stop took {draining:.1f} s, past the {budget:g} s the SCM was promised"
    assert scm_status(service) == (SERVICE_STOPPED, 0)
    claimed = [p.name for p in (inbox / "sending").iterdir() if p.name.endswith("_hangs.csv")]
    assert claimed, "the abandoned file must stay claimed in sending/, to be sent again at the next start"
    assert "abandoned" in log_files[-1].read_text(encoding="utf-8")

    # -- uninstall ----------------------------------------------------------------------
    done = dropbox_sync(site, "service", "uninstall", "--name", service)
    assert done.returncode == 0, output(done)
    assert scm_status(service) is None
    assert registry_value(service, "Parameters", service_windows.CONFIG_PARAMETER) is None
    gone = run("sc", "query", service)
    assert gone.returncode != 0
    step(f"uninstalled: {done.stdout.strip().splitlines()[-1]}; sc query {service} -> {gone.returncode}")
    # Nothing left in the inbox but the page for people, which the service keeps there.
    assert len(archived(inbox, "processed")) == 2 and [f.name for f in inbox.iterdir() if f.is_file()] == [
        "report.html"
    ]
    page = (inbox / "report.html").read_text(encoding="utf-8")
    assert "while-stopped.csv" in page and "Stopped" in page, "the service's last page shows its final state"
    step("report.html in the inbox: the last file imported, and the service stopped")


def result_of_exists(path: Path) -> bool:
    return path.with_name(path.name + ".result.json").is_file()


def test_a_config_error_stops_the_service_with_exit_code_0_so_recovery_leaves_it_stopped(
    service: str, site: Path, lane_steps
) -> None:
    # The SCM runs the recovery actions after a non-crash stop only when dwWin32ExitCode is not 0
    # (SERVICE_FAILURE_ACTIONS_FLAG): a config error must stop with 0, or it restarts every 10 s.
    site.write_text(site.read_text(encoding="utf-8") + "colour = 'blue'\n", encoding="utf-8")  # unknown key
    done = dropbox_sync(site, "service", "install", "--name", service)
    assert done.returncode == 0 and "does not load yet" in done.stdout, output(done)
    done = dropbox_sync(site, "service", "start", "--name", service)
    # Wine starts an automatic service as soon as it is registered; either way it must be stopped now.
    wait_until(lambda: (scm_status(service) or (0,))[0] == SERVICE_STOPPED, timeout=PROCESS_TIMEOUT)
    assert scm_status(service) == (SERVICE_STOPPED, 0), "a config error is a clean stop, not a failure"
    lane_steps(f"a config error: `service start` -> {done.returncode}; the SCM shows STOPPED with exit code 0")
