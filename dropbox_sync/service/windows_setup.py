"""What ``windows.install`` puts in place besides the service entry: the service host
(``pythonservice.exe`` and the DLLs it links against, copied into the venv root; see the
docstring of ``windows.py`` for why), the folder rights of the service account, and the
warnings about inboxes on a share.
"""

from __future__ import annotations

import filecmp
import os
import sys
from pathlib import Path, PureWindowsPath

from dropbox_sync import paths
from dropbox_sync.errors import ServiceError
from dropbox_sync.service import ServiceOptions
from dropbox_sync.service import win32_host as host
from dropbox_sync.service.plan import InstallFacts, is_network_path

# Well-known accounts by SID, so icacls works on localised Windows too
# ("NT-AUTORITÄT\\LOKALER DIENST"); these accounts take no password.
WELL_KNOWN = {
    "nt authority\\localservice": "*S-1-5-19",
    "nt authority\\local service": "*S-1-5-19",
    "nt authority\\networkservice": "*S-1-5-20",
    "nt authority\\network service": "*S-1-5-20",
    "localsystem": "*S-1-5-18",
    "nt authority\\system": "*S-1-5-18",
}


def require_readable_python() -> None:
    """The service account must read the base Python: a per-user install under a profile is private."""
    base = PureWindowsPath(sys.base_prefix)
    users = PureWindowsPath(os.environ.get("SystemDrive", "C:") + "\\Users")
    if base.is_relative_to(users):
        raise ServiceError(
            f"Python is installed for one user only ({base}); a service account cannot read it. "
            "Install Python 3.11+ 'for all users' (C:\\Program Files), recreate the venv, "
            "then install the service again"
        )


def host_dir() -> Path:
    """The venv root: pyvenv.cfg there makes pythonservice.exe use the venv's site-packages."""
    return Path(sys.prefix)


def prepare_host(prefix: Path, files: host.HostFiles, opts: ServiceOptions) -> Path:
    """Put pythonservice.exe and the DLLs it links against together in the venv root."""
    target = prefix / files.exe.name
    for source in (files.exe, *files.dlls):
        destination = prefix / source.name
        if source.resolve() == destination.resolve():
            continue
        if destination.exists() and filecmp.cmp(source, destination, shallow=False):
            continue
        _copy(source, destination)
        opts.say(f"copied {source.name} into {prefix} (the service host must find it there)")
    return target


def _copy(source: Path, destination: Path) -> None:
    """A plain byte copy: shutil.copy2 calls CopyFile2 on Python 3.12+, which Wine 8 lacks (the
    process aborts), and a half-copied DLL must never be left where the SCM will load it."""
    partial = destination.with_name(destination.name + ".partial")
    partial.write_bytes(source.read_bytes())
    os.replace(partial, destination)


def grants_for(facts: InstallFacts, account: str) -> list[tuple[Path, str, bool]]:
    """(path, icacls rights, inherit) the account needs; network paths are the share admin's job.

    The state dir is granted without inheritance because on Windows it is
    C:\\ProgramData\\dropbox-sync itself, which also holds the config and the
    venv: the service may create its journal there, not rewrite its own code.
    """
    state = facts.state_dir or paths.state_dir()
    logs = facts.log_dir or paths.log_dir()
    wanted = [(state, "M", False)]
    wanted += [(state / name, "M", False) for name in paths.STATE_FILES if (state / name).exists()]
    # Inherited, so a lock file a technician's `once` (an administrator) created first is still
    # the service's to open: else the service would take it for held by another process.
    wanted.append((state / paths.LOCK_DIR, "M", True))
    wanted.append((logs, "M", True))
    wanted += [(inbox, "M", True) for inbox in facts.inbox_paths if not is_network_path(inbox)]
    wanted += [(file, "R", False) for file in facts.password_files if not is_network_path(file)]
    return wanted


def grant_folders(facts: InstallFacts, account: str, opts: ServiceOptions) -> None:
    who = WELL_KNOWN.get(account.lower(), account)
    state = facts.state_dir or paths.state_dir()
    if state.is_dir():
        try:
            (state / paths.LOCK_DIR).mkdir(exist_ok=True)  # made now, so it can be granted now
        except OSError:
            pass  # the warning below names it
    for path, rights, inherit in grants_for(facts, account):
        if not path.exists():
            opts.say(f"warning: {path} does not exist yet; grant {account} rights on it once it does")
            continue
        try:
            host.grant(path, who, rights, inherit=inherit)
        except ServiceError as exc:
            opts.say(f"warning: {exc}")
            continue
        opts.say(f"granted {account} {'Modify' if rights == 'M' else 'Read'} on {path}")


def warn_about_shares(facts: InstallFacts, account: str, opts: ServiceOptions) -> None:
    """Tell the installer that inboxes on a share need rights we cannot grant from here
    (a warning when the account, LocalService, cannot reach a share at all)."""
    shares = [p for p in facts.inbox_paths if is_network_path(p)]
    if not shares:
        return
    if account.lower() in WELL_KNOWN and WELL_KNOWN[account.lower()] == "*S-1-5-19":
        opts.say(
            "warning: LocalService has no network credentials and cannot open "
            + ", ".join(map(str, shares))
            + ": install with --account DOMAIN\\svc-account (or a "
            "managed service account DOMAIN\\name$) that has Modify rights on the share and folder; "
            "see docs/install-windows.md"
        )
    else:
        opts.say(
            f"note: give {account} Modify rights on the share and folder of "
            + ", ".join(map(str, shares))
            + " (see docs/install-windows.md)"
        )
