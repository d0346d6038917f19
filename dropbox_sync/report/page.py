"""report.html: what happened in an inbox, for the people who drop files into it.

Office staff drop a file on a share and want to know what became of it, in
the same folder, without a server, a port or a login (the share's permissions
already decide who may look). ``ReportPages`` listens to the pipeline's
reports and keeps one self-contained page per inbox (no script, no external
asset, inline CSS) current: the inbox's state now, the last success, the
recent imports with their failed rows, and the files held for approval.

Rendering is Jinja2 with autoescaping on, so every value that came from a
file name, a file or the server is text, never markup; every value also goes
through ``redact.scrub`` (the environment's ``finalize``) so a server reply
quoting the password cannot put it on the page. The page is written through
``pagefile.write_page`` (workdirs' rules: temporary + fsync + rename, no link followed).

A burst of 10,000 files must not mean 10,000 rewrites: each page is rewritten
at most once per ``RENDER_EVERY`` seconds while files keep finishing, and
always once more at the end (``stop``), so the final state is on the page.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger

from dropbox_sync import __version__, when
from dropbox_sync.config import InboxConfig
from dropbox_sync.pipeline import archive, rows
from dropbox_sync.redact import scrub
from dropbox_sync.report import pagefile
from dropbox_sync.state import held, status

if TYPE_CHECKING:
    from dropbox_sync.pipeline.outcome import FileReport
    from dropbox_sync.pipeline.worker import InboxSnapshot
    from dropbox_sync.state.journal import Attempt, HistoryEntry, Journal

RENDER_EVERY = 2.0  # seconds between rewrites of one page while files keep finishing
IDLE_REFRESH = 600.0  # a running service rewrites an unchanged page this often: its time shows it is alive
CHECK_EVERY = 1.0  # how often the live state (waiting, held) is compared with the page's
RETRY_FAILED = 30.0  # a page that could not be written (a browser or scanner holds it on Windows) is tried again
MAX_FAILED_ROWS = 20  # per import; the rest are in the result and the failed-rows CSV
MAX_HELD = 100  # held files listed
MAX_WAITING = 100  # waiting files listed (a burst of 10,000 is counted, not listed)
MAX_RESULT_BYTES = 64 * 1024 * 1024  # a result bigger than this is not read for its rows
MAX_CHANGED_NAMES = 10  # usernames named per kind of roster change; the counts are complete
OUTCOME_TEXT = {"processed": "Imported", "failed": "Failed", "guarded": "Held for approval"}


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# -- keeping the pages current ---------------------------------------------------------


@dataclass
class _Page:
    inbox: InboxConfig
    due: bool = True  # something happened that the page does not show yet
    rendered_at: float | None = None  # monotonic time of the last rewrite
    shown: object = None  # the live state the page shows
    results: dict[tuple[str, int, int], tuple[list[rows.FailedRow], int]] = field(default_factory=dict)
    problem: str | None = None  # the last write error, logged once
    retry_at: float | None = None  # when to try again after a failed write


class ReportPages:
    """One report page per inbox that has one, rewritten after outcomes (rate-limited) and at stop."""

    def __init__(
        self,
        inboxes: Iterable[InboxConfig],
        journal: Journal | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], dt.datetime] = utc_now,
        render_every: float = RENDER_EVERY,
        idle_refresh: float = IDLE_REFRESH,
    ) -> None:
        self.journal = journal
        self.clock, self.now = clock, now
        self.render_every, self.idle_refresh = render_every, idle_refresh
        self.renders = 0  # pages written, for tests and curiosity
        self._pages = {inbox.name: _Page(inbox) for inbox in inboxes if inbox.report}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pipeline: Any = None

    def __bool__(self) -> bool:
        return bool(self._pages)

    def on_report(self, report: FileReport) -> None:
        """A pipeline listener: quick, never blocks on I/O."""
        page = self._pages.get(report.inbox)
        if page is None:
            return
        with self._lock:
            already, page.due = page.due, True
        # A page already due is rewritten when its RENDER_EVERY is up, which the thread
        # waits for; waking it for every file of a burst only to find that costs a tick each.
        if not already:
            self._wake.set()

    def start(self, pipeline: Any) -> ReportPages:
        """Watch ``pipeline`` (its ``snapshots()`` and ``activity``); the first pages are written at once."""
        self._pipeline = pipeline
        for page in self._pages.values():
            pagefile.remove_stale_temporaries(page.inbox.path, page.inbox.report)
        self._thread = threading.Thread(target=self._run, name="report-pages", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread, then write every page as things are now (the final state)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._pipeline is not None:
            self.tick(final=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                delay = self.tick()
            except Exception:  # noqa: BLE001 - a page must never stop the service
                logger.exception("report pages: unexpected error; trying again shortly")
                delay = self.render_every
            self._wake.wait(delay)
            self._wake.clear()

    def tick(self, *, final: bool = False) -> float:
        """Rewrite the pages that are due and allowed; seconds until the next look."""
        snapshots = {s.name: s for s in self._pipeline.snapshots()}
        activity = getattr(self._pipeline, "activity", "")
        now = self.clock()
        delay = CHECK_EVERY
        for name, page in self._pages.items():
            snapshot = snapshots.get(name)
            shown = (
                (
                    activity,
                    snapshot.held,
                    snapshot.folder_missing,
                    snapshot.uploading,
                    tuple(sorted(snapshot.waiting.items())),
                )
                if snapshot
                else (activity,)
            )
            with self._lock:
                wanted = (
                    final
                    or page.due
                    or shown != page.shown
                    or (
                        page.rendered_at is not None
                        and now - page.rendered_at >= self.idle_refresh
                        and activity == "watching"
                    )
                    or (page.retry_at is not None and now >= page.retry_at)
                )
                wait = 0.0 if page.rendered_at is None else page.rendered_at + self.render_every - now
                if not wanted:
                    continue
                if wait > 0 and not final:
                    delay = min(delay, wait)
                    continue
                page.due = False
            page.shown, page.rendered_at = shown, now
            page.retry_at = None if self._write(page, snapshot, activity) else now + RETRY_FAILED
            if page.retry_at is not None:
                delay = min(delay, RETRY_FAILED)
        return max(0.0, delay)

    def _write(self, page: _Page, snapshot: InboxSnapshot | None, activity: str) -> bool:
        """Render and write one page; False if it could not be written (logged once)."""
        inbox = page.inbox
        if not inbox.path.is_dir():
            return True  # an unmounted share: nothing to write into; the state change when it is back rewrites it
        try:
            html = render(gather(inbox, snapshot, activity, self.journal, self.now(), page.results))
            pagefile.write_page(inbox.path, inbox.report, html)
        except Exception as exc:  # noqa: BLE001 - a page must never stop an upload
            problem = f"{type(exc).__name__}: {exc}"
            if problem != page.problem:
                logger.warning('inbox "{}": cannot write {} ({}); uploads carry on', inbox.name, inbox.report, problem)
            page.problem = problem
            return False
        if page.problem is not None:
            logger.info('inbox "{}": {} is written again', inbox.name, inbox.report)
        page.problem = None
        self.renders += 1
        return True


# -- what the page shows -----------------------------------------------------------------


def gather(
    inbox: InboxConfig,
    snapshot: InboxSnapshot | None,
    activity: str,
    journal: Journal | None,
    now: dt.datetime,
    cache: dict | None = None,
) -> dict[str, Any]:
    """Everything the template shows, as plain data."""
    cache = {} if cache is None else cache
    reasons = snapshot.waiting if snapshot else {}
    waiting = status.waiting(inbox, reasons)
    imports = journal.history(inbox.name, limit=inbox.report_imports) if journal else []
    success = journal.last(inbox.name, "processed") if journal else None
    return {
        "inbox": inbox.name,
        "written": _moment(now, now),
        "zone": when.zone_text(now),
        "version": __version__,
        "activity": activity,
        "held": snapshot.held if snapshot else None,
        "hold_retry": when.duration(inbox.hold_retry_seconds),
        "uploading": snapshot.uploading if snapshot else None,
        "waiting": [_waiting(entry) for entry in waiting[:MAX_WAITING]],
        "waiting_count": len(waiting),
        "last_success": _last_success(success, now),
        "held_files": _held_files(inbox, now),
        "imports": [_import(inbox, attempt, now, cache) for attempt in imports],
        "limit": inbox.report_imports,
    }


def _waiting(entry: dict[str, Any]) -> dict[str, Any]:
    age = entry["seconds_since_modified"]
    return {**entry, "since": when.duration(age) if age is not None else ""}


def _moment(moment: dt.datetime | None, now: dt.datetime) -> dict[str, str] | None:
    if moment is None:
        return None
    local = moment.astimezone()
    return {
        "iso": local.isoformat(timespec="seconds"),
        "text": local.strftime("%a %d %b %Y, %H:%M:%S %Z"),
        "short": local.strftime("%d %b %Y %H:%M %Z"),
        "ago": when.duration((now - moment).total_seconds()),
    }


def _last_success(attempt: Attempt | None, now: dt.datetime) -> dict[str, Any] | None:
    if attempt is None:
        return None
    finished = when.parse_iso(attempt.finished)
    return {"file": attempt.original, "summary": attempt.summary, "when": _moment(finished, now)}


def _import(inbox: InboxConfig, entry: HistoryEntry, now: dt.datetime, cache: dict) -> dict[str, Any]:
    folder = entry.folder
    archived = inbox.path / folder / entry.archived_as
    result = archive.result_path(archived)
    links = [
        (label, _href(folder, path.name))
        for label, path in (
            ("file", archived),
            ("result", result),
            ("failed rows (CSV)", archive.failed_rows_path(archived)),
        )
        if _is_file(path)
    ]
    facts = _result_facts(inbox, archived, result, cache) if _is_file(result) else _Facts()
    return {
        "file": entry.file,
        "archived_as": entry.archived_as,
        "when": _moment(when.parse_iso(entry.finished), now),
        "outcome": entry.outcome,
        "outcome_text": OUTCOME_TEXT.get(entry.outcome, entry.outcome),
        "summary": entry.summary,
        "created": entry.created,
        "updated": entry.updated,
        "failed": entry.failed,
        "links": links,
        "failed_rows": facts.failed_rows if entry.outcome == "failed" else [],
        "more_failed_rows": facts.more_failed_rows if entry.outcome == "failed" else 0,
        "changes": facts.changes,
    }


@dataclass(frozen=True)
class _Facts:
    """What the page takes from a result file besides the journal's line."""

    failed_rows: list[rows.FailedRow] = field(default_factory=list)
    more_failed_rows: int = 0
    changes: list[str] = field(default_factory=list)  # the roster changes, in words


def _result_facts(inbox: InboxConfig, archived: Path, result: Path, cache: dict) -> _Facts:
    """Read an archived file's result once: archived files and their results do not change."""
    try:
        info = os.lstat(result)
    except OSError:
        return _Facts()
    key = (str(result), info.st_size, info.st_mtime_ns)
    if key not in cache:
        data = _read_json(result) if info.st_size <= MAX_RESULT_BYTES else {}
        ours = data.get("dropbox_sync") if isinstance(data.get("dropbox_sync"), dict) else {}
        # Read as the upload read it: transcoded only when it was not UTF-8 (prepare.py).
        encoding = str(ours.get("transcoded_from") or "")
        failed, more = rows.failed_rows(
            data.get("details"), archived, encoding=encoding, limit=MAX_FAILED_ROWS, traced=ours.get("export_rows")
        )
        cache[key] = _Facts(failed, more, _changes(ours.get("changes")))
    return cache[key]


def _changes(changes: object) -> list[str]:
    """The roster changes of an import (the result's ``changes``, changes.Changes.facts) in words:
    ``["3 added: ann, bob, cid", "1 changed: dan", "1996 unchanged", "2 leavers (deactivated): eve, fay"]``."""
    if not isinstance(changes, dict):
        return []

    def count(key: str) -> int:
        value = changes.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    def names(key: str) -> list[str]:
        listed = changes.get(key)
        listed = listed if isinstance(listed, list) else []
        return [str(item.get("username", "")) if isinstance(item, dict) else str(item) for item in listed]

    def part(number: int, label: str, listed: list[str]) -> str:
        shown = listed[:MAX_CHANGED_NAMES]
        text = f"{number} {label}"
        if shown:
            text += ": " + ", ".join(shown) + (", …" if number > len(shown) else "")
        return text

    leavers = "leaver" if count("leavers") == 1 else "leavers"
    if count("leavers") and changes.get("deactivated"):
        leavers += " (deactivated)"
    words = [
        part(count("added"), "added", names("added_users")),
        part(count("changed"), "changed", names("changed_users")),
        f"{count('unchanged')} unchanged",
        part(count("leavers"), leavers, names("leaver_users")),
    ]
    return [text for text in words if not text.startswith("0 ")]


def _held_files(inbox: InboxConfig, now: dt.datetime) -> list[dict[str, Any]]:
    found = []
    for path, reason, _ in held.shown_files(inbox.path)[:MAX_HELD]:
        name = path.name
        found.append(
            {
                "file": archive.display_name(archive.original_of(path)),
                "archived_as": archive.display_name(name),
                "since": _moment(archive.archived_at(name), now),
                "why": reason,
                "command": f"dropbox-sync approve {_quoted(archive.display_name(name))}",
                "href": _href(archive.HELD, name),
            }
        )
    return found


def _read_json(path: Path) -> dict[str, Any]:
    """A result file from a shared folder: no link followed, nothing but a regular file read."""
    try:
        with archive.open_untrusted(path) as handle:
            data = json.loads(handle.read(MAX_RESULT_BYTES + 1).decode("utf-8", "replace"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _is_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _href(folder: str, name: str) -> str:
    """A link relative to the page: works from a share, a mapped drive and a UNC path alike."""
    raw = name.encode("utf-8", "surrogateescape")
    return f"{folder}/{urllib.parse.quote(raw, safe='')}"


def _quoted(name: str) -> str:
    return f'"{name}"' if any(c in name for c in " '\"&()<>|^;$`") else name


# -- rendering ----------------------------------------------------------------------------

_environment = None
_environment_lock = threading.Lock()


def render(data: dict[str, Any]) -> str:
    return _template().render(**data)


def _template():
    global _environment
    with _environment_lock:
        if _environment is None:
            import jinja2  # only a process that writes pages pays for it

            # autoescape=True: every {{ value }} is HTML-escaped (file names, server
            # messages, usernames such as O'Brien); finalize runs on each value before
            # that, so scrub sees the text as it is, not its escaped form.
            _environment = jinja2.Environment(
                loader=jinja2.PackageLoader("dropbox_sync.report", "templates"),
                autoescape=True,
                finalize=_shown,
                undefined=jinja2.StrictUndefined,
                trim_blocks=True,
                lstrip_blocks=True,
            )
        return _environment.get_template("report.html")


def _shown(value: object) -> object:
    """Every value as the page shows it: scrubbed of secrets, and valid UTF-8 whatever a
    name or message held (a name that is not UTF-8 reaches us with surrogates)."""
    if not isinstance(value, str):
        return value
    value = scrub(value)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return archive.display_name(value)
    return value


def from_config(cfg: Any, *, journal: Journal | None) -> ReportPages | None:
    """The pages of a loaded config (not yet started); None when every inbox has ``report = ""``."""
    pages = ReportPages(cfg.inboxes, journal)
    return pages if pages else None
