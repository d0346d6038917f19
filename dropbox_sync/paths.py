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
from collections.abc import Callable
from pathlib import Path

from dropbox_sync.errors import ConfigError

APP = "dropbox-sync"
CONFIG_ENV = "DROPBOX_SYNC_CONFIG"

# Every file dropbox-sync keeps in its state dir, named once here.
JOURNAL_FILE = "journal.sqlite3"
JOURNAL_COMPANIONS = ("-wal", "-shm")  # SQLite's own, beside the journal (suffixes)
STATUS_FILE = "status.json"  # the running service's view, for `status` and monitoring
NOTIFY_FILE = "notify.json"  # what the email notifier must remember across restarts
ROSTER_FILE = "roster.sqlite3"  # what Infiniti confirmed, per inbox and route (roster/memory.py); same companions
STATE_FILES = (
    JOURNAL_FILE,
    *(JOURNAL_FILE + c for c in JOURNAL_COMPANIONS),
    STATUS_FILE,
    NOTIFY_FILE,
    ROSTER_FILE,
    *(ROSTER_FILE + c for c in JOURNAL_COMPANIONS),
)
LOCK_DIR = "locks"  # one OS file lock per inbox, with a note of its holder (inboxlock.py)
# Ours too, by pattern: damaged state files set aside (statefiles.py), the locks and their notes.
STATE_PATTERNS = ("*.damaged-*", f"{LOCK_DIR}/*.lock", f"{LOCK_DIR}/*.lock.json")
# The log dir's files: log.DailyFileSink's daily files, launchd's stdout/stderr.
LOG_PREFIX = "dropbox-sync_"  # + YYYY-MM-DD.log / .jsonl
LAUNCHD_LOG = "launchd.log"
LOG_PATTERNS = (f"{LOG_PREFIX}*.log", f"{LOG_PREFIX}*.jsonl", LAUNCHD_LOG)


BACKSLASH_HINT = (
    'in "double quotes" a backslash starts an escape (\\t is a tab): write Windows paths with '
    "forward slashes (\"D:/SIS/export\") or in single quotes ('D:\\SIS\\export')"
)
_CONTROL_NAMES = {
    "\t": "a tab, from \\t",
    "\n": "a line break, from \\n",
    "\r": "a carriage return, from \\r",
    "\b": "a backspace, from \\b",
    "\f": "a form feed, from \\f",
}


def control_character(text: str) -> str | None:
    """The first control character of a config value, named for people ("a line break, from
    \\n"), or None. Paths, inbox names and email headers refuse them."""
    bad = next((c for c in text if ord(c) < 0x20 or ord(c) == 0x7F), None)
    return None if bad is None else _CONTROL_NAMES.get(bad, f"0x{ord(bad):02x}")


def path_value(text: str, base_dir: Path, fail: Callable[[str], ConfigError]) -> Path:
    """A path written in the config: ~ and $VARS expanded, relative to the config's folder,
    normalised by its text alone (the config is parsed without touching the disk;
    ``config.check_files`` resolves links). Used for every path key, password files too.

    A control character is refused: it is what a Windows path in "double quotes"
    becomes ("D:\\temp" holds a tab), and no real folder is named so."""
    bad = control_character(text)
    if bad is not None:
        shown = text.encode("unicode_escape").decode("ascii")
        raise fail(f'holds a control character ({bad}): "{shown}"; {BACKSLASH_HINT}')
    return Path(os.path.normpath(base_dir / os.path.expandvars(os.path.expanduser(text))))


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
    return Path(_platformdirs().site_config_dir(APP, appauthor=False))


def state_dir() -> Path:
    """The journal, status.json and notify.json (``STATE_FILES``) live here."""
    platformdirs = _platformdirs()
    return _first_usable(
        Path(platformdirs.site_state_dir(APP, appauthor=False)),
        Path(platformdirs.user_state_dir(APP, appauthor=False)),
    )


def log_dir() -> Path:
    platformdirs = _platformdirs()
    return _first_usable(
        Path(platformdirs.site_log_dir(APP, appauthor=False)),
        Path(platformdirs.user_log_dir(APP, appauthor=False)),
    )


def _platformdirs():
    # Imported when a directory is first asked for: a config naming state_dir and
    # log_dir, and --help, never need it (it pulls in tempfile and shutil).
    import platformdirs

    return platformdirs


def _first_usable(site: Path, user: Path) -> Path:
    for candidate in (site, user):
        try:
            candidate.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(candidate, os.W_OK):
            return candidate
    return user
