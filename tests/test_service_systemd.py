"""The systemd backend: the unit as text, systemd's own verifier, and the install actions.

The actions are tested by patching the one OS layer they call
(``oscmd.run_tool`` as seen from systemd.py), plus the two facts they read
about the machine: whether systemd runs and whether we are root.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dropbox_sync.errors import ConfigError, ServiceError
from dropbox_sync.service import ServiceOptions, systemd
from dropbox_sync.service.chooser import backend, backend_name
from dropbox_sync.service.oscmd import ToolResult
from dropbox_sync.service.plan import read_facts

EXPECTED_UNIT = """\
# Written by 'dropbox-sync service install'; running it again rewrites this file.
# Local changes belong in a drop-in: systemctl edit dropbox-sync
[Unit]
Description=dropbox-sync: upload CSV files dropped into inbox folders to Infiniti
After=network-online.target remote-fs.target
Wants=network-online.target

[Service]
Type=notify
NotifyAccess=main
ExecStart=/opt/dropbox-sync/venv/bin/dropbox-sync --config /etc/dropbox-sync/config.toml service run
User=dropbox-sync
Group=dropbox-sync
EnvironmentFile=-/etc/dropbox-sync/dropbox-sync.env
StateDirectory=dropbox-sync
LogsDirectory=dropbox-sync
UMask=0027
Restart=on-failure
RestartSec=10
RestartPreventExitStatus=2
WatchdogSec=60
TimeoutStopSec=35

# Hardening (systemd.exec(5)): read-only system, writable only where listed.
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
SystemCallArchitectures=native
AmbientCapabilities=CAP_LEASE
CapabilityBoundingSet=CAP_LEASE
ReadWritePaths=-/srv/sis/export
ReadWritePaths="-/srv/office share/staff 100%%"

[Install]
WantedBy=multi-user.target
"""

CONFIG = """\
[defaults]
stop_timeout = 20

[[inbox]]
name = "students"
path = "/srv/sis/export"
url = "https://library.example.edu/api/import/users"
username = "autoimport"
password_env = "NOT_SET_WHILE_INSTALLING"

[[inbox]]
name = "staff"
path = "/srv/office share/staff 100%"
url = "https://library.example.edu/api/import/users"
username = "autoimport"
password_file = "secret.txt"
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_the_shipped_unit_is_what_the_renderer_makes_for_the_default_layout() -> None:
    shipped = Path(__file__).parents[1] / "installer" / "linux" / "dropbox-sync.service"
    settings = systemd.UnitSettings(
        program=("/opt/dropbox-sync/venv/bin/dropbox-sync",),
        config_path=Path("/etc/dropbox-sync/config.toml"),
        read_write_paths=(Path("/srv/sis/export"), Path("/srv/office share/staff 100%")),
    )
    assert systemd.render_unit(settings) == EXPECTED_UNIT
    example = systemd.render_unit(
        systemd.UnitSettings(
            program=("/opt/dropbox-sync/venv/bin/dropbox-sync",),
            config_path=Path("/etc/dropbox-sync/config.toml"),
            read_write_paths=(Path("/srv/dropbox-sync/inbox"),),
        )
    )
    assert shipped.read_text(encoding="utf-8") == example, "regenerate installer/linux/dropbox-sync.service"


def test_unit_from_a_config_lists_its_inboxes_and_stop_budget(tmp_path) -> None:
    config_path = write(tmp_path / "etc" / "config.toml", CONFIG)
    facts = read_facts(config_path)
    assert facts.problem is not None, "install must go on although the strict load fails today"
    settings = systemd.settings_for(facts, ["/opt/venv/bin/dropbox-sync"])
    assert settings.read_write_paths == (Path("/srv/sis/export"), Path("/srv/office share/staff 100%"))
    assert settings.stop_timeout_sec == 35
    assert settings.protect_home == "yes"


def test_inboxes_under_home_turn_protect_home_to_read_only(tmp_path) -> None:
    settings = systemd.UnitSettings(
        program=("/opt/v/bin/dropbox-sync",),
        config_path=Path("/etc/x.toml"),
        read_write_paths=(Path("/home/office/inbox"),),
    )
    assert settings.protect_home == "read-only"  # "yes" would hide it even from ReadWritePaths
    dev_venv = systemd.UnitSettings(
        program=("/root/venv/bin/dropbox-sync",),
        config_path=Path("/etc/x.toml"),
        read_paths=(Path("/root/venv/bin/dropbox-sync"),),
    )
    assert dev_venv.protect_home == "read-only"


def test_quoting_follows_systemd_syntax() -> None:
    assert systemd._quote("/plain/path") == "/plain/path"
    assert systemd._quote("/a b/c") == '"/a b/c"'
    assert systemd._quote('/a"b\\c') == '"/a\\"b\\\\c"'
    assert systemd._quote("/50%") == "/50%%"  # % starts a specifier
    assert systemd._quote("/$HOME", exec_line=True) == "/$$HOME"  # $ expands on command lines


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed (Debian/Ubuntu package: systemd)"
)
def test_systemd_analyze_verify_accepts_the_rendered_unit(tmp_path) -> None:
    venv_script = tmp_path / "venv" / "bin" / "dropbox-sync"
    write(venv_script, "#!/bin/sh\n").chmod(0o755)
    config_path = write(tmp_path / "etc" / "config.toml", CONFIG)
    settings = systemd.settings_for(read_facts(config_path), [str(venv_script)])
    unit = write(tmp_path / "units" / "dropbox-sync.service", systemd.render_unit(settings))
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    # verify exits 0 even after "ignoring" a bad line: any output is a finding.
    findings = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert done.returncode == 0 and findings == [], findings

    broken = write(tmp_path / "units" / "broken.service", unit.read_text().replace("Type=notify", "Type=notifyy"))
    done = subprocess.run(["systemd-analyze", "verify", str(broken)], capture_output=True, text=True, timeout=60)
    assert "notifyy" in done.stderr, "the verifier must be able to fail this test"


def test_a_config_error_exits_with_the_status_the_unit_does_not_restart(tmp_path) -> None:
    # The unit's ExecStart is `service run`; a broken config must end it with exit 2, which
    # RestartPreventExitStatus=2 keeps from restarting every RestartSec (systemd.service(5)).
    config_path = write(tmp_path / "config.toml", '[[inbox]]\npath = ""\n')
    done = subprocess.run(
        [sys.executable, "-m", "dropbox_sync", "--config", str(config_path), "service", "run", "--console", "stderr"],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "path" in done.stderr
    unit = systemd.render_unit(systemd.UnitSettings(program=("/v/bin/dropbox-sync",), config_path=config_path))
    assert f"RestartPreventExitStatus={done.returncode}" in unit.splitlines()


# -- actions ---------------------------------------------------------------------------


class FakeSystem:
    """Records the tools the backend runs; answers like a healthy system."""

    def __init__(self, monkeypatch, *, running: bool = True, root: bool = True) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.failing: set[str] = set()
        monkeypatch.setattr(systemd, "systemd_running", lambda: running)
        monkeypatch.setattr(systemd.os, "geteuid", lambda: 0 if root else 1000)
        monkeypatch.setattr(systemd, "run_tool", self.run)

    def run(self, argv, **_kwargs) -> ToolResult:
        self.calls.append(tuple(argv))
        failed = " ".join(argv[:2]) in self.failing
        return ToolResult(tuple(argv), 1 if failed else 0, "", "boom" if failed else "")


def options(tmp_path: Path, **overrides) -> ServiceOptions:
    values = {
        "name": "dropbox-sync",
        "config_path": tmp_path / "etc" / "config.toml",
        "out": io.StringIO(),
        "grant": False,
    }
    return ServiceOptions(**{**values, **overrides})


def test_install_writes_the_unit_creates_the_user_and_enables_it(tmp_path, monkeypatch) -> None:
    system = FakeSystem(monkeypatch)
    monkeypatch.setattr(systemd, "UNIT_DIR", tmp_path / "units")
    monkeypatch.setattr(systemd, "ensure_user", lambda user, opts: system.calls.append(("ensure_user", user)))
    write(tmp_path / "etc" / "config.toml", CONFIG)
    opts = options(tmp_path, start=True)
    assert systemd.install(opts) == 0
    unit = (tmp_path / "units" / "dropbox-sync.service").read_text()
    assert "ReadWritePaths=-/srv/sis/export" in unit
    assert f"--config {tmp_path}/etc/config.toml service run" in unit
    assert system.calls == [
        ("ensure_user", "dropbox-sync"),
        ("systemctl", "daemon-reload"),
        ("systemctl", "enable", "dropbox-sync.service"),
        ("systemctl", "start", "dropbox-sync.service"),
    ]
    assert "does not load yet" in opts.out.getvalue()


def test_install_without_systemd_says_so_and_changes_nothing(tmp_path, monkeypatch) -> None:
    system = FakeSystem(monkeypatch, running=False)
    monkeypatch.setattr(systemd, "UNIT_DIR", tmp_path / "units")
    write(tmp_path / "etc" / "config.toml", CONFIG)
    with pytest.raises(ServiceError, match="systemd is not running.*nothing was changed"):
        systemd.install(options(tmp_path))
    assert not (tmp_path / "units").exists() and system.calls == []


def test_install_needs_root_but_staging_does_not(tmp_path, monkeypatch) -> None:
    system = FakeSystem(monkeypatch, running=False, root=False)
    write(tmp_path / "stage" / "etc" / "dropbox-sync" / "config.toml", CONFIG)
    opts = options(tmp_path, config_path=Path("/etc/dropbox-sync/config.toml"), destdir=tmp_path / "stage")
    assert systemd.install(opts) == 0
    unit = tmp_path / "stage" / "etc" / "systemd" / "system" / "dropbox-sync.service"
    assert "--config /etc/dropbox-sync/config.toml service run" in unit.read_text()
    assert system.calls == [], "staging touches no OS state"
    assert systemd.uninstall(opts) == 0 and not unit.exists()

    FakeSystem(monkeypatch, running=True, root=False)
    with pytest.raises(ServiceError, match="run it as root"):
        systemd.install(options(tmp_path, config_path=opts.config_path))


def test_install_without_a_config_is_a_config_error(tmp_path, monkeypatch) -> None:
    FakeSystem(monkeypatch)
    with pytest.raises(ConfigError, match="dropbox-sync init"):
        systemd.install(options(tmp_path))


def test_start_failure_points_at_the_journal_and_status_reports_inactive(tmp_path, monkeypatch) -> None:
    system = FakeSystem(monkeypatch)
    system.failing = {"systemctl start", "systemctl status"}
    with pytest.raises(ServiceError, match="journalctl -u dropbox-sync"):
        systemd.start(options(tmp_path))
    assert systemd.status(options(tmp_path)) == 1
    assert systemd.stop(options(tmp_path)) == 0
    assert ("systemctl", "stop", "dropbox-sync.service") in system.calls


def test_uninstall_disables_removes_and_keeps_data_unless_asked(tmp_path, monkeypatch) -> None:
    system = FakeSystem(monkeypatch)
    monkeypatch.setattr(systemd, "UNIT_DIR", tmp_path / "units")
    unit = write(tmp_path / "units" / "dropbox-sync.service", "[Unit]\n")
    config_path = write(tmp_path / "etc" / "config.toml", CONFIG)
    assert systemd.uninstall(options(tmp_path)) == 0
    assert not unit.exists() and config_path.exists()
    assert system.calls == [("systemctl", "disable", "--now", "dropbox-sync.service"), ("systemctl", "daemon-reload")]
    assert systemd.uninstall(options(tmp_path)) == 0, "uninstalling twice is fine"


def test_remove_data_deletes_our_files_never_the_inbox(tmp_path, monkeypatch) -> None:
    FakeSystem(monkeypatch)
    monkeypatch.setattr(systemd, "UNIT_DIR", tmp_path / "units")
    inbox = tmp_path / "inbox"
    (inbox / "processed").mkdir(parents=True)
    kept = write(inbox / "processed" / "20260101T000000Z_a.csv", "username\n")
    config_path = write(
        tmp_path / "etc" / "config.toml",
        f'state_dir = "{tmp_path / "state"}"\nlog_dir = "{tmp_path / "logs"}"\n'
        f'[[inbox]]\npath = "{inbox}"\nurl = "https://x.example/api/import/users"\n'
        'username = "u"\npassword = "secret"\n',
    )
    state = [
        write(tmp_path / "state" / name, "")
        for name in (
            "journal.sqlite3",
            "notify.json",
            "journal.sqlite3.damaged-20260101T000000Z",
            "locks/inbox-0123456789abcdef.lock",
            "locks/inbox-0123456789abcdef.lock.json",
        )
    ]
    day_log = write(tmp_path / "logs" / "dropbox-sync_2026-01-01.log", "")
    other = write(tmp_path / "logs" / "someone-elses.log", "")
    systemd.uninstall(options(tmp_path, remove_data=True))
    assert not config_path.exists() and not day_log.exists()
    assert not any(p.exists() for p in state) and not (tmp_path / "state").exists()
    assert kept.exists() and other.exists()


def test_the_chooser_picks_by_platform() -> None:
    assert backend_name("win32") == "windows"
    assert backend_name("linux") == "systemd"
    assert backend_name("darwin") == "launchd"
    assert backend("linux") is systemd
    with pytest.raises(ServiceError, match="no service integration"):
        backend_name("freebsd14")


def test_the_dedicated_user_is_created_once_and_other_users_must_exist(tmp_path, monkeypatch) -> None:
    system = FakeSystem(monkeypatch)

    def no_such_user(name):
        raise KeyError(name)

    monkeypatch.setattr(systemd.pwd, "getpwnam", no_such_user)
    systemd.ensure_user("dropbox-sync", options(tmp_path))
    assert system.calls == [
        (
            "useradd",
            "--system",
            "--user-group",
            "--home-dir",
            "/var/lib/dropbox-sync",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            "dropbox-sync",
        )
    ]
    with pytest.raises(ServiceError, match="no user named svc-sync"):
        systemd.ensure_user("svc-sync", options(tmp_path))
    monkeypatch.setattr(systemd.pwd, "getpwnam", lambda name: object())
    systemd.ensure_user("dropbox-sync", options(tmp_path))
    assert len(system.calls) == 1, "an existing user is left alone"


def test_grant_gives_the_user_rwx_acls_on_each_existing_inbox(tmp_path, monkeypatch) -> None:
    system = FakeSystem(monkeypatch)
    monkeypatch.setattr(systemd.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    settings = systemd.UnitSettings(
        program=("/x",), config_path=Path("/etc/x.toml"), read_write_paths=(inbox, tmp_path / "not-mounted")
    )
    opts = options(tmp_path)
    systemd.grant_folders(settings, "dropbox-sync", opts)
    assert system.calls == [("setfacl", "-R", "-m", "u:dropbox-sync:rwX,d:u:dropbox-sync:rwX", str(inbox))]
    assert "not-mounted does not exist yet" in opts.out.getvalue()

    monkeypatch.setattr(systemd.shutil, "which", lambda tool: None)
    opts = options(tmp_path)
    systemd.grant_folders(settings, "dropbox-sync", opts)
    assert "'acl' package" in opts.out.getvalue() and len(system.calls) == 1
