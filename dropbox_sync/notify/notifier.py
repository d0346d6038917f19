"""Email for the people who run it: failed files, held inboxes, a silent SIS export.

Three kinds of message, each sent at most once per ``digest_minutes``:

- the **digest**: every file that went to failed/ (with Infiniti's summary
  and failed rows), plus a note for each alarm that has cleared; sent once the
  oldest entry in it is ``digest_minutes`` old, so a batch of failures is one
  email, never one per file;
- the **held** alert: an inbox paused for longer than ``alert_after_minutes``
  (wrong password, URL or certificate); one per hold episode;
- the **stale** alert: no file succeeded for ``stale_after_hours`` (the SIS
  export job has probably stopped); one per episode.

``Notifier.on_report`` is called from the inbox workers for every file report
and only appends to a queue, so mail can never slow or stop an upload. A
background thread (``notify``) looks at the queue every few seconds, decides
what is due on an injected clock, and sends through ``mail.send``: what each
report leaves for the emails is ``intake.take_in``'s, their texts are
``messages.Messages``'s, what is due and when to try again is decided here. An SMTP
failure is logged in one line and everything is kept for the next attempt.
Episodes and unsent entries survive restarts in ``notify.json`` in the state
dir, so a scheduled ``once`` behaves like the service does.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import socket
import sqlite3
import threading
from collections import deque
from collections.abc import Callable, Sequence
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger

from dropbox_sync import paths
from dropbox_sync.config import InboxConfig
from dropbox_sync.config.notify_settings import NotifySettings
from dropbox_sync.errors import MailError
from dropbox_sync.notify import mail
from dropbox_sync.notify.intake import take_in
from dropbox_sync.notify.mail import SmtpServer
from dropbox_sync.notify.messages import Messages
from dropbox_sync.notify.notify_state import FailedFile, Note, State
from dropbox_sync.pipeline.inboxlock import InboxLock
from dropbox_sync.redact import scrub
from dropbox_sync.when import duration, iso_utc, parse_iso, show_local

if TYPE_CHECKING:  # the pipeline is heavy, and config.parse imports this module
    from dropbox_sync.pipeline.outcome import FileReport

CHECK_SECONDS = 5.0  # how often the background thread looks for something due
QUEUE_MAX = 10_000  # reports waiting for the thread; beyond, the oldest are dropped (memory stays bounded)
RETRY_FIRST, RETRY_MAX = 60.0, 1800.0  # seconds between attempts while SMTP fails
# At stop, how long the last email may take (also its SMTP timeout): after the workers it must fit,
# with closing the journal and logs, in the service managers' margin (service.core.STOP_MARGIN).
FLUSH_BUDGET = 8.0
TOLD = ("processed", "failed", "held", "guarded")  # pipeline.Outcome values that matter here (retries do not)

# -- the notifier -----------------------------------------------------------------


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Notifier:
    """Turns file reports and the passing of time into a few emails."""

    def __init__(
        self,
        settings: NotifySettings,
        inboxes: Sequence[InboxConfig],
        *,
        journal: Any = None,
        state_dir: Path | None = None,
        now: Callable[[], dt.datetime] = utc_now,
        send: Callable[[SmtpServer, Sequence[EmailMessage]], None] = mail.send,
        check_seconds: float = CHECK_SECONDS,
        flush_budget: float = FLUSH_BUDGET,
    ) -> None:
        self.settings = settings
        self.inboxes = {inbox.name: inbox for inbox in inboxes}
        self.journal = journal  # anything with last(inbox, outcome) -> Attempt | None
        self.now = now
        self._send = send
        self.check_seconds = check_seconds
        self.flush_budget = flush_budget
        self._path = state_dir / paths.NOTIFY_FILE if state_dir is not None else None
        self._incoming: deque[tuple[FileReport, dt.datetime]] = deque(maxlen=QUEUE_MAX)
        self._incoming_lock = threading.Lock()
        self._tick_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._retry_at: dt.datetime | None = None
        self._retry_delay = RETRY_FIRST
        self.messages = Messages(settings, self.inboxes, socket.gethostname())
        # notify.json belongs to the process that sends the email: a second one (`once` beside
        # the service) leaves it alone, or both would mail the same queued failures.
        self._owner = InboxLock(state_dir, "notify", self._path) if state_dir is not None and self._path else None
        self._owned = False
        self.state = State()
        self._saved: dict[str, Any] | None = None
        self._own()

    def _own(self) -> bool:
        """Hold notify.json's lock, taking it (and reading the file) as soon as it is free."""
        if self._owned:
            return True
        if self._owner is not None:
            try:
                if not self._owner.acquire():
                    return False
            except OSError as exc:  # a state dir we may not write: as before locks, and say so
                logger.warning("notify: cannot lock {} ({}); using it without a lock", self._path, exc)
        self._owned = True
        self.state, self._saved = State.load(self._path), None
        started = iso_utc(self.now())
        for name in self.inboxes:
            self.state.watching_since.setdefault(name, started)
        for episodes in (self.state.holds, self.state.stale_alerted, self.state.watching_since):
            for name in set(episodes) - set(self.inboxes):  # an inbox removed from the config
                del episodes[name]
        return True

    # called from the inbox workers: quick, never blocks on mail
    def on_report(self, report: FileReport) -> None:
        if report.outcome.value in TOLD:
            with self._incoming_lock:
                self._incoming.append((report, self.now()))

    def start(self) -> Notifier:
        self._thread = threading.Thread(target=self._run, name="notify", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread; what is pending is sent on the way out, for at most ``flush_budget`` s.

        A slow mail server must not make the service overrun its stop budget: past the budget
        the (daemon) thread is left to finish or die with the process. Nothing is lost either
        way: the state was saved before sending, so the next run sends what did not go out.
        """
        self._stop.set()
        abandoned = False
        if self._thread is not None:
            self._thread.join(self.flush_budget)
            abandoned = self._thread.is_alive()
            if abandoned:
                logger.warning(
                    "notify: the mail server has not answered within {:g} s of stopping; what was "
                    "being sent is kept in {} and goes out at the next start",
                    self.flush_budget,
                    self._path or "memory (no state dir)",
                )
            self._thread = None
        if not self._owned and self.pending:
            holder = self._owner.holder() if self._owner is not None else None
            logger.warning(
                "notify: {} failed file(s) of this run were not mailed: another dropbox-sync process "
                "({}) sends the email for this state dir; the files are in failed/",
                self.pending,
                holder.describe() if holder else "unknown",
            )
        elif self._owner is not None and not abandoned:
            self._owner.release()

    def _run(self) -> None:
        while True:
            self._safe_tick(final=False)
            if self._stop.wait(self.check_seconds):
                break
        self._safe_tick(final=True)

    def _safe_tick(self, *, final: bool) -> None:
        try:
            self.tick(final=final)
        except Exception:  # noqa: BLE001 - a mail problem must never end the service
            logger.exception("notify: unexpected error; carrying on")

    def tick(self, *, final: bool = False) -> int:
        """Take in new reports and send what is due; returns the number of emails sent.

        ``final`` (at stop) sends the digest without waiting out its window.
        """
        with self._tick_lock:
            if not self._own():
                return 0  # another process sends the email; reports wait in the (bounded) queue
            now = self.now()
            self._take_in()
            if self.settings.stale_after_hours > 0:
                self._check_stale(now)
            # Saved before sending, so a stop or kill during a slow SMTP exchange loses nothing
            # queued (the price: an email cut off after the server took it may be sent twice).
            self._saved = self.state.save(self._path, self._saved)
            sent = 0
            if self._retry_at is None or now >= self._retry_at or final:
                sent = self._send_due(now, final=final)
            self._saved = self.state.save(self._path, self._saved)
            return sent

    @property
    def pending(self) -> int:
        """Failed files and notes waiting for the next digest (for tests and status)."""
        with self._incoming_lock:
            waiting = sum(1 for report, _ in self._incoming if report.outcome.value == "failed")
        return waiting + len(self.state.failed) + len(self.state.notes)

    def _take_in(self) -> None:
        with self._incoming_lock:
            reports = list(self._incoming)
            self._incoming.clear()
        for report, when in reports:
            take_in(self.state, report, when)

    # -- the stale check ------------------------------------------------------------

    def _check_stale(self, now: dt.datetime) -> None:
        """End the stale episodes that a success has ended since the alert."""
        for name, marked in list(self.state.stale_alerted.items()):
            last, mark = self._last_success(name), parse_iso(marked)
            if last is not None and (mark is None or last > mark):
                del self.state.stale_alerted[name]
                self.state.add_note(
                    f'inbox "{name}": a file succeeded again at {show_local(last)}; the SIS export is running again.',
                    iso_utc(now),
                )

    def _succeeded(self, name: str) -> dt.datetime | None:
        """The last success we know of: from this process's reports or the journal."""
        moments = [parse_iso(self.state.last_success.get(name))]
        if self.journal is not None:
            try:
                attempt = self.journal.last(name, "processed")
            except sqlite3.Error:  # closed at shutdown, or unreadable: the reports still count
                attempt = None
            if attempt is not None:
                moments.append(parse_iso(attempt.finished))
        return max((m for m in moments if m is not None), default=None)

    def _last_success(self, name: str) -> dt.datetime | None:
        """The last success, or when we began watching the inbox if it never had one."""
        return self._succeeded(name) or parse_iso(self.state.watching_since.get(name))

    def _stale_inboxes(self, now: dt.datetime) -> list[tuple[str, dt.datetime, bool]]:
        """Inboxes past stale_after_hours and not yet alerted: (name, last success, ever succeeded)."""
        limit = dt.timedelta(hours=self.settings.stale_after_hours)
        found = []
        for name in self.inboxes:
            succeeded = self._succeeded(name)
            last = succeeded or parse_iso(self.state.watching_since.get(name))
            if last is not None and now - last >= limit and name not in self.state.stale_alerted:
                found.append((name, last, succeeded is not None))
        return found

    # -- deciding and sending -------------------------------------------------------

    def _send_due(self, now: dt.datetime, *, final: bool) -> int:
        window = dt.timedelta(minutes=self.settings.digest_minutes)
        outgoing: list[tuple[str, EmailMessage, Callable[[], None]]] = []
        entries = [parse_iso(f.when) for f in self.state.failed] + [parse_iso(n.when) for n in self.state.notes]
        oldest = min((e for e in entries if e is not None), default=None)
        if oldest is not None and (final or now - oldest >= window) and self._window_open("digest", now, window):
            failed, notes, overflow = list(self.state.failed), list(self.state.notes), self.state.failed_overflow
            outgoing.append(
                (
                    "digest",
                    self.messages.digest(failed, notes, overflow, now),
                    lambda: self._forget_sent(failed, notes, overflow),
                )
            )
        alert_after = dt.timedelta(minutes=self.settings.alert_after_minutes)
        held = {
            name: hold
            for name, hold in self.state.holds.items()
            if not hold.alerted and now - (parse_iso(hold.since) or now) >= alert_after
        }
        if held and self._window_open("held", now, window):

            def alerted() -> None:
                for hold in held.values():
                    hold.alerted = True

            outgoing.append(("held", self.messages.held(held, now), alerted))
        if self.settings.stale_after_hours > 0:
            stale = self._stale_inboxes(now)
            if stale and self._window_open("stale", now, window):
                marks = {name: iso_utc(last) for name, last, _ in stale}
                outgoing.append(
                    ("stale", self.messages.stale(stale, now), lambda: self.state.stale_alerted.update(marks))
                )
        if not outgoing:
            return 0
        server = self.settings.server
        if final:  # bounded: stopping must not wait out a long SMTP timeout
            server = dataclasses.replace(server, timeout=min(server.timeout, self.flush_budget))
        try:
            self._send(server, [message for _, message, _ in outgoing])
        except MailError as exc:
            self._retry_at = now + dt.timedelta(seconds=self._retry_delay)
            logger.error(
                "notify: {} email(s) not sent ({}): {}; trying again in {}",
                len(outgoing),
                ", ".join(kind for kind, _, _ in outgoing),
                scrub(str(exc)),
                duration(self._retry_delay),
            )
            self._retry_delay = min(self._retry_delay * 2, RETRY_MAX)
            return 0
        self._retry_at, self._retry_delay = None, RETRY_FIRST
        for kind, message, done in outgoing:
            done()
            self.state.last_sent[kind] = iso_utc(now)
            logger.info("notify: sent {} to {}", message["Subject"], ", ".join(self.settings.recipients))
        return len(outgoing)

    def _window_open(self, kind: str, now: dt.datetime, window: dt.timedelta) -> bool:
        last = parse_iso(self.state.last_sent.get(kind))
        return last is None or now - last >= window or now < last

    def _forget_sent(self, failed: list[FailedFile], notes: list[Note], overflow: int) -> None:
        sent_failed, sent_notes = {id(f) for f in failed}, {id(n) for n in notes}
        self.state.failed = [f for f in self.state.failed if id(f) not in sent_failed]
        self.state.notes = [n for n in self.state.notes if id(n) not in sent_notes]
        self.state.failed_overflow -= overflow


def from_config(cfg: Any, *, journal: Any = None, state_dir: Path | None = None) -> Notifier | None:
    """The notifier for a loaded config, started; None when there is no [notify] table."""
    settings = getattr(cfg, "notify", None)
    if settings is None:
        return None
    return Notifier(settings, cfg.inboxes, journal=journal, state_dir=state_dir).start()
