"""Notifications by email, against a real SMTP server (aiosmtpd) on 127.0.0.1.

Timing (digest windows, hold alerts, stale detection) runs on an injected
clock, so nothing here waits for minutes to pass; the SMTP exchange is real,
including STARTTLS with a login against a trustme certificate, and the
acceptance cases run the real pipeline against the real emulator.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email
import email.policy
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from loguru import logger

from dropbox_sync import config
from dropbox_sync.cli import main
from dropbox_sync.errors import ConfigError
from dropbox_sync.notify import notifier as notify
from dropbox_sync.notify.notifier import Notifier
from dropbox_sync.notify.notify_state import MAX_FILES
from dropbox_sync.pipeline import archive_names, workfiles
from dropbox_sync.pipeline.outcome import FileReport, Outcome
from dropbox_sync.pipeline.runner import Pipeline
from dropbox_sync.state.journal import Attempt, Journal
from tests.helpers import wait_until
from tests.support import (
    HEADER,
    PASSWORD,
    USER,
    archived,
    emulator_with_password,
    good_csv,
    running,
    toml_value,
    write_config,
)

SMTP_USER = "mailer@school.example"
SMTP_PASSWORD = "Sm7p-Secret-Pa55-9c1e"  # distinctive, so a search can prove it never leaks
START = dt.datetime(2026, 11, 25, 2, 0, tzinfo=dt.UTC)


# -- a real SMTP server ---------------------------------------------------------------


class LocalSMTP(Controller):
    """aiosmtpd's threaded server on 127.0.0.1; port 0 picks a free port."""

    def __init__(self, handler: Any, port: int = 0, **kwargs: Any) -> None:
        super().__init__(handler, hostname="127.0.0.1", port=port, **kwargs)

    def _trigger_server(self) -> None:
        # The base class connects to self.port to finish start-up: learn it first.
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class Mailbox:
    """An aiosmtpd handler that keeps every message, and how it arrived."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.raw: list[bytes] = []
        self.tls: list[bool] = []
        self.logins: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.raw.append(envelope.original_content)
        self.messages.append(email.message_from_bytes(envelope.original_content, policy=email.policy.default))
        # STARTTLS sets session.ssl; implicit TLS (smtps) shows on the transport.
        self.tls.append(session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None)
        return "250 OK"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        if isinstance(data, LoginPassword):
            self.logins.append(data.login.decode())
            ok = data.login == SMTP_USER.encode() and data.password == SMTP_PASSWORD.encode()
            # handled=False: aiosmtpd then answers 535 itself (handled=True would leave the client waiting).
            return AuthResult(success=ok, handled=False)
        return AuthResult(success=False, handled=False)

    def body(self, index: int = -1) -> str:
        return plain(self.messages[index])


def plain(message: email.message.EmailMessage) -> str:
    return message.get_content().replace("\r\n", "\n")


@contextlib.contextmanager
def smtp_server(port: int = 0, **kwargs: Any) -> Iterator[tuple[LocalSMTP, Mailbox]]:
    box = Mailbox()
    if "authenticator" in kwargs:
        kwargs["authenticator"] = box.authenticate
    server = LocalSMTP(box, port=port, **kwargs)
    server.start()
    try:
        yield server, box
    finally:
        server.stop()


@pytest.fixture
def smtp() -> Iterator[tuple[LocalSMTP, Mailbox]]:
    with smtp_server() as pair:
        yield pair


@pytest.fixture(scope="module")
def tls_ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, Path]:
    """A server TLS context for 127.0.0.1 and the PEM of the CA that signed it."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    pem = tmp_path_factory.mktemp("smtp-ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    return context, pem


@pytest.fixture
def logs() -> Iterator[list[str]]:
    lines: list[str] = []
    sink = logger.add(
        lambda message: lines.append(str(message).rstrip("\n")), level="DEBUG", format="{level} {message}"
    )
    yield lines
    logger.remove(sink)


class FakeClock:
    def __init__(self) -> None:
        self.moment = START

    def __call__(self) -> dt.datetime:
        return self.moment

    def advance(self, **delta: float) -> None:
        self.moment += dt.timedelta(**delta)


# -- configs ----------------------------------------------------------------------------


def notify_table(port: int, **overrides: Any) -> str:
    values = {
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "starttls": False,
        "from": "dropbox-sync@school.example",
        "to": ["it@school.example", "office@school.example"],
        **overrides,
    }
    return "[notify]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in values.items() if v is not None)


def config_file(tmp_path: Path, notify: str, *, emulator: Any = None, inboxes: int = 1, **inbox: Any) -> Path:
    """A config with [notify]; inboxes point at the emulator, or at a URL never called."""
    if emulator is None:
        emulator = type("NoServer", (), {"base_url": "https://library.example.edu", "ca_file": None})()
    path = write_config(tmp_path, emulator, inboxes=inboxes, **inbox)
    path.write_text(path.read_text(encoding="utf-8") + notify, encoding="utf-8")
    return path


def load(tmp_path: Path, notify: str, **kwargs: Any) -> config.Config:
    """As a command that sends loads it: the passwords read."""
    return config.resolve_secrets(config.load(config_file(tmp_path, notify, **kwargs)))


def failed_report(inbox: Path, name: str, result: dict[str, Any], *, inbox_name: str = "inbox") -> FileReport:
    """A file in failed/ with its result file, as the pipeline leaves it."""
    target = inbox / "failed" / f"20261125T020000Z_{name}"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(HEADER, encoding="utf-8")
    workfiles.write_json_atomically(archive_names.result_path(target), result)
    return FileReport(inbox_name, name, Outcome.FAILED, str(result.get("summary", "")), target)


@contextlib.contextmanager
def service(cfg: config.Config, journal: Journal, notifier: Notifier) -> Iterator[Pipeline]:
    """The real run loop, with the notifier as its listener; stopped and joined after."""
    with running(Pipeline(cfg, journal=journal, state_dir=cfg.state_dir, listeners=[notifier.on_report])) as pipeline:
        yield pipeline


@pytest.fixture
def emu(tmp_path):
    emulator = emulator_with_password(tmp_path).start()
    yield emulator
    emulator.stop()


def assert_no_smtp_secret(*texts: str | bytes) -> None:
    for text in texts:
        data = text if isinstance(text, bytes) else text.encode()
        assert SMTP_PASSWORD.encode() not in data and PASSWORD.encode() not in data


# -- settings ---------------------------------------------------------------------------


def test_settings_defaults(tmp_path):
    settings = load(tmp_path, notify_table(25, starttls=None)).notify
    assert settings is not None
    server = settings.server
    assert (server.host, server.port, server.starttls, server.smtps, server.username) == (
        "127.0.0.1",
        25,
        True,
        False,
        "",
    )
    assert settings.recipients == ("it@school.example", "office@school.example")
    assert (settings.digest_minutes, settings.alert_after_minutes, settings.stale_after_hours) == (15, 30, 0)
    assert settings.subject_prefix == "[dropbox-sync]"
    assert server.ca_bundle is None and server.timeout == 30
    assert load(tmp_path, notify_table(None)).notify.server.port == 587
    assert load(tmp_path, notify_table(None, smtps=True)).notify.server.port == 465
    no_table = write_config(tmp_path, type("X", (), {"base_url": "https://h", "ca_file": None})())
    assert config.load(no_table).notify is None


def test_the_example_notify_section_is_valid_when_uncommented(tmp_path, monkeypatch):
    from dropbox_sync.cli import EXAMPLE_CONFIG

    text = EXAMPLE_CONFIG.read_text(encoding="utf-8")
    section = text[text.index("# [notify]") :]
    uncommented = "\n".join(line.removeprefix("# ") for line in section.splitlines())
    monkeypatch.setenv("DROPBOX_SYNC_SMTP_PASSWORD", SMTP_PASSWORD)
    settings = load(tmp_path, uncommented + "\n").notify
    assert (settings.server.port, settings.server.starttls, settings.server.username) == (
        587,
        True,
        "dropbox-sync@school.example",
    )
    assert settings.server.password.reveal() == SMTP_PASSWORD and settings.stale_after_hours == 0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"colour": "red"}, "[notify]: unknown key 'colour'"),
        ({"smtp_host": None}, "[notify]: smtp_host is missing"),
        ({"smtp_port": "587"}, "[notify]: smtp_port must be a port number"),
        ({"to": []}, "[notify]: to must be a list of email addresses"),
        ({"to": ["it at school"]}, "[notify]: to is not an email address"),
        ({"from": None}, "[notify]: from is missing"),
        ({"digest_minutes": -1}, "[notify]: digest_minutes must be a number of minutes"),
        ({"stale_after_hours": "26"}, "[notify]: stale_after_hours must be a number of hours"),
        (
            {"smtp_host": "smtp.school.example", "smtp_username": SMTP_USER, "smtp_password": SMTP_PASSWORD},
            "[notify]: starttls is false: the SMTP password would cross the network unencrypted",
        ),
        ({"smtp_password": SMTP_PASSWORD}, "[notify]: smtp_username is missing"),
        ({"smtp_username": SMTP_USER}, "[notify]: smtp_password_env is missing"),
        (
            {"smtp_username": SMTP_USER, "smtp_password": SMTP_PASSWORD, "smtp_password_env": "X"},
            "[notify]: smtp_password_env conflicts with smtp_password",
        ),
        (
            {"smtp_username": SMTP_USER, "smtp_password_env": "DROPBOX_SYNC_TEST_UNSET"},
            "[notify]: smtp_password_env names environment variable DROPBOX_SYNC_TEST_UNSET, which is not set",
        ),
        ({"ca_bundle": "missing.pem"}, "[notify]: ca_bundle file not found"),
    ],
)
def test_setting_errors_name_the_key(tmp_path, overrides, message):
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, notify_table(25, **overrides))
    assert str(caught.value).startswith(f"config.toml: {message}"), str(caught.value)
    assert "\n" not in str(caught.value) and SMTP_PASSWORD not in str(caught.value)


def test_login_without_tls_is_allowed_to_a_loopback_relay(tmp_path):
    settings = load(tmp_path, notify_table(25, smtp_username=SMTP_USER, smtp_password=SMTP_PASSWORD)).notify
    assert not settings.server.encrypted and settings.server.password.reveal() == SMTP_PASSWORD
    assert SMTP_PASSWORD not in repr(settings)


# -- acceptance: the real pipeline, the real emulator, a real SMTP server ---------------


def test_two_failed_files_in_one_window_make_exactly_one_email(tmp_path, emu, smtp, logs):
    server, box = smtp
    inbox = tmp_path / "inbox"
    cfg = load(tmp_path, notify_table(server.port), emulator=emu)
    journal = Journal(cfg.state_dir / "journal.sqlite3")
    clock = FakeClock()
    notifier = Notifier(
        cfg.notify, cfg.inboxes, journal=journal, state_dir=cfg.state_dir, now=clock, check_seconds=0.02
    ).start()
    files = {
        "good.csv": good_csv("g1", "g2"),
        "bad-email.csv": good_csv("e1") + "e2,Ann,Lee,Year 7,Student,not-an-email\n",
        "bad-group.csv": HEADER + "b1,Bo,Li,No Such Group,Student,b1@school.example\n",
    }
    try:
        with service(cfg, journal, notifier):
            for name, text in files.items():
                (inbox / name).write_text(text, encoding="utf-8")
            wait_until(lambda: len(archived(inbox, "processed")) + len(archived(inbox, "failed")) == 3)
            wait_until(lambda: notifier.tick() == 0 and notifier.pending == 2)
            clock.advance(minutes=14)
            assert notifier.tick() == 0 and box.messages == [], "still inside the digest window"
            clock.advance(minutes=1)
            wait_until(lambda: box.messages)
            clock.advance(hours=2)
            assert notifier.tick() == 0
    finally:
        notifier.stop()
        journal.close()
    assert len(box.messages) == 1, "one digest for both files, nothing more at stop"

    message = box.messages[0]
    assert message["Subject"] == "[dropbox-sync] 2 files failed (inbox)"
    assert message["To"] == "it@school.example, office@school.example"
    assert message["Auto-Submitted"] == "auto-generated"
    body = box.body()
    assert "bad-email.csv" in body and "bad-group.csv" in body and "good.csv" not in body
    (email_file,) = [p for p in archived(inbox, "failed") if p.name.endswith("bad-email.csv")]
    assert f"archived as:  {email_file}" in body
    assert "server said:  2 users processed. 1 user created. 0 users updated. 1 user failed." in body
    assert "row 2: Field (emailAddress) is not a well-formed email address." in body
    assert "row 1: " in body and "No Such Group" in body, "the group failure row is quoted"
    assert "User Created" not in body, "successful rows are not failed rows"
    assert f"dropbox-sync retry {email_file.name}" in body
    assert "rows in the SIS (or create the missing groups in Infiniti)" in body
    assert_no_smtp_secret(box.raw[0], "\n".join(logs))


def test_a_held_inbox_alerts_once_per_episode_and_the_digest_says_when_it_resumed(tmp_path, emu, smtp):
    server, box = smtp
    inbox = tmp_path / "inbox"
    emu.set_password(USER, "not-the-configured-one")
    cfg = load(tmp_path, notify_table(server.port), emulator=emu, hold_retry_seconds=0.2)
    journal = Journal(cfg.state_dir / "journal.sqlite3")
    clock = FakeClock()
    notifier = Notifier(cfg.notify, cfg.inboxes, journal=journal, now=clock)  # ticked by hand here

    def held() -> bool:
        notifier.tick()
        return "inbox" in notifier.state.holds

    try:
        with service(cfg, journal, notifier):
            (inbox / "users.csv").write_text(good_csv("h1"), encoding="utf-8")
            wait_until(held)
            clock.advance(minutes=29)
            assert notifier.tick() == 0, "not held for alert_after_minutes yet"
            clock.advance(minutes=2)
            assert notifier.tick() == 1
            clock.advance(hours=3)
            assert notifier.tick() == 0, "one alert per hold episode"
            emu.set_password(USER, PASSWORD)
            wait_until(lambda: archived(inbox, "processed"))
            wait_until(lambda: notifier.tick() == 0 and notifier.pending == 1)
            clock.advance(minutes=15)
            assert notifier.tick() == 1
    finally:
        journal.close()
    alert, resumed = box.messages
    assert alert["Subject"] == '[dropbox-sync] HELD: nothing is being imported from inbox "inbox"'
    text = plain(alert)
    assert "has been held since" in text and "(31 min)" in text
    assert "HTTP 401: credentials were rejected" in text
    assert "dropbox-sync check --online" in text and "Nothing is lost" in text
    assert resumed["Subject"] == '[dropbox-sync] back to normal: inbox "inbox"'
    assert 'inbox "inbox": uploads work again since' in plain(resumed)
    assert_no_smtp_secret(*box.raw)


def test_cli_once_mails_the_failures_before_it_exits(tmp_path, emu, smtp, capsys):
    server, box = smtp
    inbox = tmp_path / "inbox"
    path = config_file(tmp_path, notify_table(server.port), emulator=emu)
    (inbox / "bad.csv").write_text(HEADER + "x1,A,B,Year 7,Student,nope\n", encoding="utf-8")
    (inbox / "good.csv").write_text(good_csv("ok1"), encoding="utf-8")
    assert main(["--config", str(path), "once"]) == 1
    (message,) = box.messages
    assert message["Subject"] == "[dropbox-sync] 1 file failed (inbox)"
    assert "bad.csv" in plain(message) and "row 1: Field (emailAddress)" in plain(message)
    state = json.loads((tmp_path / "state" / "notify.json").read_text(encoding="utf-8"))
    assert state["failed"] == [] and "digest" in state["last_sent"]
    assert_no_smtp_secret(box.raw[0], capsys.readouterr().err)


# -- timing on the injected clock ------------------------------------------------------


def test_no_success_for_stale_after_hours_alerts_once_per_episode(tmp_path, smtp):
    server, box = smtp
    cfg = load(tmp_path, notify_table(server.port, stale_after_hours=26), inboxes=2)
    journal = Journal(tmp_path / "journal.sqlite3")
    earlier = (START - dt.timedelta(hours=20)).isoformat().replace("+00:00", "Z")
    journal.record(Attempt("inbox", "x_users.csv", "users.csv", None, 1, earlier, earlier, 200, "processed", "ok"))
    clock = FakeClock()
    notifier = Notifier(cfg.notify, cfg.inboxes, journal=journal, now=clock)
    try:
        assert notifier.tick() == 0
        clock.advance(hours=5, minutes=59)
        assert notifier.tick() == 0
        clock.advance(minutes=1)
        assert notifier.tick() == 1, "26 h since the journal's last success"
        clock.advance(hours=10)
        assert notifier.tick() == 0, "one alert per stale episode"
        clock.advance(hours=10)
        assert notifier.tick() == 1, "inbox2 never succeeded: 26 h since watching began"
        notifier.on_report(FileReport("inbox", "users.csv", Outcome.PROCESSED, "ok"))
        assert notifier.tick() == 0
        clock.advance(minutes=15)
        assert notifier.tick() == 1, "the digest says it recovered"
        clock.advance(hours=26)
        assert notifier.tick() == 1, "a new episode, a new alert"
    finally:
        journal.close()
    first, second, recovered, again = box.messages
    assert first["Subject"] == '[dropbox-sync] no successful import for 26 h: inbox "inbox"'
    assert "Infiniti last accepted a file on" in plain(first) and "26.0 h ago" in plain(first)
    assert "check the SIS export job" in plain(first)
    assert second["Subject"] == '[dropbox-sync] no successful import for 26 h: inbox "inbox2"'
    assert "no file has succeeded since watching began" in plain(second)
    assert 'inbox "inbox": a file succeeded again' in plain(recovered)
    assert '"inbox"' in again["Subject"] and "inbox2" not in again["Subject"]


def test_alerts_of_one_kind_are_rate_limited_into_one_email(tmp_path, smtp):
    server, box = smtp
    cfg = load(tmp_path, notify_table(server.port, alert_after_minutes=10, digest_minutes=15), inboxes=3)
    clock = FakeClock()
    notifier = Notifier(cfg.notify, cfg.inboxes, now=clock)
    notifier.on_report(FileReport("inbox", "a.csv", Outcome.HELD, "HTTP 401: credentials were rejected"))
    notifier.on_report(FileReport("inbox2", "b.csv", Outcome.HELD, "HTTP 404: the import URL does not exist"))
    clock.advance(minutes=5)
    notifier.on_report(FileReport("inbox3", "c.csv", Outcome.HELD, "HTTP 403: no rights"))
    clock.advance(minutes=5)
    assert notifier.tick() == 1
    clock.advance(minutes=5)
    assert notifier.tick() == 0, "inbox3 crossed too, but the last held alert was 5 min ago"
    clock.advance(minutes=10)
    assert notifier.tick() == 1
    both, third = box.messages
    assert "inbox2" in both["Subject"] and "HTTP 404" in plain(both) and "inbox3" not in both["Subject"]
    assert "inbox3" in third["Subject"] and "(20 min)" in plain(third)


def test_a_digest_caps_the_rows_and_explains_a_file_that_was_never_sent(tmp_path, smtp):
    server, box = smtp
    inbox = tmp_path / "inbox"
    cfg = load(tmp_path, notify_table(server.port))
    details = {str(n): "User Created" for n in range(1, 31)}
    details.update({str(n): f"Library group (Year {n}) does not exist. User failed to import." for n in range(6, 31)})
    notifier = Notifier(cfg.notify, cfg.inboxes, now=FakeClock())
    notifier.on_report(
        failed_report(inbox, "many.csv", {"success": False, "summary": "30 users processed.", "details": details})
    )
    notifier.on_report(
        failed_report(
            inbox,
            "odd.csv",
            {
                "success": False,
                "summary": "Missing required column(s): system-group.",
                "dropbox_sync": {"stage": "preflight"},
            },
        )
    )
    assert notifier.tick(final=True) == 1
    body = box.body()
    assert "row 6: Library group (Year 6) does not exist." in body and "row 25:" in body and "row 26:" not in body
    assert "... and 5 more failed rows: see 20261125T020000Z_many.csv.result.json" in body
    assert "row 1:" not in body
    odd = body[body.index("odd.csv\n") :]
    assert "not sent:     Missing required column(s): system-group." in odd
    assert "the file itself is not usable (checked before upload): fix the export" in odd
    assert "server said" not in odd and "dropbox-sync retry" not in odd


# -- SMTP: failures, TLS, login ------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_smtp_server_down_is_logged_kept_and_retried(tmp_path, logs):
    port = free_port()
    inbox = tmp_path / "inbox"
    cfg = load(tmp_path, notify_table(port))
    clock = FakeClock()
    notifier = Notifier(cfg.notify, cfg.inboxes, state_dir=tmp_path / "state", now=clock)
    notifier.on_report(failed_report(inbox, "late.csv", {"success": False, "summary": "1 user failed."}))
    clock.advance(minutes=15)
    assert notifier.tick() == 0
    failures = [line for line in logs if "not sent" in line]
    assert failures == [
        f"ERROR notify: 1 email(s) not sent (digest): cannot reach SMTP server 127.0.0.1:{port}: "
        "Connection refused; trying again in 60 s"
    ]
    assert notifier.pending == 1
    clock.advance(seconds=59)
    assert notifier.tick() == 0 and len([line for line in logs if "not sent" in line]) == 1, "not due yet"
    clock.advance(seconds=1)
    assert notifier.tick() == 0 and len([line for line in logs if "not sent" in line]) == 2
    assert "trying again in 2 min" in logs[-1], "the wait grows while the server stays down"
    # A restart keeps what was not sent (notify.json in the state dir).
    notifier.stop()
    restarted = Notifier(cfg.notify, cfg.inboxes, state_dir=tmp_path / "state", now=clock)
    assert restarted.pending == 1
    with smtp_server(port) as (_, box):
        assert restarted.tick() == 1
    assert "late.csv" in box.body() and restarted.pending == 0
    restarted.stop()
    assert Notifier(cfg.notify, cfg.inboxes, state_dir=tmp_path / "state", now=clock).pending == 0


def test_starttls_and_login_with_a_private_ca(tmp_path, tls_ca, logs, monkeypatch):
    context, ca_pem = tls_ca
    monkeypatch.setenv("DROPBOX_SYNC_SMTP_PASSWORD", SMTP_PASSWORD)
    inbox = tmp_path / "inbox"
    with smtp_server(tls_context=context, require_starttls=True, authenticator=True) as (server, box):
        table = notify_table(
            server.port,
            starttls=True,
            smtp_username=SMTP_USER,
            ca_bundle=str(ca_pem),
            smtp_password_env="DROPBOX_SYNC_SMTP_PASSWORD",
        )
        cfg = load(tmp_path, table)
        notifier = Notifier(cfg.notify, cfg.inboxes, now=FakeClock())
        notifier.on_report(failed_report(inbox, "tls.csv", {"success": False, "summary": "1 user failed."}))
        assert notifier.tick(final=True) == 1
    assert box.tls == [True] and box.logins == [SMTP_USER]
    assert "tls.csv" in box.body()
    assert_no_smtp_secret(box.raw[0], "\n".join(logs))


def test_a_rejected_login_or_an_untrusted_certificate_is_logged_without_the_password(tmp_path, tls_ca, logs):
    context, ca_pem = tls_ca
    inbox = tmp_path / "inbox"
    with smtp_server(tls_context=context, require_starttls=True, authenticator=True) as (server, box):
        wrong = load(
            tmp_path,
            notify_table(
                server.port,
                starttls=True,
                smtp_username=SMTP_USER,
                smtp_password=SMTP_PASSWORD + "-old",
                ca_bundle=str(ca_pem),
            ),
        )
        untrusted = load(
            tmp_path, notify_table(server.port, starttls=True, smtp_username=SMTP_USER, smtp_password=SMTP_PASSWORD)
        )
        for cfg in (wrong, untrusted):
            notifier = Notifier(cfg.notify, cfg.inboxes, now=FakeClock())
            notifier.on_report(failed_report(inbox, "x.csv", {"success": False, "summary": "1 user failed."}))
            assert notifier.tick(final=True) == 0
    assert box.messages == [] and set(box.logins) == {SMTP_USER}
    failures = [line for line in logs if "not sent" in line]
    assert f"SMTP server 127.0.0.1:{server.port} rejected the login of smtp_username '{SMTP_USER}' (535" in failures[0]
    assert "its TLS certificate is not trusted" in failures[1] and "set ca_bundle in [notify]" in failures[1]
    assert_no_smtp_secret("\n".join(logs))


def test_smtps_implicit_tls_on_its_own_port(tmp_path, tls_ca):
    context, ca_pem = tls_ca
    with smtp_server(ssl_context=context) as (server, box):
        cfg = load(tmp_path, notify_table(server.port, smtps=True, ca_bundle=str(ca_pem)))
        notifier = Notifier(cfg.notify, cfg.inboxes, now=FakeClock())
        notifier.on_report(failed_report(tmp_path / "inbox", "s.csv", {"success": False, "summary": "no"}))
        assert notifier.tick(final=True) == 1
    assert box.tls == [True] and "s.csv" in box.body()


def test_starttls_is_never_skipped_when_the_server_does_not_offer_it(tmp_path, smtp, logs):
    server, box = smtp
    cfg = load(tmp_path, notify_table(server.port, starttls=True))
    notifier = Notifier(cfg.notify, cfg.inboxes, now=FakeClock())
    notifier.on_report(failed_report(tmp_path / "inbox", "p.csv", {"success": False, "summary": "no"}))
    assert notifier.tick(final=True) == 0 and box.messages == []
    assert any("does not offer STARTTLS" in line for line in logs)


# -- the thread ----------------------------------------------------------------------------


def test_the_thread_stops_promptly_and_flushes_what_is_pending(tmp_path, smtp):
    server, box = smtp
    cfg = load(tmp_path, notify_table(server.port))
    notifier = Notifier(cfg.notify, cfg.inboxes, now=FakeClock()).start()
    assert [t.name for t in threading.enumerate()].count("notify") == 1
    notifier.on_report(failed_report(tmp_path / "inbox", "f.csv", {"success": False, "summary": "no"}))
    notifier.on_report(FileReport("inbox", "r.csv", Outcome.RETRY, "HTTP 503"))  # retries are not news
    notifier.stop()  # the 5 s check interval must not delay this
    assert "notify" not in [t.name for t in threading.enumerate()]
    (message,) = box.messages
    assert "f.csv" in plain(message) and "r.csv" not in plain(message)


def test_on_report_only_queues_so_uploads_never_wait_for_mail(tmp_path):
    # Called from the inbox workers: no network (nothing listens on the port), no file reads
    # (the result files do not exist), bounded memory. Failures are what `pending` counts.
    cfg = load(tmp_path, notify_table(free_port()))
    notifier = Notifier(cfg.notify, cfg.inboxes, now=FakeClock())
    total = notify.QUEUE_MAX + 5_000
    for number in range(total):  # more than the queue holds: the oldest are dropped, nothing blocks
        notifier.on_report(FileReport("inbox", f"{number}.csv", Outcome.FAILED, "no", tmp_path / "gone.csv"))
    assert notifier.pending == notify.QUEUE_MAX, "every failure queued, up to the bound"
    notifier.tick()  # takes them in (the digest window is not over: nothing is sent)
    assert notifier.state.failed[0].original == f"{total - notify.QUEUE_MAX}.csv", "the oldest were dropped"
    assert notifier.state.failed_overflow == notify.QUEUE_MAX - MAX_FILES


def test_a_refused_recipient_is_logged_and_the_others_still_get_the_email(tmp_path, logs):
    class Picky(Mailbox):
        async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
            if address.startswith("office@"):
                return "550 5.1.1 no such mailbox"
            envelope.rcpt_tos.append(address)
            return "250 OK"

    box = Picky()
    server = LocalSMTP(box)
    server.start()
    try:
        cfg = load(tmp_path, notify_table(server.port))
        notifier = Notifier(cfg.notify, cfg.inboxes, now=FakeClock())
        notifier.on_report(failed_report(tmp_path / "inbox", "r.csv", {"success": False, "summary": "no"}))
        assert notifier.tick(final=True) == 1
    finally:
        server.stop()
    assert len(box.messages) == 1 and notifier.pending == 0
    assert any(
        "refused [dropbox-sync] 1 file failed (inbox) for: office@school.example (550 5.1.1 no such mailbox)" in line
        for line in logs
    )
