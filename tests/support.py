"""Helpers for tests that run the real pipeline against the real emulator."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dropbox_sync import config
from dropbox_sync.emulator import Emulator
from dropbox_sync.pipeline import archive_names, discover
from dropbox_sync.pipeline.runner import Pipeline
from dropbox_sync.state.journal import Journal

PASSWORD = "Tr1cky-Pa55word-7f3a"  # distinctive, so a grep can prove it never leaks
USER = "autoimport"
HEADER = "username,firstName,lastName,library-group,system-group,emailAddress\n"


def good_csv(*usernames: str) -> str:
    return HEADER + "".join(f"{u},First,Last,Year 7,Student,{u}@school.example\n" for u in usernames)


def toml_value(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, bool) else str(value).lower()


def write_config(tmp_path: Path, emulator: Emulator, *, inboxes: int = 1, **overrides: Any) -> Path:
    """A config file with ``inboxes`` inboxes (tmp_path/inbox, inbox2, ...) pointing at the emulator."""
    lines = [f"state_dir = {toml_value(str(tmp_path / 'state'))}", f"log_dir = {toml_value(str(tmp_path / 'logs'))}"]
    for number in range(1, inboxes + 1):
        folder = tmp_path / ("inbox" if number == 1 else f"inbox{number}")
        folder.mkdir(exist_ok=True)
        values = {
            "name": folder.name,
            "path": str(folder),
            "url": f"{emulator.base_url}/api/import/users",
            "username": USER,
            "password": PASSWORD,
            "ca_bundle": str(emulator.ca_file) if emulator.ca_file else "",
            "settle_seconds": 0.3,
            "rescan_seconds": 30,
            "once_retry_seconds": 10,
            **overrides,
        }
        lines.append("[[inbox]]")
        lines += [f"{key} = {toml_value(value)}" for key, value in values.items()]
    path = tmp_path / "config.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    path.chmod(0o600)  # it holds a password, as a technician's config should be
    return path


def with_routes(config_path: Path, emu: Emulator) -> None:
    """Replace the inbox's url by two routes: users first, then groups of tenant school1."""
    text = config_path.read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.startswith("url =")]
    lines += [
        "[[inbox.route]]",
        'match = "users*.csv"',
        f"url = {toml_value(emu.base_url + '/api/import/users')}",
        "[[inbox.route]]",
        'match = ["*groups*.csv"]',
        f"url = {toml_value(emu.base_url + '/api/import/userGroups?tenantId=school1')}",
    ]
    config_path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """``dropbox-sync ARGS`` as a real process, to its end (the words people read: stdout, stderr, exit code)."""
    return subprocess.run(
        [sys.executable, "-m", "dropbox_sync", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def emulator_with_password(tmp_path: Path, **kwargs: Any) -> Emulator:
    return Emulator(tmp_path / "emulator", accounts={USER: (PASSWORD, True)}, keep_uploads=True, **kwargs)


def archived(inbox: Path, which: str) -> list[Path]:
    return discover.listed_files(inbox / which)


def result_of(path: Path) -> dict[str, Any]:
    return json.loads(archive_names.result_path(path).read_text(encoding="utf-8"))


@contextlib.contextmanager
def running_service(config_path: Path) -> Iterator[Pipeline]:
    """The real ``run`` loop of a config, with its journal; stopped and joined after."""
    cfg = config.load(config_path)
    journal = Journal(cfg.state_dir / "journal.sqlite3")
    try:
        with running(Pipeline(cfg, journal=journal, state_dir=cfg.state_dir)) as pipeline:
            yield pipeline
    finally:
        journal.close()


@contextlib.contextmanager
def running(pipeline: Pipeline) -> Iterator[Pipeline]:
    """``pipeline.run`` (observers, workers) in a thread; stopped and joined after."""
    stop = threading.Event()
    thread = threading.Thread(target=pipeline.run, args=(stop,), name="test-service")
    thread.start()
    try:
        assert pipeline.ready.wait(10), "pipeline did not start"
        yield pipeline
    finally:
        stop.set()
        thread.join(30)
        assert not thread.is_alive(), "pipeline did not stop"


def dropbox_sync_process(*args: str) -> subprocess.Popen:
    """``dropbox-sync ARGS`` in a real process of this venv (text stdout/stderr, no stdin)."""
    return subprocess.Popen(
        [sys.executable, "-m", "dropbox_sync", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )


def finish(process: subprocess.Popen, *, stop: bool = False) -> tuple[int, str]:
    """Wait for a process (after SIGTERM if ``stop``); its exit code and stderr. Killed after 60 s."""
    if stop and process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        _out, err = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        _out, err = process.communicate()
    return process.returncode, err
