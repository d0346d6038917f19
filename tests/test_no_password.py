"""Commands that do not send work where the password cannot be read (issue 13).

Real subprocesses, with the password's environment variable unset or its file
missing: reading a config never reads a password; only the commands that send
(``once``, ``send``, ``check --online``, ``run``) do, and they say which key.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import good_csv

VARIABLE = "DROPBOX_SYNC_TEST_NO_SUCH_PASSWORD"
SOURCES = {
    "env": f'password_env = "{VARIABLE}"',
    "file": 'password_file = "missing-password.txt"',
}


def write(tmp_path: Path, source: str) -> Path:
    inbox = tmp_path / "inbox"
    for folder in ("held", "failed", "sending", "processed"):
        (inbox / folder).mkdir(parents=True)
    path = tmp_path / "config.toml"
    path.write_text(
        f"""
state_dir = "state"
log_dir = "logs"

[[inbox]]
name = "students"
path = "inbox"
url = "https://127.0.0.1:9/api/import/users"
username = "autoimport"
{source}
""",
        encoding="utf-8",
    )
    return path


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != VARIABLE}
    return subprocess.run(
        [sys.executable, "-m", "dropbox_sync", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


@pytest.mark.parametrize("kind", SOURCES)
def test_commands_that_do_not_send_need_no_password(tmp_path, kind):
    config = write(tmp_path, SOURCES[kind])
    inbox = tmp_path / "inbox"
    (inbox / "waiting.csv").write_text(good_csv("a"), encoding="utf-8")
    (inbox / "held" / "shrunk.csv").write_text(good_csv("b"), encoding="utf-8")
    (inbox / "failed" / "20261125T020000Z_old.csv").write_text(good_csv("c"), encoding="utf-8")

    for args, expected in [
        (["status"], 0),
        (["status", "--json"], 0),
        (["check"], 0),
        (["approve", "shrunk.csv"], 0),
        (["retry"], 0),
        (["history"], 0),
        (["preview", str(inbox / "waiting.csv")], 0),
    ]:
        done = cli(config, *args)
        assert done.returncode == expected, (args, done.stdout, done.stderr)
        assert "password" not in done.stderr, (args, done.stderr)
    assert (inbox / "old.csv").is_file(), "retry moved the failed file back"
    assert not (inbox / "held" / "shrunk.csv").exists(), "approve took the held file"

    fresh = tmp_path / "new" / "config.toml"
    assert cli(fresh, "init").returncode == 0
    service = cli(config, "service", "status")
    assert service.returncode != 2 and "password" not in service.stderr, service.stderr


@pytest.mark.parametrize("kind", SOURCES)
def test_commands_that_send_name_the_missing_password(tmp_path, kind):
    config = write(tmp_path, SOURCES[kind])
    (tmp_path / "inbox" / "waiting.csv").write_text(good_csv("a"), encoding="utf-8")
    key = SOURCES[kind].split()[0]
    for args in (["once"], ["send", str(tmp_path / "inbox" / "waiting.csv")], ["check", "--online"]):
        done = cli(config, *args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert f'config.toml: inbox "students": {key} ' in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr
    assert (tmp_path / "inbox" / "waiting.csv").is_file(), "nothing was touched"


def test_set_password_finds_the_inbox_the_way_the_service_does(tmp_path, monkeypatch):
    """An inbox named after its folder, its username in [defaults]: the raw-TOML lookup
    set-password had before missed both; it now loads the config like every command."""
    from dropbox_sync import config

    path = tmp_path / "config.toml"
    (tmp_path / "students").mkdir()
    path.write_text(
        '[defaults]\nusername = "autoimport"\n\n[[inbox]]\npath = "students"\n'
        'url = "https://127.0.0.1:9/api/import/users"\npassword_keyring = true\n',
        encoding="utf-8",
    )
    keyring_env = {
        "PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring",
        "XDG_DATA_HOME": str(tmp_path / "xdg"),
    }
    env = {**os.environ, **keyring_env}
    stored = subprocess.run(
        [sys.executable, "-m", "dropbox_sync", "--config", str(path), "set-password", "students", "--stdin"],
        input="Keyring-Pa55\n",
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert stored.returncode == 0, stored.stderr
    assert 'stored the password of autoimport for inbox "students"' in stored.stdout
    for name, value in keyring_env.items():
        monkeypatch.setenv(name, value)
    assert config.resolve_secrets(config.load(path)).inboxes[0].password.reveal() == "Keyring-Pa55"
