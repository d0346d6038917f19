"""Where dropbox-sync keeps its config, state and logs: the only user of platformdirs.

Site (machine-wide) directories first, not user ones: a Windows service running
as LocalService or LocalSystem would otherwise resolve "user" dirs into
C:\\Windows\\System32\\config\\systemprofile, where no technician looks
(DESIGN §8.10). On Windows they are under C:\\ProgramData\\dropbox-sync. When a
site dir cannot be created (an ordinary user trying the tool on Linux), the
user's own dir is used instead, so the command still works.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import platformdirs

APP = "dropbox-sync"
CONFIG_ENV = "DROPBOX_SYNC_CONFIG"


def default_config_path() -> Path:
    """``$DROPBOX_SYNC_CONFIG``, else the site config dir's config.toml."""
    from_env = os.environ.get(CONFIG_ENV)
    if from_env:
        return Path(from_env)
    return site_config_dir() / "config.toml"


def site_config_dir() -> Path:
    if sys.platform.startswith("linux"):
        # platformdirs says /etc/xdg/dropbox-sync; /etc/dropbox-sync is where a
        # Linux administrator looks, and what the systemd unit names.
        return Path("/etc") / APP
    return Path(platformdirs.site_config_dir(APP, appauthor=False))


def state_dir() -> Path:
    """The journal and status.json live here."""
    return _first_usable(
        Path(platformdirs.site_state_dir(APP, appauthor=False)),
        Path(platformdirs.user_state_dir(APP, appauthor=False)),
    )


def log_dir() -> Path:
    return _first_usable(
        Path(platformdirs.site_log_dir(APP, appauthor=False)),
        Path(platformdirs.user_log_dir(APP, appauthor=False)),
    )


def _first_usable(site: Path, user: Path) -> Path:
    for candidate in (site, user):
        try:
            candidate.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(candidate, os.W_OK):
            return candidate
    return user
