"""The password never appears in console output, logs, results or the journal.

Every failure path we can provoke runs as a real process with a distinctive
password; then every byte written anywhere is searched for it (plain, URL
encoded, and as the base64 Basic Auth token).
"""

from __future__ import annotations

import base64
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest

from tests.support import PASSWORD, USER, emulator_with_password, good_csv, write_config

FORMS = [PASSWORD, urllib.parse.quote(PASSWORD, safe=""),
         base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()]  # fmt: skip


@pytest.fixture
def emu(tmp_path):
    emulator = emulator_with_password(tmp_path).start()
    yield emulator
    emulator.stop()


def run(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "dropbox_sync", "-v", *args], capture_output=True, text=True,
                            timeout=120, stdin=subprocess.DEVNULL)  # fmt: skip
    return result.stdout + result.stderr


def everything_written(root: Path) -> bytes:
    chunks = []
    for path in root.rglob("*"):
        # The config file holds the password by design; the emulator is not ours to search.
        if path.is_file() and "emulator" not in path.parts and path.name != "config.toml":
            chunks.append(path.read_bytes())
    return b"\n".join(chunks)


def assert_no_secret(text: str | bytes, where: str) -> None:
    data = text.encode() if isinstance(text, str) else text
    for form in FORMS:
        assert form.encode() not in data, f"secret leaked into {where}"


def test_no_failure_path_leaks_the_password(tmp_path, emu):
    outputs = []
    inbox = tmp_path / "inbox"

    # 1. TLS failure: no ca_bundle, the emulator's private CA is not trusted.
    untrusted = write_config(tmp_path, emu, ca_bundle="")
    (inbox / "a.csv").write_text(good_csv("a"), encoding="utf-8")
    outputs.append(run("--config", str(untrusted), "once"))
    assert "certificate" in outputs[-1]

    # 2. Credentials rejected (401), by once, send and check --online.
    emu.set_password(USER, "another-password")
    config_path = write_config(tmp_path, emu)
    outputs.append(run("--config", str(config_path), "once"))
    assert "HELD" in outputs[-1]
    # send a real file, so the request reaches HTTP and the 401 path of `send` runs.
    loose = tmp_path / "send-me.csv"
    loose.write_text(good_csv("s"), encoding="utf-8")
    rejected = sum(u.status == 401 for u in emu.uploads())
    outputs.append(run("--config", str(config_path), "send", str(loose)))
    assert sum(u.status == 401 for u in emu.uploads()) == rejected + 1, "send reached the server"
    assert "HTTP 401" in outputs[-1] and "Unauthorised" in outputs[-1]
    outputs.append(run("--config", str(config_path), "check", "--online"))
    assert "online check: HTTP 401" in outputs[-1]
    emu.set_password(USER, PASSWORD)

    # 3. The vendor's curl habit: credentials inside the URL.
    with_url_secret = write_config(tmp_path, emu, url=emu.base_url.replace("https://", f"https://{USER}:{PASSWORD}@")
                                   + "/api/import/users", username=None, password=None)  # fmt: skip
    text = with_url_secret.read_text(encoding="utf-8")
    with_url_secret.write_text("\n".join(l for l in text.splitlines() if not l.endswith("= null")), encoding="utf-8")
    outputs.append(run("--config", str(with_url_secret), "once"))
    assert "url contains credentials" in outputs[-1]

    # 4. Timeouts, then a config error that quotes the URL.
    emu.inject("hang", count=3)
    slow = write_config(tmp_path, emu, timeout=1, once_retry_seconds=1)
    (inbox / "b.csv").write_text(good_csv("b"), encoding="utf-8")
    outputs.append(run("--config", str(slow), "once"))
    bad_url = write_config(tmp_path, emu, url=f"https://{USER}:{PASSWORD}@host:99999/x")
    outputs.append(run("--config", str(bad_url), "once"))
    assert "url is not a valid URL" in outputs[-1]

    for number, output in enumerate(outputs):
        assert_no_secret(output, f"console output of run {number}")
    assert_no_secret(everything_written(tmp_path), "files (logs, results, journal, report.html)")
    assert list((tmp_path / "logs").glob("*.log")), "the runs did write logs to search"
    assert (inbox / "report.html").is_file(), "the runs did write a report page to search"


def test_a_crash_traceback_is_scrubbed_too(tmp_path):
    # An exception whose message holds the password, uncaught in a thread and
    # in the main thread, after the CLI's logging is set up.
    script = f"""
import threading
from dropbox_sync import log
from dropbox_sync.redact import Secret
log.setup(level="INFO", log_dir=__import__("pathlib").Path({str(tmp_path / 'logs')!r}))
secret = Secret({PASSWORD!r})
def boom():
    raise RuntimeError("thread saw " + secret.reveal())
t = threading.Thread(target=boom); t.start(); t.join()
raise RuntimeError("main saw " + secret.reveal())
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "thread saw ***" in result.stderr and "main saw ***" in result.stderr
    assert_no_secret(result.stdout + result.stderr, "a crash traceback")
    assert_no_secret(everything_written(tmp_path), "the log file of a crash")
