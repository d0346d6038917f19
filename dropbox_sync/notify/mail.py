"""Sending email by SMTP: the only user of smtplib.

``send`` opens one session, secures it (STARTTLS, or TLS from the first byte
for ``smtps``), logs in if an account is configured, sends every message and
closes. Whatever goes wrong becomes one ``MailError`` whose text names the
server and the cause and never the password: smtplib and ssl exceptions are
translated here, with ``raise ... from exc``, so the notifier sees nothing else.
"""

from __future__ import annotations

import dataclasses
import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

from loguru import logger

from dropbox_sync.credentials import PasswordSource
from dropbox_sync.errors import MailError
from dropbox_sync.redact import Secret, scrub
from dropbox_sync.tls import client_context


@dataclass(frozen=True)
class SmtpServer:
    """Where and how to hand over mail (validated by ``notify.parse_settings``)."""

    host: str
    port: int
    starttls: bool  # upgrade a plain connection (port 587)
    smtps: bool  # TLS from the first byte (port 465)
    username: str  # "" = no login
    password: Secret | None  # read from password_source when a command sends (config.resolve_secrets)
    ca_bundle: Path | None  # None = the OS trust store
    timeout: float
    password_source: PasswordSource | None = dataclasses.field(default=None, repr=False)

    @property
    def encrypted(self) -> bool:
        return self.starttls or self.smtps

    @property
    def where(self) -> str:
        return f"SMTP server {self.host}:{self.port}"


def send(server: SmtpServer, messages: Sequence[EmailMessage]) -> None:
    """Deliver ``messages`` to the SMTP server in one session, or raise ``MailError``."""
    if not messages:
        return
    try:
        _send(server, messages)
    except MailError:
        raise
    except smtplib.SMTPAuthenticationError as exc:
        raise MailError(
            f"{server.where} rejected the login of smtp_username {server.username!r} "
            f"({_reply(exc.smtp_code, exc.smtp_error)})"
        ) from exc
    except smtplib.SMTPRecipientsRefused as exc:
        refused = ", ".join(f"{who} ({_reply(*why)})" for who, why in exc.recipients.items())
        raise MailError(f"{server.where} refused the recipient(s): {refused}") from exc
    except smtplib.SMTPSenderRefused as exc:
        raise MailError(
            f"{server.where} refused the sender {exc.sender} ({_reply(exc.smtp_code, exc.smtp_error)})"
        ) from exc
    except smtplib.SMTPResponseException as exc:
        raise MailError(f"{server.where} answered {_reply(exc.smtp_code, exc.smtp_error)}") from exc
    except ssl.SSLCertVerificationError as exc:
        raise MailError(
            f"{server.where}: its TLS certificate is not trusted ({exc.verify_message}); "
            "set ca_bundle in [notify] to the CA that signed it"
        ) from exc
    except ssl.SSLError as exc:
        raise MailError(
            f"{server.where}: TLS failed ({exc.reason or exc}); is smtps/starttls right for this port?"
        ) from exc
    except TimeoutError as exc:  # socket.timeout is TimeoutError since Python 3.10
        raise MailError(f"{server.where} did not answer within {server.timeout:g} s") from exc
    except smtplib.SMTPException as exc:
        raise MailError(f"{server.where}: {scrub(str(exc)) or type(exc).__name__}") from exc
    except OSError as exc:
        raise MailError(f"cannot reach {server.where}: {exc.strerror or exc}") from exc


def _send(server: SmtpServer, messages: Sequence[EmailMessage]) -> None:
    context = client_context(server.ca_bundle) if server.encrypted else None
    if server.smtps:
        smtp: smtplib.SMTP = smtplib.SMTP_SSL(server.host, server.port, timeout=server.timeout, context=context)
    else:
        smtp = smtplib.SMTP(server.host, server.port, timeout=server.timeout)
    with smtp:
        smtp.ehlo()
        if server.starttls and not server.smtps:
            if not smtp.has_extn("starttls"):
                # Never fall back to plain text: the password and the file
                # names would cross the network in the clear.
                raise MailError(
                    f"{server.where} does not offer STARTTLS; set starttls = false only "
                    "for a server on this machine, or smtps = true for port 465"
                )
            smtp.starttls(context=context)
            smtp.ehlo()
        if server.username:
            _login(smtp, server)
        for message in messages:
            refused = smtp.send_message(message)
            if refused:  # some recipients took it: not worth sending again to all
                logger.warning(
                    "notify: {} refused {} for: {}",
                    server.where,
                    message["Subject"],
                    ", ".join(f"{who} ({_reply(*why)})" for who, why in refused.items()),
                )


def _login(smtp: smtplib.SMTP, server: SmtpServer) -> None:
    """One AUTH attempt. smtplib's login() tries every mechanism in turn after a
    rejection, which doubles the failed logins a server counts towards a lockout."""
    if not smtp.has_extn("auth"):
        raise MailError(
            f"{server.where} offers no login (no AUTH); for a relay that needs none, leave smtp_username out"
        )
    offered = smtp.esmtp_features["auth"].upper().split()
    mechanism = next((m for m in ("PLAIN", "LOGIN") if m in offered), None)
    if mechanism is None:
        raise MailError(
            f"{server.where} offers no login method we support (it offers {' '.join(offered)}; "
            "we use PLAIN or LOGIN, always over TLS)"
        )
    if server.password is None:  # a caller that skipped config.resolve_secrets: a bug, said plainly
        raise MailError(f"{server.where}: the SMTP password was never read (config.resolve_secrets)")
    smtp.user, smtp.password = server.username, server.password.reveal()
    try:
        smtp.auth(mechanism, getattr(smtp, f"auth_{mechanism.lower()}"))
    finally:
        smtp.password = ""  # do not leave the password on a long-lived object


def _reply(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return scrub(f"{code} {text}".strip())
