"""Which service backend serves this platform, imported only when an action runs.

Like platformdirs, it looks at ``sys.platform``; the backends import the
package's shared names (``ServiceOptions``), never this module, so there is no
cycle. A backend is imported inside ``backend()``: pywin32 must load only on
Windows and only for a service action, so ``dropbox-sync --help`` stays fast.
"""

from __future__ import annotations

import sys
from types import ModuleType

from dropbox_sync.errors import ServiceError

BACKENDS = ("windows", "systemd", "launchd")


def backend_name(platform: str | None = None) -> str:
    """Which backend serves this platform; ServiceError if none does."""
    platform = sys.platform if platform is None else platform
    if platform == "win32":
        return "windows"
    if platform.startswith("linux"):
        return "systemd"
    if platform == "darwin":
        return "launchd"
    raise ServiceError(
        f"no service integration for platform {platform!r}: run 'dropbox-sync run' under your own supervisor"
    )


def backend(platform: str | None = None) -> ModuleType:
    """The backend module for this platform (imported only now)."""
    name = backend_name(platform)
    if name == "windows":
        from dropbox_sync.service import windows

        return windows
    if name == "systemd":
        from dropbox_sync.service import systemd

        return systemd
    from dropbox_sync.service import launchd

    return launchd
