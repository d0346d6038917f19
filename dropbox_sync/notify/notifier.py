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
what is due on an injected clock, and sends through ``mail.send``. An SMTP
failure is logged in one line and everything is kept for the next attempt.
Episodes and unsent entries survive restarts in ``notify.json`` in the state
dir, so a scheduled ``once`` behaves like the service does.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
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
from dropbox_sync.notify.mail import SmtpServer
from dropbox_sync.notify.messages import Messages, _duration, _parse, _show
from dropbox_sync.notify.notify_state import LEAVERS, MAX_FILES, FailedFile, Hold, Note, State
from dropbox_sync.pipeline.inboxlock import InboxLock
from dropbox_sync.pipeline.rows import failed_details
from dropbox_sync.redact import scrub

if TYPE_CHECKING:  # the pipeline is heavy, and config.parse imports this module
    from dropbox_sync.pipeline.outcome import FileReport

CHECK_SECONDS = 5.0  # how often the background thread looks for something due
QUEUE_MAX = 10_000  # reports waiting for the thread; beyond, the oldest are dropped (memory stays bounded)
MAX_ROWS = 20  # failed rows shown per file; the rest are in the result file
RETRY_FIRST, RETRY_MAX = 60.0, 1800.0  # seconds between attempts while SMTP fails
# At stop, how long the last email may take (also its SMTP timeout): after the workers it must fit,
# with closing the journal and logs, in the service managers' margin (service.core.STOP_MARGIN).
FLUSH_BUDGET = 8.0
TOLD = ("processed", "failed", "held", "guarded")  # pipeline.Outcome values that matter here (retries do not)

# -- the notifier -----------------------------------------------------------------


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Notifier(Messages):
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
        self.host = socket.gethostname()
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
        started = _iso(self.now())
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
            self._take_in(now)
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

    # -- taking in reports ----------------------------------------------------------

    def _take_in(self, now: dt.datetime) -> None:
        with self._incoming_lock:
            reports = list(self._incoming)
            self._incoming.clear()
        for report, when in reports:
            if report.outcome.value == "held":
                hold = self.state.holds.get(report.inbox)
                if hold is None:
                    self.state.holds[report.inbox] = Hold(_iso(when), report.summary)
                else:
                    hold.reason = report.summary
                continue
            if report.outcome.value == "guarded":  # never reached the server: says nothing of a hold
                self._add_failed(report, when)
                continue
            self._hold_cleared(report.inbox, when)
            if report.outcome.value == "processed":
                self.state.last_success[report.inbox] = _iso(when)
                self._add_leavers(report, when)
            else:
                self._add_failed(report, when)

    def _hold_cleared(self, inbox: str, when: dt.datetime) -> None:
        hold = self.state.holds.pop(inbox, None)
        if hold is not None and hold.alerted:
            since = _parse(hold.since) or when
            self._add_note(
                f'inbox "{inbox}": uploads work again since {_show(when)}, after {_duration(when - since)} '
                f"held. The reason was: {hold.reason}",
                when,
            )

    def _add_note(self, text: str, when: dt.datetime, kind: str | None = None) -> None:
        if len(self.state.notes) < MAX_FILES:
            self.state.notes.append(Note(text, _iso(when)) if kind is None else Note(text, _iso(when), kind))

    def _add_leavers(self, report: FileReport, when: dt.datetime) -> None:
        """The students an import found missing from the export, when its route reports or
        deactivates them (the result's ``changes``, changes.py)."""
        facts = _read_result(report.result_file).get("dropbox_sync")
        changes = facts.get("changes") if isinstance(facts, dict) else None
        if not isinstance(changes, dict) or changes.get("leavers_policy") not in ("report", "deactivate"):
            return
        count = changes.get("leavers")
        if type(count) is not int or count <= 0:
            return
        names = [name for name in changes.get("leaver_users") or [] if isinstance(name, str)][:50]
        shown = ", ".join(names) + (f", ... ({count} in all)" if count > len(names) else "")
        what = (
            "deactivated in Infiniti"
            if changes["leavers_policy"] == "deactivate"
            else 'still active in Infiniti (leavers = "report")'
        )
        self._add_note(
            f'inbox "{report.inbox}": {report.original}: {count} user(s) no longer in the export, {what}: {shown}',
            when,
            LEAVERS,
        )

    def _add_failed(self, report: FileReport, when: dt.datetime) -> None:
        if len(self.state.failed) >= MAX_FILES:
            self.state.failed_overflow += 1
            return
        result = _read_result(report.result_file)
        facts = result.get("dropbox_sync") if isinstance(result.get("dropbox_sync"), dict) else {}
        rows = failed_details(result.get("details"))
        summary = result.get("summary") if isinstance(result.get("summary"), str) else report.summary
        self.state.failed.append(
            FailedFile(
                inbox=report.inbox,
                original=report.original,
                summary=summary,
                when=_iso(when),
                archived=_text(report.archived) if report.archived else "",
                stage=str(facts.get("stage", "upload")),
                rows=[[n, outcome] for n, outcome in rows[:MAX_ROWS]],
                more_rows=max(0, len(rows) - MAX_ROWS),
            )
        )

    # -- the stale check ------------------------------------------------------------

    def _check_stale(self, now: dt.datetime) -> None:
        """End the stale episodes that a success has ended since the alert."""
        for name, marked in list(self.state.stale_alerted.items()):
            last, mark = self._last_success(name), _parse(marked)
            if last is not None and (mark is None or last > mark):
                del self.state.stale_alerted[name]
                self._add_note(
                    f'inbox "{name}": a file succeeded again at {_show(last)}; the SIS export is running again.', now
                )

    def _succeeded(self, name: str) -> dt.datetime | None:
        """The last success we know of: from this process's reports or the journal."""
        moments = [_parse(self.state.last_success.get(name))]
        if self.journal is not None:
            try:
                attempt = self.journal.last(name, "processed")
            except sqlite3.Error:  # closed at shutdown, or unreadable: the reports still count
                attempt = None
            if attempt is not None:
                moments.append(_parse(attempt.finished))
        return max((m for m in moments if m is not None), default=None)

    def _last_success(self, name: str) -> dt.datetime | None:
        """The last success, or when we began watching the inbox if it never had one."""
        return self._succeeded(name) or _parse(self.state.watching_since.get(name))

    def _stale_inboxes(self, now: dt.datetime) -> list[tuple[str, dt.datetime, bool]]:
        """Inboxes past stale_after_hours and not yet alerted: (name, last success, ever succeeded)."""
        limit = dt.timedelta(hours=self.settings.stale_after_hours)
        found = []
        for name in self.inboxes:
            succeeded = self._succeeded(name)
            last = succeeded or _parse(self.state.watching_since.get(name))
            if last is not None and now - last >= limit and name not in self.state.stale_alerted:
                found.append((name, last, succeeded is not None))
        return found

    # -- deciding and sending -------------------------------------------------------

    def _send_due(self, now: dt.datetime, *, final: bool) -> int:
        window = dt.timedelta(minutes=self.settings.digest_minutes)
        outgoing: list[tuple[str, EmailMessage, Callable[[], None]]] = []
        entries = [_parse(f.when) for f in self.state.failed] + [_parse(n.when) for n in self.state.notes]
        oldest = min((e for e in entries if e is not None), default=None)
        if oldest is not None and (final or now - oldest >= window) and self._window_open("digest", now, window):
            failed, notes, overflow = list(self.state.failed), list(self.state.notes), self.state.failed_overflow
            outgoing.append(
                (
                    "digest",
                    self._digest(failed, notes, overflow, now),
                    lambda: self._forget_sent(failed, notes, overflow),
                )
            )
        alert_after = dt.timedelta(minutes=self.settings.alert_after_minutes)
        held = {
            name: hold
            for name, hold in self.state.holds.items()
            if not hold.alerted and now - (_parse(hold.since) or now) >= alert_after
        }
        if held and self._window_open("held", now, window):

            def alerted() -> None:
                for hold in held.values():
                    hold.alerted = True

            outgoing.append(("held", self._held(held, now), alerted))
        if self.settings.stale_after_hours > 0:
            stale = self._stale_inboxes(now)
            if stale and self._window_open("stale", now, window):
                marks = {name: _iso(last) for name, last, _ in stale}
                outgoing.append(("stale", self._stale(stale, now), lambda: self.state.stale_alerted.update(marks)))
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
                _duration(dt.timedelta(seconds=self._retry_delay)),
            )
            self._retry_delay = min(self._retry_delay * 2, RETRY_MAX)
            return 0
        self._retry_at, self._retry_delay = None, RETRY_FIRST
        for kind, message, done in outgoing:
            done()
            self.state.last_sent[kind] = _iso(now)
            logger.info("notify: sent {} to {}", message["Subject"], ", ".join(self.settings.recipients))
        return len(outgoing)

    def _window_open(self, kind: str, now: dt.datetime, window: dt.timedelta) -> bool:
        last = _parse(self.state.last_sent.get(kind))
        return last is None or now - last >= window or now < last

    def _forget_sent(self, failed: list[FailedFile], notes: list[Note], overflow: int) -> None:
        sent_failed, sent_notes = {id(f) for f in failed}, {id(n) for n in notes}
        self.state.failed = [f for f in self.state.failed if id(f) not in sent_failed]
        self.state.notes = [n for n in self.state.notes if id(n) not in sent_notes]
        self.state.failed_overflow -= overflow


def _read_result(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # moved by `retry` already, or unreadable: the summary still says why
    return data if isinstance(data, dict) else {}


def _text(path: Path) -> str:
    # A name that is not valid UTF-8 reaches us with surrogates; show U+FFFD instead.
    return str(path).encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def from_config(cfg: Any, *, journal: Any = None, state_dir: Path | None = None) -> Notifier | None:
    """The notifier for a loaded config, started; None when there is no [notify] table."""
    settings = getattr(cfg, "notify", None)
    if settings is None:
        return None
    return Notifier(settings, cfg.inboxes, journal=journal, state_dir=state_dir).start()
