"""pywin32: what the Windows service adapter (phase 2) is built on.

Imports alone hide the classic failure (error 1053, DESIGN.md 8.11): the SCM
starts ``pythonservice.exe``, which must find ``pywintypesXY.dll``. So this
also checks the files a service registration points at, and that the service
control manager answers.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize("module", ["win32serviceutil", "win32service", "win32event", "servicemanager", "win32api"])
def test_service_modules_import(module: str) -> None:
    importlib.import_module(module)


def test_pythonservice_and_pywintypes_are_installed() -> None:
    import pywintypes
    import win32service

    win32_dir = Path(win32service.__file__).parent
    assert (win32_dir / "pythonservice.exe").is_file()
    pywintypes_dll = Path(pywintypes.__file__)
    assert pywintypes_dll.name.lower() == f"pywintypes{sys.version_info.major}{sys.version_info.minor}.dll"
    assert pywintypes_dll.is_file()


def test_service_control_manager_answers() -> None:
    import win32service

    scm = win32service.OpenSCManager(None, None, win32service.SC_MANAGER_ENUMERATE_SERVICE)
    try:
        services = win32service.EnumServicesStatus(scm)
    finally:
        win32service.CloseServiceHandle(scm)
    assert services, "the SCM listed no services at all"


def test_event_objects_signal_across_threads() -> None:
    # SvcStop sets a win32 event that SvcDoRun waits on: the stop path.
    import threading

    import win32event

    stop = win32event.CreateEvent(None, True, False, None)
    setter = threading.Thread(target=win32event.SetEvent, args=(stop,), name="set-stop")
    setter.start()
    try:
        assert win32event.WaitForSingleObject(stop, 30_000) == win32event.WAIT_OBJECT_0
    finally:
        setter.join(timeout=30)
    assert not setter.is_alive()
