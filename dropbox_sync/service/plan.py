"""What installing a service needs to know from the config, even an unfinished one.

The service itself only ever runs on ``config.load`` (strict, validated). The
installer is different: it runs right after ``dropbox-sync init``, before the
technician has edited the file, and as an administrator who may not see the
inbox share. A strict load would fail on an unfinished file for reasons that do
not matter to the install. So this reads only the paths (inboxes, state/log
dirs, password files) and the stop timeout from ``config.read_toml``, resolving
them as config.py does, and reports the strict verdict separately (the load and
the passwords read as the service will, with its environment) so the installer
can warn without stopping.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

from dropbox_sync import config as config_module
from dropbox_sync import paths
from dropbox_sync.errors import ConfigError
from dropbox_sync.service.oscmd import unstaged

DEFAULT_STOP_TIMEOUT = float(config_module.INBOX_DEFAULTS["stop_timeout"])


@dataclass(frozen=True)
class InstallFacts:
    config_path: Path  # where the service will read it (absolute)
    inbox_paths: tuple[Path, ...]
    state_dir: Path | None  # None: the platform's site state dir
    log_dir: Path | None
    password_files: tuple[Path, ...]
    stop_timeout: float  # the longest of all inboxes
    problem: str | None  # why a strict load fails today, if it does

    @property
    def stop_budget(self) -> float:
        from dropbox_sync.service.core import STOP_MARGIN

        return float(math.ceil(self.stop_timeout + STOP_MARGIN))


def read_facts(
    config_path: Path, *, read_from: Path | None = None, environment: Mapping[str, str] | None = None
) -> InstallFacts:
    """Facts from the config that will live at ``config_path`` (read from ``read_from`` if staged).
    ``environment``: variables the service will have that this process may not (systemd's
    EnvironmentFile), for the strict load's verdict."""
    source = read_from or config_path
    raw = config_module.read_toml(source)
    base = config_path.parent
    defaults = raw.get("defaults") if isinstance(raw.get("defaults"), dict) else {}
    tables = [t for t in raw.get("inbox", []) if isinstance(t, dict)] if isinstance(raw.get("inbox"), list) else []
    merged = [{**defaults, **table} for table in tables]
    return InstallFacts(
        config_path=config_path,
        inbox_paths=tuple(p for p in (_path(m.get("path"), base) for m in merged) if p is not None),
        state_dir=_path(raw.get("state_dir"), base),
        log_dir=_path(raw.get("log_dir"), base),
        password_files=tuple(p for p in (_path(m.get("password_file"), base) for m in merged) if p is not None),
        stop_timeout=max((_number(m.get("stop_timeout")) for m in merged), default=DEFAULT_STOP_TIMEOUT),
        problem=_strict_problem(source, environment or {}),
    )


def _path(value: Any, base: Path) -> Path | None:
    """Resolve like config.py: env vars, ~, relative to the config's folder."""
    if not isinstance(value, str) or not value.strip():
        return None
    expanded = os.path.expandvars(os.path.expanduser(value))
    if is_network_path(expanded):
        return Path(expanded)
    return Path(os.path.normpath(base / expanded))


def _number(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return DEFAULT_STOP_TIMEOUT


def _strict_problem(source: Path, environment: Mapping[str, str]) -> str | None:
    # The variables are set for this one load and put back: install is a one-shot command.
    saved = {name: os.environ.get(name) for name in environment}
    os.environ.update(environment)
    try:
        # The passwords too: the service reads them at start, and the installer is the
        # moment to say one cannot be found (config.load alone reads none).
        config_module.resolve_secrets(config_module.load(source))
    except ConfigError as exc:
        return str(exc)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return None


def is_network_path(path: str | PurePath) -> bool:
    """A UNC path (\\\\server\\share): no local rights can be granted on it from here.

    An extended-length path is a share only as \\\\?\\UNC\\...; \\\\?\\C:\\... is local."""
    text = str(path)
    if text.startswith("\\\\?\\"):
        return text[4:].upper().startswith("UNC\\")
    return text.startswith(("\\\\", "//"))


def program_argv(destdir: Path | None = None) -> list[str]:
    """How a service host starts us: this venv's console script, else ``python -m dropbox_sync``.

    ``sys.executable`` is used as given, never resolved: in a venv it is the
    venv's own interpreter link, and resolving it would escape the venv.
    """
    interpreter = Path(sys.executable)
    script = interpreter.parent / ("dropbox-sync.exe" if sys.platform == "win32" else "dropbox-sync")
    if script.is_file():
        return [str(unstaged(script, destdir))]
    return [str(unstaged(interpreter, destdir)), "-m", "dropbox_sync"]


def remove_data(
    facts: InstallFacts, say: Callable[[str], None], *, read_from: Path | None = None, staged_only: bool = False
) -> None:
    """Delete what dropbox-sync itself wrote: config, journal, its own log files.

    Never an inbox or anything in it: processed/ and failed/ are the school's
    records (DESIGN §5: no file is ever deleted except by retention).
    ``staged_only``: a --destdir staging holds just the config (the service
    never ran there), and this machine's own journal and logs are not its to delete.
    """
    config_file = read_from or facts.config_path
    doomed, folders = [config_file], [config_file.parent]
    if not staged_only:
        state = facts.state_dir or paths.state_dir()
        logs = facts.log_dir or paths.log_dir()
        doomed += [state / name for name in paths.STATE_FILES]
        doomed += [p for pattern in paths.STATE_PATTERNS for p in sorted(state.glob(pattern))]
        doomed += [p for pattern in paths.LOG_PATTERNS for p in sorted(logs.glob(pattern))]
        folders += [state / paths.LOCK_DIR, state, logs]
    for path in doomed:
        if path.is_file():
            path.unlink()
            say(f"removed {path}")
    for folder in dict.fromkeys(folders):
        try:
            folder.rmdir()  # only if empty: someone else's files stay
            say(f"removed {folder}")
        except OSError:
            pass
