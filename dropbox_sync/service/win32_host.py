"""What surrounds the Windows service, through pywin32 and icacls: the process that hosts it,
the Event Log, and the rights it needs.

``pythonservice.exe`` and its DLLs (``host_files``), the base class of the
service class (pywin32's, or a stand-in off Windows), whether we run as an
administrator, folder ACLs (icacls) and the account's "Log on as a service"
right, and the Application Event Log. See ``win32_boundary`` for the rules
every call here follows.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dropbox_sync.errors import ServiceError
from dropbox_sync.service.win32_boundary import require_windows, translated


@dataclass(frozen=True)
class HostFiles:
    """pythonservice.exe and the DLLs the SCM must find beside it (pywin32 #1451)."""

    exe: Path
    dlls: tuple[Path, ...]


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
    require_windows()
    import ctypes

    return bool(ctypes.windll.shell32.IsUserAnAdmin())


def host_files() -> HostFiles:
    """Where pywin32 put pythonservice.exe, pywintypesXY.dll, and where pythonXY.dll lives."""
    require_windows()
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
    require_windows()
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
    require_windows()
    import win32security

    with translated():
        sid, _domain, _kind = win32security.LookupAccountName(None, account)
        policy = win32security.LsaOpenPolicy(None, win32security.POLICY_ALL_ACCESS)
        try:
            win32security.LsaAddAccountRights(policy, sid, ["SeServiceLogonRight"])
        finally:
            win32security.LsaClose(policy)


# -- the Event Log ----------------------------------------------------------------------


def register_event_source(name: str) -> None:
    """Register the Event Log source now, as an administrator.

    The service account cannot write that registry key itself; pywin32 says
    installers should call SetEventSourceName(name, True) (servicemanager docs).
    """
    require_windows()
    import servicemanager

    with translated():
        servicemanager.SetEventSourceName(name, True)


def log_event(level: str, message: str) -> None:
    """Write to the Windows Application Event Log under the service's source."""
    require_windows()
    import servicemanager

    write = {
        "info": servicemanager.LogInfoMsg,
        "warning": servicemanager.LogWarningMsg,
        "error": servicemanager.LogErrorMsg,
    }[level]
    from dropbox_sync.redact import scrub

    with contextlib.suppress(Exception):  # the Event Log being full must not stop the service
        write(scrub(message))
