"""The one thin layer over pywin32 (and icacls) that the Windows backend calls.

Every Service Control Manager, registry, Event Log and ACL call of
windows.py goes through a function here, so the backend's logic runs on
Linux in tests by patching this module alone (the way platformdirs tests its
Windows code, DESIGN §7.6). pywin32 is imported inside the functions, only
ever on Windows. pywin32 errors are translated at this boundary into
``Win32Error`` carrying the Windows error number (DESIGN §7.4).

The constants are the fixed values from winsvc.h / winerror.h, spelled out so
the logic and its tests need no pywin32.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from dropbox_sync.errors import ServiceError, Win32Error

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


@dataclass(frozen=True)
class HostFiles:
    """pythonservice.exe and the DLLs the SCM must find beside it (pywin32 #1451)."""

    exe: Path
    dlls: tuple[Path, ...]


def _require_windows() -> None:
    if sys.platform != "win32":
        raise ServiceError("this is a Windows service action; pywin32 exists only on Windows")


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    import pywintypes

    try:
        yield
    except pywintypes.error as exc:
        raise Win32Error(exc.winerror, exc.funcname or "Windows", exc.strerror or "") from exc


# -- the service class's base -------------------------------------------------------


class OffWindowsServiceFramework:
    """Stand-in for ``win32serviceutil.ServiceFramework`` where pywin32 does not exist.

    It keeps the service class importable and its logic testable off Windows,
    like pywin32's own debug mode (``self.ssh is None``): status reports are
    recorded instead of sent to the SCM.
    """

    _svc_name_ = ""

    def __init__(self, args: Sequence[str]) -> None:
        self.ssh = None
        self.reported: list[tuple[int, int, int, int]] = []

    def ReportServiceStatus(
        self,
        serviceStatus: int,
        waitHint: int = 5000,  # noqa: N802, N803 - pywin32's names
        win32ExitCode: int = 0,
        svcExitCode: int = 0,
    ) -> None:  # noqa: N803
        self.reported.append((serviceStatus, waitHint, win32ExitCode, svcExitCode))


def service_framework_base() -> type:
    if sys.platform != "win32":
        return OffWindowsServiceFramework
    import win32serviceutil

    return win32serviceutil.ServiceFramework


# -- privileges and files -----------------------------------------------------------


def is_admin() -> bool:
    _require_windows()
    import ctypes

    return bool(ctypes.windll.shell32.IsUserAnAdmin())


def host_files() -> HostFiles:
    """Where pywin32 put pythonservice.exe, pywintypesXY.dll, and where pythonXY.dll lives."""
    _require_windows()
    import pywintypes
    import win32api
    import win32service

    exe = Path(win32service.__file__).with_name("pythonservice.exe")
    python_dll = Path(win32api.GetModuleFileName(sys.dllhandle))
    beside_python = [python_dll] + [
        python_dll.with_name(n) for n in ("python3.dll", "vcruntime140.dll", "vcruntime140_1.dll")
    ]
    dlls = [Path(pywintypes.__file__)] + [p for p in beside_python if p.is_file()]
    return HostFiles(exe, tuple(dlls))


def grant(path: Path, who: str, rights: str, *, inherit: bool) -> None:
    """icacls: give ``who`` (an account name or ``*SID``) ``rights`` (M, RX, R) on ``path``."""
    _require_windows()
    ace = f"{who}:{'(OI)(CI)' if inherit else ''}{rights}"
    argv = ["icacls", str(path), "/grant", ace, "/C", "/Q"] + (["/T"] if inherit else [])
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:  # no icacls (Wine), or a huge tree
        raise ServiceError(f"icacls could not grant {ace} on {path}: {exc}") from exc
    if done.returncode != 0:
        raise ServiceError(f"icacls could not grant {ace} on {path}: {(done.stderr or done.stdout).strip()}")


def grant_service_logon_right(account: str) -> None:
    """Give ``account`` "Log on as a service" (SeServiceLogonRight).

    services.msc grants it when an account is typed in there; CreateService
    does not, and a service whose account lacks it fails with error 1069.
    """
    _require_windows()
    import win32security

    with _translated():
        sid, _domain, _kind = win32security.LookupAccountName(None, account)
        policy = win32security.LsaOpenPolicy(None, win32security.POLICY_ALL_ACCESS)
        try:
            win32security.LsaAddAccountRights(policy, sid, ["SeServiceLogonRight"])
        finally:
            win32security.LsaClose(policy)


# -- the Service Control Manager ----------------------------------------------------


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
    _require_windows()
    import win32serviceutil

    with _translated():
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
    _require_windows()
    import win32serviceutil

    with _translated():
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
    _require_windows()
    import win32serviceutil

    with _translated():
        win32serviceutil.RemoveService(name)


@contextlib.contextmanager
def _service_handle(name: str, access: int) -> Iterator[object]:
    import win32service

    with _translated():
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
    _require_windows()
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
    _require_windows()
    import win32service

    with _service_handle(name, win32service.SERVICE_CHANGE_CONFIG) as service:
        win32service.ChangeServiceConfig2(service, win32service.SERVICE_CONFIG_FAILURE_ACTIONS_FLAG, True)


def set_unrestricted_sid(name: str) -> None:
    """Give the service its own SID (NT SERVICE\\name), so folders can be shared with it alone."""
    _require_windows()
    import win32service

    with _service_handle(name, win32service.SERVICE_CHANGE_CONFIG) as service:
        win32service.ChangeServiceConfig2(
            service, win32service.SERVICE_CONFIG_SERVICE_SID_INFO, win32service.SERVICE_SID_TYPE_UNRESTRICTED
        )


def start_service(name: str) -> None:
    _require_windows()
    import win32serviceutil

    with _translated():
        win32serviceutil.StartService(name)


def stop_service(name: str) -> None:
    _require_windows()
    import win32serviceutil

    with _translated():
        win32serviceutil.StopService(name)


def query_status(name: str) -> ServiceStatus:
    _require_windows()
    import win32service

    with _service_handle(name, win32service.SERVICE_QUERY_STATUS) as service:
        status = win32service.QueryServiceStatus(service)
    return ServiceStatus(state=status[1], win32_exit_code=status[3], service_exit_code=status[4])


def query_config(name: str) -> ServiceConfig:
    _require_windows()
    import win32service

    with _service_handle(name, win32service.SERVICE_QUERY_CONFIG) as service:
        config = win32service.QueryServiceConfig(service)
    return ServiceConfig(start_type=config[1], binary_path=config[3], account=config[7])


# -- registry parameters and the Event Log ------------------------------------------


def set_parameter(name: str, key: str, value: str) -> None:
    """HKLM\\...\\Services\\<name>\\Parameters, where pywin32 keeps service options too."""
    _require_windows()
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
    _require_windows()
    import winreg

    try:
        with winreg.OpenKey(
            winreg.HKEY_LOCAL_MACHINE, rf"{_SERVICES_KEY}\{name}\Parameters", 0, winreg.KEY_READ
        ) as handle:
            value, _kind = winreg.QueryValueEx(handle, key)
    except FileNotFoundError:
        return None
    return str(value)


def register_event_source(name: str) -> None:
    """Register the Event Log source now, as an administrator.

    The service account cannot write that registry key itself; pywin32 says
    installers should call SetEventSourceName(name, True) (servicemanager docs).
    """
    _require_windows()
    import servicemanager

    with _translated():
        servicemanager.SetEventSourceName(name, True)


def log_event(level: str, message: str) -> None:
    """Write to the Windows Application Event Log under the service's source."""
    _require_windows()
    import servicemanager

    write = {
        "info": servicemanager.LogInfoMsg,
        "warning": servicemanager.LogWarningMsg,
        "error": servicemanager.LogErrorMsg,
    }[level]
    from dropbox_sync.redact import scrub

    with contextlib.suppress(Exception):  # the Event Log being full must not stop the service
        write(scrub(message))
