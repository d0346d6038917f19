"""Linux: a hardened systemd unit, rendered from the config, and the sd_notify reporter.

The unit is ``Type=notify``: systemd considers the service started when we say
READY=1, which we do only once every inbox observer runs; ``WatchdogSec=``
restarts it if the pings stop, and we ping only while ``Pipeline.healthy()``
(a wedged or dead inbox worker stops the pings, so systemd restarts us).
``ProtectSystem=strict`` makes the whole file system read-only for the
service except ``ReadWritePaths=`` (the configured inboxes, and any custom
state/log dir) and the ``StateDirectory=``/``LogsDirectory=`` systemd creates
for the ``dropbox-sync`` user. Inbox paths are read from the config at install
time, so after moving an inbox, run ``service install`` again.

``service install --destdir DIR`` only writes the unit under DIR (packaging,
installer tests); without it, it also creates the system user and runs
systemctl, which needs root and a running systemd (``sd_booted(3)``: the
directory /run/systemd/system exists). In a container without systemd it
says so and changes nothing.
"""

from __future__ import annotations

import os
import pwd
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dropbox_sync.errors import ServiceError
from dropbox_sync.service import ServiceOptions
from dropbox_sync.service.core import TICK_SECONDS, Reporter, status_line
from dropbox_sync.service.oscmd import ToolResult, run_tool, staged, write_atomically
from dropbox_sync.service.plan import InstallFacts, is_network_path, program_argv, read_facts, remove_data
from dropbox_sync.service.sdnotify import Notifier, watchdog_seconds

UNIT_DIR = Path("/etc/systemd/system")
ENV_FILE = "dropbox-sync.env"  # beside the config; the unit's EnvironmentFile= (password_env)
DEFAULT_USER = "dropbox-sync"
WATCHDOG_SEC = 60
HOME_DIRS = (Path("/home"), Path("/root"), Path("/run/user"))
SYSTEMD_RUNNING_MARKER = Path("/run/systemd/system")


# -- the unit -----------------------------------------------------------------------


@dataclass(frozen=True)
class UnitSettings:
    program: tuple[str, ...]  # argv that starts dropbox-sync (venv console script)
    config_path: Path
    user: str = DEFAULT_USER
    read_write_paths: tuple[Path, ...] = ()
    read_paths: tuple[Path, ...] = ()  # only used to decide ProtectHome
    stop_timeout_sec: int = 35
    watchdog_sec: int = WATCHDOG_SEC

    @property
    def protect_home(self) -> str:
        """ "yes" hides /home entirely; "read-only" lets ReadWritePaths= reopen a folder under it."""
        under_home = any(_is_under(p, HOME_DIRS) for p in (*self.read_write_paths, *self.read_paths))
        return "read-only" if under_home else "yes"


def settings_for(facts: InstallFacts, program: Sequence[str], user: str = DEFAULT_USER) -> UnitSettings:
    writable = [p for p in facts.inbox_paths if not is_network_path(p)]
    writable += [d for d in (facts.state_dir, facts.log_dir) if d is not None]
    readable = [facts.config_path, Path(program[0]), *facts.password_files]
    return UnitSettings(
        program=tuple(program),
        config_path=facts.config_path,
        user=user,
        read_write_paths=tuple(dict.fromkeys(writable)),
        read_paths=tuple(readable),
        stop_timeout_sec=int(facts.stop_budget),
    )


def render_unit(settings: UnitSettings) -> str:
    exec_start = " ".join(
        _quote(word, exec_line=True)
        for word in (*settings.program, "--config", str(settings.config_path), "service", "run")
    )
    env_file = settings.config_path.parent / ENV_FILE
    lines = [
        "# Written by 'dropbox-sync service install'; running it again rewrites this file.",
        "# Local changes belong in a drop-in: systemctl edit dropbox-sync",
        "[Unit]",
        "Description=dropbox-sync: upload CSV files dropped into inbox folders to Infiniti",
        "After=network-online.target remote-fs.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        # READY=1 comes from us once the observers run; only the main process may notify.
        "Type=notify",
        "NotifyAccess=main",
        f"ExecStart={exec_start}",
        f"User={settings.user}",
        f"Group={settings.user}",
        # password_env = "..." in the config reads its variable from here (mode 0600).
        f"EnvironmentFile=-{_quote(str(env_file))}",
        "StateDirectory=dropbox-sync",
        "LogsDirectory=dropbox-sync",
        "UMask=0027",
        "Restart=on-failure",
        "RestartSec=10",
        # Exit 2 is a config or usage error: restarting cannot fix it, and a restart every
        # 10 s floods the journal (systemd.service(5): RestartPreventExitStatus=).
        "RestartPreventExitStatus=2",
        f"WatchdogSec={settings.watchdog_sec}",
        # Above stop_timeout: an upload in flight gets its full time before SIGKILL.
        f"TimeoutStopSec={settings.stop_timeout_sec}",
        "",
        "# Hardening (systemd.exec(5)): read-only system, writable only where listed.",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        f"ProtectHome={settings.protect_home}",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "ProtectClock=yes",
        "ProtectHostname=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "RestrictNamespaces=yes",
        "RestrictRealtime=yes",
        "RestrictSUIDSGID=yes",
        "LockPersonality=yes",
        "SystemCallArchitectures=native",
        # CAP_LEASE alone: the read-lease probe (writers.py) that tells a file still open
        # for writing, on files another user owns (fcntl(2), F_SETLEASE).
        "AmbientCapabilities=CAP_LEASE",
        "CapabilityBoundingSet=CAP_LEASE",
    ]
    # "-": a missing path (an unmounted share) must not stop the unit from starting;
    # the pipeline reports a missing inbox itself and waits for it.
    lines += [f"ReadWritePaths={_quote('-' + str(path))}" for path in settings.read_write_paths]
    lines += ["", "[Install]", "WantedBy=multi-user.target", ""]
    return "\n".join(lines)


def _quote(word: str, *, exec_line: bool = False) -> str:
    """Quote a word for a unit file: specifiers (%) and, on command lines, $ must be doubled."""
    word = word.replace("%", "%%")
    if exec_line:
        word = word.replace("$", "$$")
    if word and not any(c in word for c in " \t\"'\\;"):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _is_under(path: Path, roots: Sequence[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def unit_name(name: str) -> str:
    return f"{name}.service"


# -- the reporter the service runs with ---------------------------------------------


class SystemdReporter(Reporter):
    """READY=1 once observers run, STATUS= every tick, WATCHDOG=1 only while healthy, STOPPING=1."""

    def __init__(self, notifier: Notifier, watchdog: float | None) -> None:
        self.notifier = notifier
        self.watchdog = watchdog
        # systemd's advice (sd_watchdog_enabled(3)): ping at half the interval.
        self.tick_seconds = min(TICK_SECONDS, watchdog / 2) if watchdog else TICK_SECONDS

    @classmethod
    def from_environ(cls) -> SystemdReporter:
        return cls(Notifier.from_environ(), watchdog_seconds())

    def starting(self, config) -> None:
        self.notifier.send("STATUS=starting the inbox observers")

    def ready(self, pipeline) -> None:
        self.notifier.send("READY=1", f"STATUS={status_line(pipeline.snapshots())}")

    def tick(self, pipeline, healthy: bool) -> None:
        fields = [f"STATUS={status_line(pipeline.snapshots(), healthy)}"]
        if healthy and self.watchdog:
            fields.append("WATCHDOG=1")
        self.notifier.send(*fields)

    def stopping(self) -> None:
        self.notifier.send("STOPPING=1", "STATUS=stopping: finishing the current upload")

    def failed(self, error: BaseException) -> None:
        self.notifier.send(f"STATUS=cannot run: {error}")


# -- actions ------------------------------------------------------------------------


def systemd_running() -> bool:
    return SYSTEMD_RUNNING_MARKER.is_dir()


def _require_live_systemd(action: str) -> None:
    _require_systemd(action)
    if os.geteuid() != 0:
        raise ServiceError(f"'service {action}' changes the system: run it as root (sudo)")


def _require_systemd(action: str) -> None:
    if not systemd_running():
        raise ServiceError(
            f"systemd is not running on this machine (a container, or another init system), "
            f"so there is no service to {action}; nothing was changed. Run 'dropbox-sync run' "
            "under the container's own supervisor instead, or stage the unit with "
            "'service install --destdir DIR'"
        )


def systemctl(*args: str) -> ToolResult:
    return run_tool(["systemctl", *args])


def install(opts: ServiceOptions) -> int:
    real = opts.destdir is None
    if real:
        _require_live_systemd("install")
    source = config_source(opts.config_path, opts.destdir)
    facts = read_facts(opts.config_path, read_from=source, environment=read_environment_file(source.parent / ENV_FILE))
    user = opts.account or DEFAULT_USER
    settings = settings_for(facts, program_argv(opts.destdir), user)
    unit = staged(UNIT_DIR / unit_name(opts.name), opts.destdir)
    write_atomically(unit, render_unit(settings).encode("utf-8"))
    opts.say(f"wrote {unit}")
    for warning in private_tmp_warnings(facts):
        opts.say(f"warning: {warning}")
    if facts.problem:
        opts.say(
            f"warning: the config does not load yet: {facts.problem}\n"
            "  the service will not start until this is fixed (check with: dropbox-sync check)"
        )
    if not real:
        return 0
    ensure_user(user, opts)
    if opts.grant:
        grant_folders(settings, user, opts)
    _check(systemctl("daemon-reload"))
    _check(systemctl("enable", unit_name(opts.name)))
    opts.say(f"enabled {unit_name(opts.name)}: it starts at boot")
    if opts.start:
        return start(opts)
    opts.say(f"start it with: sudo dropbox-sync service start  (or: systemctl start {opts.name})")
    return 0


def read_environment_file(path: Path) -> dict[str, str]:
    """``KEY=value`` lines as systemd's EnvironmentFile= reads them (# and ; comments, optional
    quotes): the password_env variable the service will have. {} if unreadable."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return {}
    found = {}
    for line in lines:
        key, sep, value = line.strip().partition("=")
        if sep and key and not key.startswith(("#", ";")):
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            found[key.strip()] = value
    return found


def config_source(config_path: Path, destdir: Path | None) -> Path:
    """Where to read the config the unit will name: a copy staged under ``destdir`` (a
    package ships it), else the config at its real path (a technician staging the unit to
    look at it first); the unit always names the real path."""
    copy = staged(config_path, destdir)
    return copy if destdir is None or copy.exists() else config_path


# PrivateTmp=yes gives the service its own empty /tmp and /var/tmp (systemd.exec(5),
# "PrivateTmp="): an inbox there is a different, empty folder for the service.
PRIVATE_TMP = (Path("/tmp"), Path("/var/tmp"))


def private_tmp_warnings(facts: InstallFacts) -> list[str]:
    return [
        f"inbox {path} is under {tmp}: the service runs with PrivateTmp=yes and sees its own empty "
        f"{tmp}, never the files dropped here; move the inbox (e.g. to /srv/sis/export) and its 'path' "
        "in the config"
        for path in facts.inbox_paths
        for tmp in PRIVATE_TMP
        if path.is_relative_to(tmp)
    ]


def ensure_user(user: str, opts: ServiceOptions) -> None:
    """Create the dedicated system user the first time; any other account must already exist."""
    try:
        pwd.getpwnam(user)
        return
    except KeyError:
        pass
    if user != DEFAULT_USER:
        raise ServiceError(f"no user named {user}: create it first, or leave out --account")
    _check(
        run_tool(
            [
                "useradd",
                "--system",
                "--user-group",
                "--home-dir",
                "/var/lib/dropbox-sync",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                user,
            ]
        )
    )
    opts.say(f"created the system user {user}")


def grant_folders(settings: UnitSettings, user: str, opts: ServiceOptions) -> None:
    """POSIX ACLs: rwX on each inbox (and default ACLs so new subfolders inherit)."""
    if shutil.which("setfacl") is None:
        for path in settings.read_write_paths:
            opts.say(
                f"note: give {user} write access to {path}, e.g.: setfacl -R -m u:{user}:rwX,d:u:{user}:rwX "
                f"{path}   (setfacl is in the 'acl' package)"
            )
        return
    for path in settings.read_write_paths:
        if not path.is_dir():
            opts.say(f"warning: {path} does not exist yet; give {user} write access once it does")
            continue
        result = run_tool(["setfacl", "-R", "-m", f"u:{user}:rwX,d:u:{user}:rwX", str(path)])
        opts.say(f"granted {user} read/write on {path}" if result.ok else f"warning: {result.explain()}")


def uninstall(opts: ServiceOptions) -> int:
    real = opts.destdir is None
    unit = staged(UNIT_DIR / unit_name(opts.name), opts.destdir)
    if real:
        if os.geteuid() != 0:
            raise ServiceError("'service uninstall' changes the system: run it as root (sudo)")
        if systemd_running():
            result = systemctl("disable", "--now", unit_name(opts.name))
            if not result.ok and unit.exists():
                opts.say(f"warning: {result.explain()}")
    if unit.exists():
        unit.unlink()
        opts.say(f"removed {unit}")
    else:
        opts.say(f"{unit} is not installed")
    if real and systemd_running():
        _check(systemctl("daemon-reload"))
    if opts.remove_data:
        _remove_data(opts)
    return 0


def _remove_data(opts: ServiceOptions) -> None:
    source = staged(opts.config_path, opts.destdir)
    try:
        facts = read_facts(opts.config_path, read_from=source)
    except Exception:  # noqa: BLE001 - a broken config must not block removing our own files
        facts = InstallFacts(opts.config_path, (), None, None, (), 0.0, None)
    remove_data(facts, opts.say, read_from=source, staged_only=opts.destdir is not None)


def start(opts: ServiceOptions) -> int:
    _require_systemd("start")
    result = systemctl("start", unit_name(opts.name))
    if not result.ok:
        raise ServiceError(f"{result.explain()}\n  see: journalctl -u {opts.name} -e")
    opts.say(f"{unit_name(opts.name)} is running")
    return 0


def stop(opts: ServiceOptions) -> int:
    _require_systemd("stop")
    _check(systemctl("stop", unit_name(opts.name)))
    opts.say(f"{unit_name(opts.name)} stopped")
    return 0


def status(opts: ServiceOptions) -> int:
    """systemctl's own status view (state, STATUS= line, last log lines); 0 when active."""
    _require_systemd("query")
    result = systemctl("status", "--no-pager", "--lines=10", unit_name(opts.name))
    opts.say((result.stdout or result.stderr).rstrip())
    return 0 if result.ok else 1


def _check(result: ToolResult) -> None:
    if not result.ok:
        raise ServiceError(result.explain())
