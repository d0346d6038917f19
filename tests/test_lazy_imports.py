"""A command imports what it uses, not what another command or an unused feature needs.

Start-up is the fixed cost of every ``once`` run (issue 13, bench/bench_startup.py):
the mail stack belongs to configs with [notify], watchdog's observers to ``run``,
platformdirs to configs that leave a directory to the platform, the config package
(and loguru) to commands that read a config. These pin the late imports down: a
module-level import slipping back in fails here, whatever the machine's speed.
Each command runs in a fresh interpreter, which reports its ``sys.modules`` at the end.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import PASSWORD, USER, toml_value

REPORT_MODULES = """
import json, sys
from dropbox_sync.cli import main
out, argv = sys.argv[1], sys.argv[2:]
code = main(argv)
with open(out, "w", encoding="utf-8") as handle:
    json.dump({"code": code, "modules": sorted(sys.modules)}, handle)
"""

NOTIFY = """
[notify]
smtp_host = "127.0.0.1"
smtp_port = 9
starttls = false
from = "dropbox-sync@school.example"
to = ["it@school.example"]
"""


def config_with_empty_inbox(tmp_path: Path, *, extra: str = "") -> Path:
    """One empty inbox; its URL (the discard port) is never contacted: nothing is sent."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    values = {"name": "inbox", "path": str(inbox), "url": "https://127.0.0.1:9/users", "username": USER}
    lines = [f"state_dir = {toml_value(str(tmp_path / 'state'))}", f"log_dir = {toml_value(str(tmp_path / 'logs'))}"]
    lines += ["[[inbox]]", *(f"{key} = {toml_value(value)}" for key, value in values.items())]
    lines.append(f"password = {toml_value(PASSWORD)}")
    path = tmp_path / "config.toml"
    path.write_text("\n".join(lines) + "\n" + extra, encoding="utf-8")
    path.chmod(0o600)
    return path


def modules_after(tmp_path: Path, *args: str) -> set[str]:
    out = tmp_path / "modules.json"
    done = subprocess.run(
        [sys.executable, "-c", REPORT_MODULES, str(out), *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["code"] == 0, done.stderr
    return set(report["modules"])


def loaded(modules: set[str], *names: str) -> list[str]:
    return sorted(name for name in names if name in modules)


def test_help_reads_no_config_and_starts_no_logging(tmp_path):
    modules = modules_after(tmp_path, "--help")
    assert "dropbox_sync.cli" in modules
    assert not loaded(modules, "dropbox_sync.config", "loguru", "platformdirs", "smtplib", "watchdog.observers")


@pytest.mark.parametrize("command", ["once", "status"])
def test_a_command_without_notify_imports_no_mail_no_observers_no_platformdirs(tmp_path, command):
    config_path = config_with_empty_inbox(tmp_path)
    modules = modules_after(tmp_path, "--config", str(config_path), command)
    assert "dropbox_sync.config" in modules and "loguru" in modules  # it did read the config and log
    assert not loaded(
        modules,
        "smtplib",
        "dropbox_sync.notify.mail",
        "dropbox_sync.notify.notifier",
        "watchdog.observers",
        "platformdirs",
    )


def test_the_mail_stack_comes_with_a_notify_table(tmp_path):
    """The other side of the rule above: a config with [notify] does load it."""
    config_path = config_with_empty_inbox(tmp_path, extra=NOTIFY)
    modules = modules_after(tmp_path, "--config", str(config_path), "check")
    assert loaded(modules, "smtplib", "dropbox_sync.notify.mail") == ["dropbox_sync.notify.mail", "smtplib"]
