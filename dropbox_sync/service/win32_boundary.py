"""The boundary between our Windows code and pywin32: which platform, and which errors.

Every Service Control Manager, registry, Event Log and ACL call of the Windows
backend (windows.py, windows_setup.py) goes through a function of
``win32_scm`` (the service's registration and state) or ``win32_host`` (what
surrounds it: the process that hosts it, the Event Log, rights and ACLs), so
the backend's logic runs on Linux in tests by patching those two modules alone
(the way platformdirs tests its Windows code, DESIGN §7.6). pywin32 is imported
inside the functions, only ever on Windows. pywin32 errors are translated at
this boundary into ``Win32Error`` carrying the Windows error number
(DESIGN §7.4).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from dropbox_sync.errors import ServiceError, Win32Error


def require_windows() -> None:
    """Refuse, with a clear message, a Windows service action on another platform."""
    if sys.platform != "win32":
        raise ServiceError("this is a Windows service action; pywin32 exists only on Windows")


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Turn a pywin32 error raised inside the block into ``Win32Error`` (its number, function, text)."""
    import pywintypes

    try:
        yield
    except pywintypes.error as exc:
        raise Win32Error(exc.winerror, exc.funcname or "Windows", exc.strerror or "") from exc
