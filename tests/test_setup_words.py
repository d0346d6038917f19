"""Config on the machine it runs on: init's example and hint, Windows backslashes, control characters."""

from __future__ import annotations

import sys
import tomllib

import pytest

from dropbox_sync import config
from dropbox_sync.config import example
from tests.support import run_cli

HINT = 'in "double quotes" a backslash starts an escape'
FORWARD = "forward slashes (\"D:/SIS/export\") or in single quotes ('D:\\SIS\\export')"


@pytest.mark.skipif(sys.platform != "linux", reason="the Linux example is written on Linux")
def test_init_writes_linux_paths_and_its_hint_carries_the_config(tmp_path):
    target = tmp_path / "my config" / "dropbox.toml"
    done = run_cli("--config", str(target), "init")
    assert done.returncode == 0, done.stderr
    text = target.read_text(encoding="utf-8")
    assert 'path = "/srv/sis/export"' in text and "/etc/dropbox-sync/infiniti.secret" in text
    assert "D:/" not in text and "C:/" not in text and "Windows" not in text and "C:\\" not in text
    assert f"dropbox-sync --config '{target}' check --online" in done.stdout
    tomllib.loads(text)
    # The example as written parses (the inbox folder may be missing: the service waits for it).
    done = run_cli("--config", str(target), "check")
    assert "Traceback" not in done.stderr and "not valid TOML" not in done.stderr


def test_the_example_fits_each_platform():
    assert example.example_text("win32") == example.EXAMPLE.read_text(encoding="utf-8")
    assert "forward slashes" in example.example_text("win32")
    for platform, folder in (("linux", "/srv/sis/export"), ("darwin", "/Users/Shared/SIS/export")):
        text = example.example_text(platform)
        assert f'"{folder}"' in text and "D:/" not in text and "C:/" not in text, platform
        tomllib.loads(text)
    assert example.next_step(None).endswith("then run: dropbox-sync check --online")
    assert example.next_step(example.EXAMPLE.with_name("a b.toml"), "win32").endswith(
        f'dropbox-sync --config "{example.EXAMPLE.with_name("a b.toml")}" check --online'
    )


def write(tmp_path, path_line: str):
    target = tmp_path / "config.toml"
    target.write_text(
        f'[[inbox]]\nname = "s"\n{path_line}\nurl = "https://library.example.edu/api/import/users"\n'
        'username = "u"\npassword = "secret-1"\n',
        encoding="utf-8",
    )
    target.chmod(0o600)
    return target


def test_a_toml_error_from_windows_backslashes_says_how_to_write_the_path(tmp_path):
    for line in ('path = "D:\\SIS\\export"', 'path = "C:\\Users\\office\\export"', 'path = "\\\\server\\share"'):
        done = run_cli("--config", str(write(tmp_path, line)), "check")
        assert done.returncode == 2, line
        assert "not valid TOML" in done.stderr and "A Windows path?" in done.stderr and FORWARD in done.stderr, line
        assert "Traceback" not in done.stderr


def test_a_toml_error_elsewhere_gets_no_path_hint(tmp_path):
    target = write(tmp_path, 'path = "/srv/x"')
    target.write_text(target.read_text(encoding="utf-8") + "settle_seconds = = 5\n", encoding="utf-8")
    done = run_cli("--config", str(target), "check")
    assert done.returncode == 2 and "not valid TOML" in done.stderr and "Windows path" not in done.stderr


def test_a_path_with_a_control_character_is_refused(tmp_path):
    done = run_cli("--config", str(write(tmp_path, 'path = "D:\\temp"')), "check")
    assert done.returncode == 2
    assert 'inbox "s": path holds a control character (a tab, from \\t): "D:\\temp"' in done.stderr
    assert FORWARD in done.stderr
    target = write(tmp_path, "path = '/srv/sis'")
    text = target.read_text(encoding="utf-8").replace('password = "secret-1"', 'password_file = "D:\\new.txt"')
    target.write_text(text, encoding="utf-8")
    with pytest.raises(config.ConfigError, match=r"password_file holds a control character \(a line break"):
        config.load(target)
