"""The launchd backend: the plist as data, and launchctl driven through the one OS layer."""

from __future__ import annotations

import io
import plistlib
from pathlib import Path

import pytest

from dropbox_sync.errors import ServiceError
from dropbox_sync.service import ServiceOptions, launchd
from dropbox_sync.service.oscmd import ToolResult
from dropbox_sync.service.plan import read_facts

EXPECTED = {
    "Label": "dropbox-sync",
    "ProgramArguments": [
        "/usr/local/dropbox-sync/venv/bin/dropbox-sync",
        "--config",
        "/Library/Application Support/dropbox-sync/config.toml",
        "service",
        "run",
        "--console",
        "none",
    ],
    "RunAtLoad": True,
    "KeepAlive": {"SuccessfulExit": False},
    "ExitTimeOut": 35,
    "ThrottleInterval": 10,
    "WorkingDirectory": "/",
    "ProcessType": "Standard",
    "StandardOutPath": "/Library/Logs/dropbox-sync/launchd.log",
    "StandardErrorPath": "/Library/Logs/dropbox-sync/launchd.log",
}

LAUNCHCTL_PRINT = """\
system/dropbox-sync = {
\tactive count = 1
\tpath = /Library/LaunchDaemons/dropbox-sync.plist
\tstate = running

\tprogram = /usr/local/dropbox-sync/venv/bin/dropbox-sync
\tpid = 4242
\tlast exit code = 0
\tendpoints = {
\t}
}
"""


def settings(**overrides) -> launchd.PlistSettings:
    values = {
        "label": "dropbox-sync",
        "program": ("/usr/local/dropbox-sync/venv/bin/dropbox-sync",),
        "config_path": Path("/Library/Application Support/dropbox-sync/config.toml"),
        "log_dir": Path("/Library/Logs/dropbox-sync"),
        "exit_timeout": 35,
    }
    return launchd.PlistSettings(**{**values, **overrides})


def test_plist_for_the_default_layout() -> None:
    assert launchd.render_plist(settings()) == EXPECTED
    assert plistlib.loads(launchd.plist_bytes(settings())) == EXPECTED
    assert launchd.render_plist(settings(user="_dropboxsync"))["UserName"] == "_dropboxsync"


def test_exit_timeout_comes_from_the_config_stop_timeout(tmp_path) -> None:
    config_path = tmp_path / "config.toml"
    config_path.write_text('[[inbox]]\npath = "/srv/in"\nstop_timeout = 50\n', encoding="utf-8")
    facts = read_facts(config_path)
    plist = launchd.render_plist(launchd.settings_for(facts, ["/v/bin/dropbox-sync"], "dropbox-sync", tmp_path))
    assert plist["ExitTimeOut"] == 65, "launchd must wait past stop_timeout before SIGKILL"


def test_launchctl_print_is_parsed_for_state_pid_and_exit_code() -> None:
    assert launchd.parse_print(LAUNCHCTL_PRINT) == {"state": "running", "pid": "4242", "last exit code": "0"}


class FakeLaunchctl:
    def __init__(self, monkeypatch, *, loaded: bool = True) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.loaded = loaded
        monkeypatch.setattr(launchd, "on_macos", lambda: True)
        monkeypatch.setattr(launchd.os, "geteuid", lambda: 0)
        monkeypatch.setattr(launchd, "run_tool", self.run)

    def run(self, argv, **_kwargs) -> ToolResult:
        self.calls.append(tuple(argv))
        if argv[1] in ("print", "bootout") and not self.loaded:
            return ToolResult(tuple(argv), 113, "", "Could not find service")
        return ToolResult(tuple(argv), 0, LAUNCHCTL_PRINT if argv[1] == "print" else "", "")


def options(tmp_path: Path, **overrides) -> ServiceOptions:
    values = {"name": "dropbox-sync", "config_path": tmp_path / "config.toml", "out": io.StringIO()}
    return ServiceOptions(**{**values, **overrides})


def test_install_boots_the_daemon_out_and_in_again(tmp_path, monkeypatch) -> None:
    fake = FakeLaunchctl(monkeypatch)
    monkeypatch.setattr(launchd, "DAEMON_DIR", tmp_path / "LaunchDaemons")
    (tmp_path / "config.toml").write_text(f'log_dir = "{tmp_path / "logs"}"\n[[inbox]]\npath = "/srv/in"\n')
    assert launchd.install(options(tmp_path)) == 0
    plist_file = tmp_path / "LaunchDaemons" / "dropbox-sync.plist"
    plist = plistlib.loads(plist_file.read_bytes())
    assert plist["StandardErrorPath"] == str(tmp_path / "logs" / "launchd.log")
    assert (tmp_path / "logs").is_dir(), "launchd does not create the folder of StandardErrorPath"
    assert fake.calls == [
        ("launchctl", "bootout", "system/dropbox-sync"),
        ("launchctl", "bootstrap", "system", str(plist_file)),
        ("launchctl", "enable", "system/dropbox-sync"),
    ]


def test_stop_is_sigterm_and_start_reloads_an_unloaded_daemon(tmp_path, monkeypatch) -> None:
    fake = FakeLaunchctl(monkeypatch, loaded=False)
    launchd.stop(options(tmp_path))
    launchd.start(options(tmp_path))
    assert fake.calls == [
        ("launchctl", "kill", "SIGTERM", "system/dropbox-sync"),
        ("launchctl", "print", "system/dropbox-sync"),
        ("launchctl", "bootstrap", "system", "/Library/LaunchDaemons/dropbox-sync.plist"),
        ("launchctl", "kickstart", "system/dropbox-sync"),
    ]
    assert launchd.status(options(tmp_path)) == 1


def test_status_running_and_uninstall(tmp_path, monkeypatch) -> None:
    fake = FakeLaunchctl(monkeypatch)
    monkeypatch.setattr(launchd, "DAEMON_DIR", tmp_path / "LaunchDaemons")
    opts = options(tmp_path)
    assert launchd.status(opts) == 0
    assert "dropbox-sync: running, pid 4242, last exit code 0" in opts.out.getvalue()
    plist_file = tmp_path / "LaunchDaemons" / "dropbox-sync.plist"
    plist_file.parent.mkdir()
    plist_file.write_bytes(b"")
    assert launchd.uninstall(opts) == 0 and not plist_file.exists()
    assert ("launchctl", "bootout", "system/dropbox-sync") in fake.calls


def test_live_actions_need_macos(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(launchd, "on_macos", lambda: False)
    with pytest.raises(ServiceError, match="needs macOS"):
        launchd.install(options(tmp_path))
    with pytest.raises(ServiceError, match="needs macOS"):
        launchd.status(options(tmp_path))


def test_staging_works_anywhere(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(launchd, "on_macos", lambda: False)
    stage = tmp_path / "stage"
    config_path = Path("/Library/Application Support/dropbox-sync/config.toml")
    staged_config = stage / config_path.relative_to("/")
    staged_config.parent.mkdir(parents=True)
    staged_config.write_text('log_dir = "/Library/Logs/dropbox-sync"\n[[inbox]]\npath = "/Users/Shared/inbox"\n')
    assert launchd.install(options(tmp_path, config_path=config_path, destdir=stage)) == 0
    plist = plistlib.loads((stage / "Library" / "LaunchDaemons" / "dropbox-sync.plist").read_bytes())
    assert plist["ProgramArguments"][1:3] == ["--config", str(config_path)]
