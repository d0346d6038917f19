"""The Windows service on Linux: its logic runs for real, the pywin32 layer (win32_scm, win32_host) is patched.

``FakeScm`` stands in for the Service Control Manager behind every function
of ``dropbox_sync.service.win32_scm`` and ``win32_host`` that windows.py calls,
and records the calls. The service class itself runs the real pipeline against the real
emulator, on the stand-in base class that records status reports the way
pywin32's debug mode does.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import Any

import pytest

from dropbox_sync import log, paths
from dropbox_sync.errors import ServiceError, Win32Error
from dropbox_sync.service import ServiceOptions, win32_host, win32_scm, windows
from tests.helpers import wait_until
from tests.support import emulator_with_password, write_config


@pytest.fixture(autouse=True)
def console_logging_only():
    yield
    log.setup()


class FakeScm:
    """The SCM, registry and Event Log as seen through win32_scm and win32_host."""

    def __init__(self, monkeypatch, tmp_path: Path) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.admin = True
        self.services: dict[str, dict[str, Any]] = {}
        self.parameters: dict[tuple[str, str], str] = {}
        self.events: list[tuple[str, str]] = []
        self.start_ends_in = win32_scm.SERVICE_RUNNING
        self.unsupported: set[str] = set()
        site = tmp_path / "win32"
        self.files = win32_host.HostFiles(
            exe=self._file(site / "win32" / "pythonservice.exe", b"MZ host"),
            dlls=(
                self._file(site / "pywin32_system32" / "pywintypes311.dll", b"MZ pwt"),
                self._file(site / "python" / "python311.dll", b"MZ py"),
            ),
        )
        self.venv = tmp_path / "venv"
        self.venv.mkdir()
        for module, names in (
            (
                win32_host,
                ("is_admin", "host_files", "register_event_source", "log_event", "grant", "grant_service_logon_right"),
            ),
            (
                win32_scm,
                (
                    "install_service",
                    "update_service",
                    "remove_service",
                    "set_failure_actions",
                    "set_failure_actions_on_error_exit",
                    "set_unrestricted_sid",
                    "start_service",
                    "stop_service",
                    "query_status",
                    "query_config",
                    "set_parameter",
                    "get_parameter",
                ),
            ),
        ):
            for name in names:
                monkeypatch.setattr(module, name, getattr(self, name))
        monkeypatch.setattr(windows, "host_dir", lambda: self.venv)
        monkeypatch.setattr(windows, "POLL", 0.01)

    @staticmethod
    def _file(path: Path, data: bytes) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def record(self, *call: Any) -> None:
        self.calls.append(call)

    def names(self) -> list[str]:
        return [call[0] for call in self.calls]

    def _service(self, name: str) -> dict[str, Any]:
        if name not in self.services:
            raise Win32Error(
                win32_scm.ERROR_SERVICE_DOES_NOT_EXIST, "OpenService", "The specified service does not exist"
            )
        return self.services[name]

    # win32_scm's and win32_host's functions -------------------------------------------------------------
    def is_admin(self) -> bool:
        return self.admin

    def host_files(self) -> win32_host.HostFiles:
        return self.files

    def install_service(self, name, display, description, class_string, exe, **how) -> None:
        self.record("install_service", name, class_string, exe, how)
        if name in self.services:
            raise Win32Error(win32_scm.ERROR_SERVICE_EXISTS, "CreateService", "The specified service already exists")
        self.services[name] = {"state": win32_scm.SERVICE_STOPPED, "exe": exe, **how}

    def update_service(self, name, display, description, class_string, exe, **how) -> None:
        self.record("update_service", name, class_string, exe, how)
        self._service(name).update(exe=exe, **how)

    def remove_service(self, name) -> None:
        self.record("remove_service", name)
        self._service(name)
        del self.services[name]

    def set_failure_actions(self, name, **kwargs) -> None:
        self.record("set_failure_actions", name, kwargs)

    def set_failure_actions_on_error_exit(self, name) -> None:
        self.record("set_failure_actions_on_error_exit", name)
        if "flag" in self.unsupported:
            raise Win32Error(124, "ChangeServiceConfig2", "The system call level is not correct")

    def set_unrestricted_sid(self, name) -> None:
        self.record("set_unrestricted_sid", name)

    def start_service(self, name) -> None:
        self.record("start_service", name)
        service = self._service(name)
        if service["state"] == win32_scm.SERVICE_RUNNING:
            raise Win32Error(win32_scm.ERROR_SERVICE_ALREADY_RUNNING, "StartService", "already running")
        service["state"] = self.start_ends_in

    def stop_service(self, name) -> None:
        self.record("stop_service", name)
        service = self._service(name)
        if service["state"] != win32_scm.SERVICE_RUNNING:
            raise Win32Error(win32_scm.ERROR_SERVICE_NOT_ACTIVE, "ControlService", "not started")
        service["state"] = win32_scm.SERVICE_STOPPED

    def query_status(self, name) -> win32_scm.ServiceStatus:
        state = self._service(name)["state"]
        failed = state == win32_scm.SERVICE_STOPPED and self.start_ends_in == win32_scm.SERVICE_STOPPED
        return win32_scm.ServiceStatus(
            state, win32_scm.ERROR_SERVICE_SPECIFIC_ERROR if failed else 0, 0x20000001 if failed else 0
        )

    def query_config(self, name) -> win32_scm.ServiceConfig:
        service = self._service(name)
        return win32_scm.ServiceConfig(service["start_type"], f'"{service["exe"]}"', service["account"])

    def set_parameter(self, name, key, value) -> None:
        self.record("set_parameter", name, key, value)
        self.parameters[(name, key)] = value

    def get_parameter(self, name, key) -> str | None:
        return self.parameters.get((name, key))

    def register_event_source(self, name) -> None:
        self.record("register_event_source", name)

    def log_event(self, level, message) -> None:
        self.events.append((level, message))

    def grant(self, path, who, rights, *, inherit) -> None:
        self.record("grant", Path(path), who, rights, inherit)

    def grant_service_logon_right(self, account) -> None:
        self.record("grant_service_logon_right", account)


@pytest.fixture
def scm(monkeypatch, tmp_path) -> FakeScm:
    return FakeScm(monkeypatch, tmp_path)


def write_windows_config(tmp_path: Path, *inboxes: str, extra: str = "") -> Path:
    text = f'state_dir = "{tmp_path / "state"}"\nlog_dir = "{tmp_path / "logs"}"\n{extra}'
    for number, path in enumerate(inboxes):
        text += (
            f'[[inbox]]\nname = "in{number}"\npath = \'{path}\'\nurl = "https://library.example.edu/api/import/users"\n'
            'username = "autoimport"\npassword_env = "SET_ONLY_FOR_THE_SERVICE"\n'
        )
    config_path = tmp_path / "config.toml"
    config_path.write_text(text, encoding="utf-8")
    return config_path


def options(config_path: Path, **overrides) -> ServiceOptions:
    values = {"name": "dropbox-sync", "config_path": config_path, "out": io.StringIO()}
    return ServiceOptions(**{**values, **overrides})


# -- install ---------------------------------------------------------------------------


def test_install_registers_localservice_automatic_with_recovery_and_the_config_path(tmp_path, scm) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (tmp_path / "state").mkdir()
    (tmp_path / "logs").mkdir()
    config_path = write_windows_config(tmp_path, str(inbox))
    opts = options(config_path)
    assert windows.install(opts) == 0

    host = scm.venv / "pythonservice.exe"
    assert scm.calls[0] == (
        "install_service",
        "dropbox-sync",
        "dropbox_sync.service.windows.DropboxSyncService",
        host,
        {
            "start_type": win32_scm.SERVICE_AUTO_START,
            "delayed": True,
            "account": "NT AUTHORITY\\LocalService",
            "password": None,
        },
    )
    assert ("set_parameter", "dropbox-sync", "ConfigPath", str(config_path)) in scm.calls
    assert (
        "set_failure_actions",
        "dropbox-sync",
        {"delays_ms": (10_000, 60_000, 300_000), "reset_seconds": 86_400},
    ) in scm.calls
    assert {"set_failure_actions_on_error_exit", "set_unrestricted_sid", "register_event_source"} <= set(scm.names())
    grants = [call[1:] for call in scm.calls if call[0] == "grant"]
    assert grants == [
        (tmp_path / "state", "*S-1-5-19", "M", False),
        (tmp_path / "state" / "locks", "*S-1-5-19", "M", True),
        (tmp_path / "logs", "*S-1-5-19", "M", True),
        (inbox, "*S-1-5-19", "M", True),
    ]
    assert "start_service" not in scm.names(), "install alone does not start"
    assert "grant_service_logon_right" not in scm.names(), "LocalService holds the right already"
    assert "does not load yet" in opts.out.getvalue(), "the password variable is only set for the service"


def test_install_puts_the_host_and_its_dlls_in_the_venv_root_once(tmp_path, scm) -> None:
    config_path = write_windows_config(tmp_path)
    first = options(config_path, grant=False)
    windows.install(first)
    for source in (scm.files.exe, *scm.files.dlls):
        assert (scm.venv / source.name).read_bytes() == source.read_bytes()
    assert first.out.getvalue().count("copied ") == 3

    again = options(config_path, grant=False)
    windows.install(again)
    assert "copied " not in again.out.getvalue(), "identical files are not copied again"
    assert scm.names().count("update_service") == 1, "a second install updates the registration"


def test_install_needs_an_administrator(tmp_path, scm) -> None:
    scm.admin = False
    with pytest.raises(ServiceError, match="Run as administrator"):
        windows.install(options(write_windows_config(tmp_path)))
    assert scm.calls == []


def test_a_domain_account_needs_a_password_and_a_managed_one_does_not(tmp_path, scm, monkeypatch) -> None:
    config_path = write_windows_config(tmp_path)
    monkeypatch.setattr(windows.sys, "stdin", io.StringIO())  # not a terminal: no prompt
    with pytest.raises(ServiceError, match="--password is required"):
        windows.install(options(config_path, account="SCHOOL\\svc-sync", grant=False))
    monkeypatch.setattr(windows.sys, "stdin", io.StringIO("s3cret\n"))
    windows.install(options(config_path, account="SCHOOL\\svc-sync", password="-", grant=False))
    assert scm.services["dropbox-sync"]["password"] == "s3cret"
    assert ("grant_service_logon_right", "SCHOOL\\svc-sync") in scm.calls, "else error 1069 at start"
    windows.install(options(config_path, account="SCHOOL\\gmsa-sync$", grant=False))
    assert scm.services["dropbox-sync"]["password"] is None


def test_a_per_user_python_is_refused(tmp_path, scm, monkeypatch) -> None:
    monkeypatch.setattr(windows.sys, "base_prefix", r"C:\Users\admin\AppData\Local\Programs\Python\Python311")
    with pytest.raises(ServiceError, match="for all users"):
        windows.install(options(write_windows_config(tmp_path)))


def test_a_share_inbox_is_not_granted_and_localservice_is_warned(tmp_path, scm) -> None:
    config_path = write_windows_config(tmp_path, r"\\fileserver\sis\export")
    opts = options(config_path)
    windows.install(opts)
    assert not any(call[0] == "grant" and "fileserver" in str(call[1]) for call in scm.calls)
    assert "LocalService has no network credentials" in opts.out.getvalue()


def test_settings_wine_lacks_are_warnings_not_failures(tmp_path, scm) -> None:
    scm.unsupported = {"flag"}
    opts = options(write_windows_config(tmp_path), grant=False)
    assert windows.install(opts) == 0
    assert "warning: could not set restart after an error exit" in opts.out.getvalue()


def test_install_with_start_waits_until_running(tmp_path, scm) -> None:
    opts = options(write_windows_config(tmp_path), grant=False, start=True)
    assert windows.install(opts) == 0
    assert scm.services["dropbox-sync"]["state"] == win32_scm.SERVICE_RUNNING
    assert "is running" in opts.out.getvalue()


# -- start, stop, status, uninstall ------------------------------------------------------


def test_a_service_that_stops_while_starting_is_an_error_with_hints(tmp_path, scm) -> None:
    config_path = write_windows_config(tmp_path)
    windows.install(options(config_path, grant=False))
    scm.start_ends_in = win32_scm.SERVICE_STOPPED
    with pytest.raises(ServiceError, match="did not start.*Application Event Log"):
        windows.start(options(config_path))


def test_error_1053_is_explained(tmp_path, scm, monkeypatch) -> None:
    config_path = write_windows_config(tmp_path)
    windows.install(options(config_path, grant=False))

    def host_not_found(name):
        raise Win32Error(win32_scm.ERROR_SERVICE_REQUEST_TIMEOUT, "StartService", "did not respond in a timely fashion")

    monkeypatch.setattr(win32_scm, "start_service", host_not_found)
    with pytest.raises(ServiceError, match="pywintypesXY.dll"):
        windows.start(options(config_path))


def test_stop_status_and_uninstall(tmp_path, scm) -> None:
    config_path = write_windows_config(tmp_path)
    opts = options(config_path)
    assert windows.status(opts) == 1 and "not installed" in opts.out.getvalue()
    windows.install(options(config_path, grant=False, start=True))

    opts = options(config_path)
    assert windows.status(opts) == 0
    text = opts.out.getvalue()
    assert "RUNNING" in text and "automatic" in text and "NT AUTHORITY\\LocalService" in text
    assert f"config:  {config_path}" in text

    opts = options(config_path)
    assert windows.uninstall(opts) == 0
    assert scm.names()[-2:] == ["stop_service", "remove_service"]
    assert "config, logs and inbox folders are kept" in opts.out.getvalue() and config_path.exists()
    opts = options(config_path)
    assert windows.uninstall(opts) == 0 and "not installed" in opts.out.getvalue()
    with pytest.raises(ServiceError, match="not installed"):
        windows.stop(options(config_path))


def test_stopping_a_stopped_service_is_fine(tmp_path, scm) -> None:
    config_path = write_windows_config(tmp_path)
    windows.install(options(config_path, grant=False))
    opts = options(config_path)
    assert windows.stop(opts) == 0 and "not running" in opts.out.getvalue()


# -- the service class the SCM runs ----------------------------------------------------


def test_the_service_reports_running_after_the_observers_and_stops_within_its_hint(tmp_path, scm) -> None:
    emu = emulator_with_password(tmp_path).start()
    try:
        config_path = write_config(tmp_path, emu, stop_timeout=5)
        scm.parameters[("dropbox-sync-school2", "ConfigPath")] = str(config_path)
        service = windows.DropboxSyncService(["dropbox-sync-school2"])
        runner = threading.Thread(target=service.SvcRun, name="scm-service-main")
        runner.start()
        try:
            wait_until(lambda: any(r[0] == win32_scm.SERVICE_RUNNING for r in service.reported))
            service.SvcStop()  # what the SCM's control thread calls
        finally:
            service.stop_requested.set()
            runner.join(30)
    finally:
        emu.stop()
    assert not runner.is_alive()
    states = [(state, hint) for state, hint, _code, _specific in service.reported]
    assert states[0] == (win32_scm.SERVICE_START_PENDING, 30_000)
    assert states[1][0] == win32_scm.SERVICE_RUNNING
    assert states[2:] == [
        (win32_scm.SERVICE_STOP_PENDING, 20_000),
        (win32_scm.SERVICE_STOP_PENDING, 20_000),
    ]  # 5 s + 15
    assert [level for level, _ in scm.events] == ["info", "info"]
    assert scm.events[0][1].startswith("dropbox-sync-school2 started: 1 inbox, 0 held, 0 waiting")
    assert scm.events[1][1] == "dropbox-sync-school2 stopped"
    assert list((tmp_path / "logs").glob("dropbox-sync_*.log")), "the service logs to daily files"


def test_a_config_error_is_logged_and_stops_cleanly_so_the_recovery_actions_do_not_restart_it(tmp_path, scm) -> None:
    # Recovery runs on a non-crash stop only when dwWin32ExitCode != 0 (SERVICE_FAILURE_ACTIONS_FLAG):
    # returning from SvcRun makes pythonservice.exe report STOPPED with 0, so no restart every 10 s.
    scm.parameters[("dropbox-sync", "ConfigPath")] = str(tmp_path / "missing.toml")
    service = windows.DropboxSyncService(["dropbox-sync"])
    service.SvcRun()  # returns: no ServiceFailed, no error exit code
    ((level, text),) = scm.events
    assert level == "error"
    assert text.startswith(f"dropbox-sync cannot run: {tmp_path / 'missing.toml'}: config file not found")
    assert "Not restarted automatically: fix the config" in text
    assert [r[0] for r in service.reported] == [win32_scm.SERVICE_START_PENDING, win32_scm.SERVICE_STOP_PENDING]
    assert all(code == 0 and specific == 0 for _s, _h, code, specific in service.reported)


def test_a_service_that_cannot_start_for_another_reason_fails_for_the_recovery_actions(tmp_path, scm) -> None:
    emu = emulator_with_password(tmp_path).start()
    try:
        config_path = write_config(tmp_path, emu)
        # The state dir cannot be made (a disk not mounted yet, say): worth retrying later.
        (tmp_path / "state").write_text("a file where the state folder should be", encoding="utf-8")
        scm.parameters[("dropbox-sync", "ConfigPath")] = str(config_path)
        service = windows.DropboxSyncService(["dropbox-sync"])
        with pytest.raises(windows.ServiceFailed):  # an error exit: the recovery actions retry it later
            service.SvcRun()
    finally:
        emu.stop()
    ((level, text),) = scm.events
    assert level == "error" and "Not restarted" not in text


def test_without_a_stored_path_the_site_config_is_used(scm) -> None:
    assert windows.configured_config_path("dropbox-sync") == paths.default_config_path()
