"""Running dropbox-sync as an operating-system service: one chooser, three backends.

    windows.py   Windows service (pywin32, only through win32_scm.py and win32_host.py)
    systemd.py   Linux systemd unit (Type=notify, watchdog, hardening)
    launchd.py   macOS LaunchDaemon

Every backend offers the same five actions on a ``ServiceOptions``: ``install``,
``uninstall``, ``start``, ``stop``, ``status``; ``chooser.backend()`` picks the
one for this platform (kept out of this module, which every backend imports). Each loads only on the platform
that needs it (pywin32 is imported inside functions), so ``dropbox-sync --help``
stays fast. The service itself runs ``core.run_service``; the adapters only
set its stop flag (DESIGN §7.3).

Like platformdirs, the chooser looks at ``sys.platform`` once and the backend
logic is tested on Linux by patching the one OS layer each backend calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

SERVICE_NAME = "dropbox-sync"
DISPLAY_NAME = "dropbox-sync (Infiniti CSV import)"
DESCRIPTION = (
    "Watches inbox folders and uploads settled CSV files to Infiniti's non-interactive import, "
    "then files each one in processed/ or failed/ with the server's reply."
)


@dataclass(frozen=True)
class ServiceOptions:
    """What ``dropbox-sync service ACTION`` was asked to do."""

    name: str
    config_path: Path  # absolute: a service's working directory is not ours
    out: TextIO
    account: str | None = None  # Windows account / Unix user the service runs as
    password: str | None = None  # only for a Windows domain or local user account
    start: bool = False  # install: also start now
    grant: bool = True  # install: give the account rights on its folders
    destdir: Path | None = None  # install/uninstall: stage files under this root, touch no OS state
    remove_data: bool = False  # uninstall: also delete config, journal and our log files

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)
