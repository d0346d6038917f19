"""The Service Control Manager through pywin32: the service's registration, its state and
its registry parameters.

Install, update and remove the service entry; its recovery (failure actions)
and its own SID; start, stop and query it; the ``Parameters`` key beside it
where the config path is kept. See ``win32_boundary`` for the rules every
call here follows.

The constants are the fixed values from winsvc.h / winerror.h, spelled out so
the logic and its tests need no pywin32.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from dropbox_sync.errors import Win32Error
from dropbox_sync.service.win32_boundary import require_windows, translated

# Service states (SERVICE_STATUS.dwCurrentState)
SERVICE_STOPPED = 1
SERVICE_START_PENDING = 2
SERVICE_STOP_PENDING = 3
SERVICE_RUNNING = 4
SERVICE_CONTINUE_PENDING = 5
SERVICE_PAUSE_PENDING = 6
SERVICE_PAUSED = 7
STATE_NAMES = {
    1: "STOPPED",
    2: "START_PENDING",
    3: "STOP_PENDING",
    4: "RUNNING",
    5: "CONTINUE_PENDING",
    6: "PAUSE_PENDING",
    7: "PAUSED",
}
# Start types
SERVICE_AUTO_START = 2
SERVICE_DEMAND_START = 3
SERVICE_DISABLED = 4
START_TYPE_NAMES = {2: "automatic", 3: "manual", 4: "disabled"}
SC_ACTION_RESTART = 1
# Errors
ERROR_ACCESS_DENIED = 5
ERROR_SERVICE_REQUEST_TIMEOUT = 1053
ERROR_SERVICE_ALREADY_RUNNING = 1056
ERROR_SERVICE_DOES_NOT_EXIST = 1060
ERROR_SERVICE_NOT_ACTIVE = 1062
ERROR_SERVICE_MARKED_FOR_DELETE = 1072
ERROR_SERVICE_EXISTS = 1073
ERROR_SERVICE_SPECIFIC_ERROR = 1066
ERROR_SERVICE_LOGON_FAILED = 1069

_SERVICES_KEY = r"SYSTEM\CurrentControlSet\Services"


@dataclass(frozen=True)
class ServiceStatus:
    state: int
    win32_exit_code: int = 0
    service_exit_code: int = 0

    @property
    def state_name(self) -> str:
        return STATE_NAMES.get(self.state, str(self.state))


@dataclass(frozen=True)
class ServiceConfig:
    start_type: int
    binary_path: str
    account: str


# -- the service entry -----------------------------------------------------------------


def install_service(
    name: str,
    display_name: str,
    description: str,
    class_string: str,
    exe: Path,
    *,
    start_type: int,
    delayed: bool,
    account: str,
    password: str | None,
) -> None:
    """Register the service hosted by ``exe``; pywin32 also writes the PythonClass key."""
    require_windows()
    import win32serviceutil

    with translated():
        win32serviceutil.InstallService(
            class_string,
            name,
            display_name,
            startType=start_type,
            userName=account,
            password=password,
            exeName=str(exe),
            description=description,
            delayedstart=delayed,
        )


def update_service(
    name: str,
    display_name: str,
    description: str,
    class_string: str,
    exe: Path,
    *,
    start_type: int,
    delayed: bool,
    account: str,
    password: str | None,
) -> None:
    """Change an existing registration to exactly what install_service would create."""
    require_windows()
    import win32serviceutil

    with translated():
        win32serviceutil.ChangeServiceConfig(
            class_string,
            name,
            startType=start_type,
            userName=account,
            password=password,
            exeName=str(exe),
            displayName=display_name,
            description=description,
            delayedstart=delayed,
        )


def remove_service(name: str) -> None:
    require_windows()
    import win32serviceutil

    with translated():
        win32serviceutil.RemoveService(name)


@contextlib.contextmanager
def _service_handle(name: str, access: int) -> Iterator[object]:
    import win32service

    with translated():
        scm = win32service.OpenSCManager(None, None, win32service.SC_MANAGER_CONNECT)
        try:
            service = win32service.OpenService(scm, name, access)
            try:
                yield service
            finally:
                win32service.CloseServiceHandle(service)
        finally:
            win32service.CloseServiceHandle(scm)


def set_failure_actions(name: str, *, delays_ms: Sequence[int], reset_seconds: int) -> None:
    """Restart after each delay in turn (the last one repeats); count failures anew after reset_seconds."""
    require_windows()
    import win32service

    actions = {
        "ResetPeriod": reset_seconds,
        "RebootMsg": None,
        "Command": None,
        "Actions": [(SC_ACTION_RESTART, delay) for delay in delays_ms],
    }
    # SC_ACTION_RESTART needs SERVICE_START access on the handle (ChangeServiceConfig2 docs).
    with _service_handle(name, win32service.SERVICE_CHANGE_CONFIG | win32service.SERVICE_START) as service:
        win32service.ChangeServiceConfig2(service, win32service.SERVICE_CONFIG_FAILURE_ACTIONS, actions)


def set_failure_actions_on_error_exit(name: str) -> None:
    """Apply the failure actions also when the service stops itself with an error code.

    Without this flag the SCM restarts only after a crash; pythonservice.exe
    reports a Python exception as a clean STOPPED with an error code
    (PythonService.cpp ``stoppedErrorStatus``), which counts only with it.
    """
    require_windows()
    import win32service

    with _service_handle(name, win32service.SERVICE_CHANGE_CONFIG) as service:
        win32service.ChangeServiceConfig2(service, win32service.SERVICE_CONFIG_FAILURE_ACTIONS_FLAG, True)


def set_unrestricted_sid(name: str) -> None:
    """Give the service its own SID (NT SERVICE\\name), so folders can be shared with it alone."""
    require_windows()
    import win32service

    with _service_handle(name, win32service.SERVICE_CHANGE_CONFIG) as service:
        win32service.ChangeServiceConfig2(
            service, win32service.SERVICE_CONFIG_SERVICE_SID_INFO, win32service.SERVICE_SID_TYPE_UNRESTRICTED
        )


def start_service(name: str) -> None:
    require_windows()
    import win32serviceutil

    with translated():
        win32serviceutil.StartService(name)


def stop_service(name: str) -> None:
    require_windows()
    import win32serviceutil

    with translated():
        win32serviceutil.StopService(name)


def query_status(name: str) -> ServiceStatus:
    require_windows()
    import win32service

    with _service_handle(name, win32service.SERVICE_QUERY_STATUS) as service:
        status = win32service.QueryServiceStatus(service)
    return ServiceStatus(state=status[1], win32_exit_code=status[3], service_exit_code=status[4])


def query_config(name: str) -> ServiceConfig:
    require_windows()
    import win32service

    with _service_handle(name, win32service.SERVICE_QUERY_CONFIG) as service:
        config = win32service.QueryServiceConfig(service)
    return ServiceConfig(start_type=config[1], binary_path=config[3], account=config[7])


# -- registry parameters ----------------------------------------------------------------


def set_parameter(name: str, key: str, value: str) -> None:
    """HKLM\\...\\Services\\<name>\\Parameters, where pywin32 keeps service options too."""
    require_windows()
    import winreg

    try:
        with winreg.CreateKeyEx(
            winreg.HKEY_LOCAL_MACHINE, rf"{_SERVICES_KEY}\{name}\Parameters", 0, winreg.KEY_WRITE
        ) as handle:
            winreg.SetValueEx(handle, key, 0, winreg.REG_SZ, value)
    except OSError as exc:
        raise Win32Error(exc.winerror or 0, "RegSetValueEx", exc.strerror or str(exc)) from exc


def get_parameter(name: str, key: str) -> str | None:
    """Read-only on purpose: the service account may not write its own key
    (pywin32's GetServiceCustomOption opens it with RegCreateKey)."""
    require_windows()
    import winreg

    try:
        with winreg.OpenKey(
            winreg.HKEY_LOCAL_MACHINE, rf"{_SERVICES_KEY}\{name}\Parameters", 0, winreg.KEY_READ
        ) as handle:
            value, _kind = winreg.QueryValueEx(handle, key)
    except FileNotFoundError:
        return None
    return str(value)
