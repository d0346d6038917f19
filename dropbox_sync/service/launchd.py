"""macOS: a LaunchDaemon, rendered with plistlib, managed with launchctl's modern verbs.

launchd stops a job with SIGTERM and kills it ``ExitTimeOut`` seconds later
(default 20), so that is set above stop_timeout. ``KeepAlive`` is
``{SuccessfulExit: false}``: launchd restarts the daemon after a crash or an
error exit, but a clean exit after ``service stop`` (SIGTERM) stays stopped;
``RunAtLoad`` starts it at boot, and as soon as it is installed. Logs are our
daily files; stdout/stderr (``--console none``) only catch what happens before
logging starts, in ``launchd.log`` beside them.

The rendering is plain data and is tested on any platform; the launchctl
actions need macOS and root.
"""

from __future__ import annotations

import os
import plistlib
import pwd
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dropbox_sync import paths
from dropbox_sync.errors import ServiceError
from dropbox_sync.service import ServiceOptions
from dropbox_sync.service.oscmd import ToolResult, run_tool, staged, write_atomically
from dropbox_sync.service.plan import InstallFacts, program_argv, read_facts, remove_data

DAEMON_DIR = Path("/Library/LaunchDaemons")


@dataclass(frozen=True)
class PlistSettings:
    label: str
    program: tuple[str, ...]
    config_path: Path
    log_dir: Path
    exit_timeout: int
    user: str | None = None  # None: root, launchd's default for daemons


def settings_for(
    facts: InstallFacts, program: Sequence[str], label: str, log_dir: Path, user: str | None = None
) -> PlistSettings:
    return PlistSettings(
        label=label,
        program=tuple(program),
        config_path=facts.config_path,
        log_dir=log_dir,
        exit_timeout=int(facts.stop_budget),
        user=user,
    )


def render_plist(settings: PlistSettings) -> dict[str, Any]:
    plist: dict[str, Any] = {
        "Label": settings.label,
        "ProgramArguments": [
            *settings.program,
            "--config",
            str(settings.config_path),
            "service",
            "run",
            "--console",
            "none",
        ],
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},
        "ExitTimeOut": settings.exit_timeout,
        "ThrottleInterval": 10,
        "WorkingDirectory": "/",
        "ProcessType": "Standard",
        "StandardOutPath": str(settings.log_dir / paths.LAUNCHD_LOG),
        "StandardErrorPath": str(settings.log_dir / paths.LAUNCHD_LOG),
    }
    if settings.user:
        plist["UserName"] = settings.user
    return plist


def plist_bytes(settings: PlistSettings) -> bytes:
    return plistlib.dumps(render_plist(settings), fmt=plistlib.FMT_XML, sort_keys=False)


def plist_path(label: str, destdir: Path | None = None) -> Path:
    return staged(DAEMON_DIR / f"{label}.plist", destdir)


def launchctl(*args: str) -> ToolResult:
    return run_tool(["launchctl", *args])


def on_macos() -> bool:
    return sys.platform == "darwin"


def _require_live_launchd(action: str) -> None:
    if not on_macos():
        raise ServiceError(f"'service {action}' with launchd needs macOS")
    if os.geteuid() != 0:
        raise ServiceError(f"'service {action}' changes the system: run it as root (sudo)")


def install(opts: ServiceOptions) -> int:
    real = opts.destdir is None
    if real:
        _require_live_launchd("install")
    facts = read_facts(opts.config_path, read_from=staged(opts.config_path, opts.destdir))
    log_dir = facts.log_dir or paths.log_dir()
    settings = settings_for(facts, program_argv(opts.destdir), opts.name, log_dir, opts.account)
    target = plist_path(opts.name, opts.destdir)
    write_atomically(target, plist_bytes(settings))
    opts.say(f"wrote {target}")
    if facts.problem:
        opts.say(
            f"warning: the config does not load yet: {facts.problem}\n"
            "  the daemon will not run until this is fixed (check with: dropbox-sync check)"
        )
    if not real:
        return 0
    _prepare_log_dir(staged(log_dir, opts.destdir), opts.account)
    launchctl("bootout", f"system/{opts.name}")  # a previous version, if loaded; failure means "was not"
    _check(launchctl("bootstrap", "system", str(target)))
    _check(launchctl("enable", f"system/{opts.name}"))
    opts.say(f"loaded {opts.name}: launchd started it and starts it at every boot")
    return 0


def _prepare_log_dir(log_dir: Path, user: str | None) -> None:
    """launchd opens StandardErrorPath as the job's user: the folder must exist and be theirs."""
    log_dir.mkdir(parents=True, exist_ok=True)
    if user:
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            raise ServiceError(f"no user named {user}: create it first, or leave out --account") from None
        os.chown(log_dir, entry.pw_uid, entry.pw_gid)


def uninstall(opts: ServiceOptions) -> int:
    real = opts.destdir is None
    if real:
        _require_live_launchd("uninstall")
        launchctl("bootout", f"system/{opts.name}")
    target = plist_path(opts.name, opts.destdir)
    if target.exists():
        target.unlink()
        opts.say(f"removed {target}")
    else:
        opts.say(f"{target} is not installed")
    if opts.remove_data:
        source = staged(opts.config_path, opts.destdir)
        try:
            facts = read_facts(opts.config_path, read_from=source)
        except Exception:  # noqa: BLE001 - a broken config must not block removing our own files
            facts = InstallFacts(opts.config_path, (), None, None, (), 0.0, None)
        remove_data(facts, opts.say, read_from=source, staged_only=opts.destdir is not None)
    return 0


def start(opts: ServiceOptions) -> int:
    _require_live_launchd("start")
    if not launchctl("print", f"system/{opts.name}").ok:  # unloaded by a bootout: load it again
        _check(launchctl("bootstrap", "system", str(plist_path(opts.name))))
    _check(launchctl("kickstart", f"system/{opts.name}"))
    opts.say(f"{opts.name} started")
    return 0


def stop(opts: ServiceOptions) -> int:
    _require_live_launchd("stop")
    # SIGTERM: the daemon drains and exits 0, and KeepAlive(SuccessfulExit=false) leaves it stopped.
    _check(launchctl("kill", "SIGTERM", f"system/{opts.name}"))
    opts.say(f"{opts.name} asked to stop (it finishes the current upload first)")
    return 0


def status(opts: ServiceOptions) -> int:
    if not on_macos():
        raise ServiceError("'service status' with launchd needs macOS")
    result = launchctl("print", f"system/{opts.name}")
    if not result.ok:
        opts.say(f"{opts.name}: not loaded (install it with: sudo dropbox-sync service install)")
        return 1
    facts = parse_print(result.stdout)
    opts.say(
        f"{opts.name}: {facts.get('state', 'unknown')}"
        + (f", pid {facts['pid']}" if "pid" in facts else "")
        + (f", last exit code {facts['last exit code']}" if "last exit code" in facts else "")
    )
    return 0 if facts.get("state") == "running" else 1


def parse_print(text: str) -> dict[str, str]:
    """The top-level ``key = value`` lines of ``launchctl print`` (its format is informal)."""
    found: dict[str, str] = {}
    for match in re.finditer(r"^\t(state|pid|last exit code) = (.+)$", text, re.MULTILINE):
        found.setdefault(match.group(1), match.group(2).strip())
    return found


def _check(result: ToolResult) -> None:
    if not result.ok:
        raise ServiceError(result.explain())
