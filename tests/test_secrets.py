"""The password never appears in console output, logs, results or the journal.

Every failure path we can provoke runs as a real process with a distinctive
password; then every byte written anywhere is searched for it (plain, URL
encoded, and as the base64 Basic Auth token).
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest

from tests.quoting_server import QuotingServer
from tests.support import PASSWORD, USER, emulator_with_password, good_csv, write_config

FORMS = [PASSWORD, urllib.parse.quote(PASSWORD, safe=""), base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()]


@pytest.fixture
def emu(tmp_path):
    emulator = emulator_with_password(tmp_path).start()
    yield emulator
    emulator.stop()


def run(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "dropbox_sync", "-v", *args],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
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
    with_url_secret = write_config(
        tmp_path,
        emu,
        url=emu.base_url.replace("https://", f"https://{USER}:{PASSWORD}@") + "/api/import/users",
        username=None,
        password=None,
    )
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
log.setup(level="INFO", log_dir=__import__("pathlib").Path({str(tmp_path / "logs")!r}))
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


# -- every encoded form, every output (issue 12) ------------------------------------

# A quote, a backslash, a space and a slash: its raw, URL-encoded, form-encoded and
# JSON-escaped forms all differ, so each must be scrubbed in its own right.
ODD_PASSWORD = 'Tr1"cky\\Pa55 w0rd/7f3a'


def all_forms(user: str, password: str) -> list[str]:
    return sorted(
        {
            password,
            urllib.parse.quote(password, safe=""),
            urllib.parse.quote(password),
            urllib.parse.quote_plus(password),
            json.dumps(password)[1:-1],
            json.dumps(password, ensure_ascii=False)[1:-1],
            base64.b64encode(f"{user}:{password}".encode()).decode(),
        }
    )


def assert_no_form(data: str | bytes, forms: list[str], where: str) -> None:
    data = data.encode() if isinstance(data, str) else data
    for form in forms:
        assert form.encode() not in data, f"{form!r} leaked into {where}"


def without_nulls(path: Path) -> Path:
    """write_config writes None as null, which is no TOML: drop those keys."""
    text = path.read_text(encoding="utf-8")
    path.write_text("\n".join(l for l in text.splitlines() if not l.endswith("= null")) + "\n", encoding="utf-8")
    return path


def run_full(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dropbox_sync", *args],
        capture_output=True,
        text=True,
        timeout=120,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        check=False,
    )


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_a_reply_quoting_the_password_leaves_it_in_no_file_and_no_stream(tmp_path, log_format):
    """Results, journal, status.json, `status` (text and JSON), `send`, `check --online`,
    and the log in both formats: scrubbed before encoding, in every form."""
    forms = all_forms(USER, ODD_PASSWORD)
    with QuotingServer(tmp_path) as server:
        fake = type("Fake", (), {"base_url": "", "ca_file": server.ca_file})()
        path = write_config(tmp_path, fake, url=server.url, password=ODD_PASSWORD)
        path.write_text(f'log_format = "{log_format}"\n' + path.read_text(encoding="utf-8"), encoding="utf-8")
        inbox = tmp_path / "inbox"
        (inbox / "a.csv").write_text(good_csv("a"), encoding="utf-8")
        outputs = [run_full("--config", str(path), "once")]
        assert outputs[-1].returncode == 1, outputs[-1].stderr
        (failed,) = (inbox / "failed").glob("*_a.csv")
        result = json.loads((inbox / "failed" / (failed.name + ".result.json")).read_text(encoding="utf-8"))
        assert result["summary"] == f"Login {USER}:*** refused (Authorization: Basic ***)"
        outputs.append(run_full("--config", str(path), "status"))
        outputs.append(run_full("--config", str(path), "status", "--json"))
        outputs.append(run_full("--config", str(path), "send", str(failed)))
        assert "refused" in outputs[-1].stdout
        outputs.append(run_full("--config", str(path), "check", "--online"))
    for number, output in enumerate(outputs):
        assert_no_form(output.stdout + output.stderr, forms, f"the output of command {number}")
    assert_no_form(everything_written(tmp_path), forms, "a file (result, journal, status.json, logs)")
    logs = list((tmp_path / "logs").glob("*.jsonl" if log_format == "json" else "*.log"))
    assert logs and b"refused" in logs[0].read_bytes(), "the reply did reach the log"


def test_config_and_command_line_mistakes_never_echo_the_password(tmp_path, emu):
    forms = all_forms(USER, ODD_PASSWORD)
    outputs = []
    # A URL with credentials that Python cannot parse (a stray "["), as url and as proxy.
    for key in ("url", "proxy"):
        path = write_config(tmp_path, emu, **{key: f"https://{USER}:{urllib.parse.quote(ODD_PASSWORD)}@[127.0.0.1/x"})
        outputs.append(run_full("--config", str(path), "once"))
        assert outputs[-1].returncode == 2 and "not a valid URL" in outputs[-1].stderr
    # The password itself put in password_env.
    path = without_nulls(write_config(tmp_path, emu, password=None, password_env=ODD_PASSWORD))
    outputs.append(run_full("--config", str(path), "once"))  # only the commands that send read it
    assert outputs[-1].returncode == 2 and "the value is not shown" in outputs[-1].stderr
    # The password on the service install command line: refused, never echoed.
    outputs.append(
        run_full(
            "--config",
            str(path),
            "service",
            "install",
            "--password",
            ODD_PASSWORD,
            "--destdir",
            str(tmp_path / "staged"),
        )
    )
    assert outputs[-1].returncode == 2 and "--password takes only '-'" in outputs[-1].stderr
    assert not (tmp_path / "staged").exists()
    for number, output in enumerate(outputs):
        assert "Traceback" not in output.stderr
        assert_no_form(output.stdout + output.stderr, forms, f"the output of command {number}")
    assert_no_form(everything_written(tmp_path), forms, "a file")


def test_the_config_folder_behind_a_swapped_sending_folder_leaks_nothing(tmp_path, emu):
    """Issue 12: sending/ replaced by a link to the folder of config.toml and the password
    file used to file both into failed/, the password quoted in a result."""
    secret_dir = tmp_path / "etc"
    secret_dir.mkdir()
    (secret_dir / "password.txt").write_text(PASSWORD + "\n", encoding="utf-8")
    path = without_nulls(write_config(tmp_path, emu, password=None, password_file=str(secret_dir / "password.txt")))
    inbox = tmp_path / "inbox"
    assert run_full("--config", str(path), "once").returncode == 0
    (inbox / "sending").rmdir()
    (inbox / "sending").symlink_to(secret_dir)
    done = run_full("--config", str(path), "once")
    assert done.returncode == 3 and "is a link" in done.stderr
    assert (secret_dir / "password.txt").read_text(encoding="utf-8") == PASSWORD + "\n"
    assert_no_secret(done.stdout + done.stderr, "the output of once")
    assert_no_secret(
        b"".join(
            p.read_bytes()
            for p in tmp_path.rglob("*")
            if p.is_file()
            and not p.is_symlink()
            and secret_dir not in p.parents
            and "emulator" not in p.parts
            and p.name != "config.toml"
        ),
        "a file",
    )


@pytest.mark.parametrize(
    "secret",
    ['quo"te\\back', "ctl\x01char", "naïve-pässword", "plain-Secret-77"],
    ids=["quote-backslash", "control", "non-ascii", "plain"],
)
def test_json_files_blank_a_secret_however_json_escapes_it(secret):
    """Results and state files are encoded first and scrubbed only when the text shows a
    secret (redact.to_json): a secret JSON must escape, in a key, deep in a list, or in
    any of its other forms, is blanked all the same, and the data reads back unchanged."""
    from dropbox_sync import redact

    redact.register_secret(secret)
    token = base64.b64encode(f"someone:{secret}".encode()).decode()
    redact.register_basic_auth("someone", secret)
    data = {
        f"key {secret}": [1, {"deep": [f"at {secret} end"]}],
        "details": {"1": f"Error: {urllib.parse.quote(secret, safe='')}", "2": f"Basic {token}"},
        "clean": {"n": None, "t": True, "f": 1.5},
    }
    text = redact.to_json(data)
    for form in (secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]):
        assert form not in text
    assert urllib.parse.quote(secret, safe="") not in text and token not in text
    assert json.loads(text) == redact.scrub_data(data)
    clean = {"success": True, "details": {"1": "Success: created"}, "empty": {}, "none": []}
    assert json.loads(redact.to_json(clean)) == clean
