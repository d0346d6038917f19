"""Installing on Linux, first try: staging reads the real config; an inbox under /tmp is flagged."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.support import run_cli

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the systemd backend")

CONFIG = """\
[[inbox]]
name = "students"
path = "{inbox}"
url = "https://library.example.edu/api/import/users"
username = "autoimport"
password_env = "DROPBOX_SYNC_PASSWORD"
"""


def test_staging_reads_the_config_at_its_real_path(tmp_path):
    config = tmp_path / "etc" / "config.toml"
    config.parent.mkdir()
    config.write_text(CONFIG.format(inbox="/srv/sis/export"), encoding="utf-8")
    stage = tmp_path / "stage"
    done = run_cli("--config", str(config), "service", "install", "--destdir", str(stage))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "DROPBOX_SYNC_PASSWORD, which is not set" in done.stdout, "no password yet: the install says so"
    # The order of docs/install-linux.md: the password goes into the unit's environment file first.
    env = config.with_name("dropbox-sync.env")
    env.write_text('# for the service\nDROPBOX_SYNC_PASSWORD="Env-Pa55-word-9"\n', encoding="utf-8")
    done = run_cli("--config", str(config), "service", "install", "--destdir", str(stage))
    assert done.returncode == 0, done.stdout + done.stderr
    unit = stage / "etc" / "systemd" / "system" / "dropbox-sync.service"
    text = unit.read_text(encoding="utf-8")
    assert f"--config {config} service run" in text
    assert "ReadWritePaths=-/srv/sis/export" in text, "the inboxes of the real config"
    assert "not found" not in done.stderr and "warning" not in done.stdout, "the service's password is found"
    assert "Env-Pa55-word-9" not in done.stdout + done.stderr + text


def test_an_inbox_under_tmp_is_flagged(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(
        CONFIG.format(inbox="/tmp/sis-export") + CONFIG.replace("students", "staff").format(inbox="/var/tmp/staff"),
        encoding="utf-8",
    )
    done = run_cli("--config", str(config), "service", "install", "--destdir", str(tmp_path / "stage"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert (
        "warning: inbox /tmp/sis-export is under /tmp: the service runs with PrivateTmp=yes and sees its own "
        "empty /tmp, never the files dropped here"
    ) in done.stdout
    assert "warning: inbox /var/tmp/staff is under /var/tmp" in done.stdout
    assert Path(tmp_path / "stage" / "etc" / "systemd" / "system" / "dropbox-sync.service").is_file()
