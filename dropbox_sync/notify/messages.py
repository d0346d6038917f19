"""The texts of the three emails: the digest, the held alert and the stale alert.

``Messages`` writes them; ``notify.Notifier`` holds one, decides what is due
and sends. Every subject and body goes through ``scrub``: no secret reaches
an email.
"""

from __future__ import annotations

import datetime as dt
import email.utils
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

from dropbox_sync.config import InboxConfig
from dropbox_sync.config.notify_settings import NotifySettings
from dropbox_sync.notify.notify_state import LEAVERS, FailedFile, Hold, Note
from dropbox_sync.pipeline import archive_names
from dropbox_sync.pipeline.result import CHANGE_GUARD, SHRINK_GUARD
from dropbox_sync.redact import scrub
from dropbox_sync.when import duration, parse_iso, show_local

GUARD_STAGES = (SHRINK_GUARD, CHANGE_GUARD)  # stages of a file held for approval (in held/, not failed/)


def span(delta: dt.timedelta) -> str:
    """How long ``delta`` is, in words: ``12 min``, ``3.5 h`` (when.duration of a timedelta)."""
    return duration(delta.total_seconds())


@dataclass(frozen=True)
class Messages:
    """Writes the emails: the sender, recipients and subject prefix come from ``settings``,
    each inbox's folder and URL from ``inboxes`` (name -> InboxConfig), ``host`` signs them."""

    settings: NotifySettings
    inboxes: Mapping[str, InboxConfig]
    host: str

    def _message(self, subject: str, body: str, now: dt.datetime) -> EmailMessage:
        message = EmailMessage()
        message["Subject"] = scrub(f"{self.settings.subject_prefix} {subject}".strip())
        message["From"] = self.settings.sender
        message["To"] = ", ".join(self.settings.recipients)
        message["Date"] = email.utils.format_datetime(now)
        message["Message-ID"] = email.utils.make_msgid(domain=self.host or None)
        message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no out-of-office replies
        footer = f"\n-- \ndropbox-sync on {self.host}. Settings: [notify] in the config file.\n"
        message.set_content(scrub(body.rstrip() + "\n" + footer))
        return message

    def _inbox_line(self, name: str, *, capital: bool = False) -> str:
        inbox = self.inboxes.get(name)
        word = "Inbox" if capital else "inbox"
        return f'{word} "{name}" ({inbox.path} -> {inbox.safe_url})' if inbox else f'{word} "{name}"'

    def digest(self, items: list[FailedFile], notes: list[Note], overflow: int, now: dt.datetime) -> EmailMessage:
        failed = [f for f in items if f.stage not in GUARD_STAGES]
        guarded = [f for f in items if f.stage in GUARD_STAGES]
        count = len(failed) + overflow
        names = sorted({f.inbox for f in failed})
        leavers = [n for n in notes if n.kind == LEAVERS]
        notes = [n for n in notes if n.kind != LEAVERS]
        parts = []
        if count:
            parts.append(f"{count} file{'s' if count != 1 else ''} failed ({', '.join(names)})")
        if guarded:
            parts.append(
                f"{len(guarded)} file{'s' if len(guarded) != 1 else ''} held for approval "
                f"({', '.join(sorted({f.inbox for f in guarded}))})"
            )
        if notes and not parts:
            parts.append("back to normal: " + "; ".join(n.text.split(":")[0] for n in notes))
        if leavers and not parts:
            parts.append("users who left: " + "; ".join(dict.fromkeys(n.text.split(":")[0] for n in leavers)))
        subject = "; ".join(parts)
        lines: list[str] = []
        if guarded:
            lines += [
                f"{len(guarded)} file{' is' if len(guarded) == 1 else 's are'} held for approval in held/: far",
                "fewer rows than the last import (shrink_guard), or too much of the roster would change",
                "(change_guard), so they are not sent until a person decides. If the export is right,",
                "approve it (it is sent next); if not, discard it (it goes to failed/, and the next good",
                "export is imported as usual).",
                "",
            ]
            for item in guarded:
                lines += [
                    item.original,
                    f"  held at:      {show_local(parse_iso(item.when))}",
                    f"  held as:      {item.archived or '(unknown)'}",
                    f"  why:          {item.summary}",
                    f"  approve:      dropbox-sync approve {item.original}",
                    f"  discard:      dropbox-sync discard {item.original}",
                    "",
                ]
        if count:
            lines += [
                f"{count} file{' was' if count == 1 else 's were'} not imported and went to failed/.",
                "",
                "What to do: each file below says what went wrong. For rows Infiniti refused, fix those",
                "rows in the SIS (or create the missing groups in Infiniti), then let the export drop the",
                "file again. If the fix was made in Infiniti itself, send the same file again with:",
                "    dropbox-sync retry FILE",
                "Each file's full reply is in the .result.json beside it in failed/.",
                "",
            ]
        for name in names:
            lines += [f"== {self._inbox_line(name, capital=True)}", ""]
            for item in (f for f in failed if f.inbox == name):
                lines += _failed_lines(item)
        if overflow:
            lines += [f"... and {overflow} more failed file(s), not listed: see the failed/ folders.", ""]
        if leavers:
            lines += ["Users who left (in the roster memory, missing from the export):"]
            lines += [f"- {n.text}" for n in leavers] + [""]
        if notes:
            lines += ["Resolved:"] + [f"- {n.text}" for n in notes] + [""]
        return self._message(subject, "\n".join(lines), now)

    def held(self, held: Mapping[str, Hold], now: dt.datetime) -> EmailMessage:
        subject = "HELD: nothing is being imported from " + ", ".join(f'inbox "{n}"' for n in sorted(held))
        lines = []
        for name, hold in sorted(held.items()):
            since = parse_iso(hold.since) or now
            inbox = self.inboxes.get(name)
            held = f"{self._inbox_line(name, capital=True)} has been held since {show_local(since)}"
            lines += [f"{held} ({span(now - since)}):", "", f"    {hold.reason}", ""]
            if inbox is not None:
                lines.append(f"It tries again every {span(dt.timedelta(seconds=inbox.hold_retry_seconds))}.")
        lines += [
            "",
            "Nothing is lost: the file waiting in sending/ and every later file stay where they are",
            "and are sent in order as soon as the server accepts them again.",
            "",
            "What to do: check the password, the URL and the certificate (url, username,",
            "password_env / password_file, ca_bundle in the config file; the account's rights in",
            "Infiniti; the server itself), then prove the fix with:",
            "    dropbox-sync check --online",
            "A note follows in the next digest when uploads work again.",
        ]
        return self._message(subject, "\n".join(lines), now)

    def stale(self, stale: list[tuple[str, dt.datetime, bool]], now: dt.datetime) -> EmailMessage:
        hours = self.settings.stale_after_hours
        subject = f"no successful import for {hours:g} h: " + ", ".join(f'inbox "{n}"' for n, _, _ in stale)
        lines = []
        for name, last, ever in stale:
            what = "Infiniti last accepted a file on" if ever else "no file has succeeded since watching began on"
            lines += [f"{self._inbox_line(name, capital=True)}: {what} {show_local(last)}, {span(now - last)} ago.", ""]
        lines += [
            f"(stale_after_hours = {hours:g})",
            "",
            "What to do: check the SIS export job: did it run, did it fail, and does it still write",
            "its CSV file into the inbox folder above? `dropbox-sync status` shows what is waiting",
            "or held; files in failed/ mean the export ran but Infiniti refused rows.",
            "A note follows in the next digest when a file succeeds again.",
        ]
        return self._message(subject, "\n".join(lines), now)


def _failed_lines(item: FailedFile) -> list[str]:
    archived = Path(item.archived) if item.archived else None
    lines = [
        item.original,
        f"  failed at:    {show_local(parse_iso(item.when))}",
        f"  archived as:  {item.archived or '(unknown)'}",
    ]
    if item.stage == "preflight":
        lines += [
            f"  not sent:     {item.summary}",
            "  what to do:   the file itself is not usable (checked before upload): fix the export",
            "                and drop the file again",
        ]
    else:
        lines.append(f"  server said:  {item.summary}")
    if item.rows:
        lines.append("  failed rows:")
        lines += [f"    row {n}: {outcome.strip()}" for n, outcome in item.rows]
        if item.more_rows:
            lines.append(
                f"    ... and {item.more_rows} more failed rows: see "
                f"{archive_names.result_path(archived).name if archived else 'the result file'}"
            )
    if archived is not None and archive_names.failed_rows_path(archived).exists():
        lines += [
            f"  fix the rows: {archive_names.failed_rows_path(archived).name} (beside it) holds just these rows;",
            "                correct them in Excel and drop that file into the inbox",
        ]
    if archived is not None and item.stage != "preflight":
        lines.append(f"  to resend:    dropbox-sync retry {archived.name}")
    return lines + [""]
