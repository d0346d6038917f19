"""report.html: what happened in an inbox, for the people who drop files into it.

Office staff drop a file on a share and want to know what became of it, in
the same folder, without a server, a port or a login (the share's permissions
already decide who may look). ``ReportPages`` listens to the pipeline's
reports and keeps one self-contained page per inbox (no script, no external
asset, inline CSS) current: the inbox's state now, the last success, the
recent imports with their failed rows, and the files held for approval
(gathered by ``content.gather``).

Rendering is Jinja2 with autoescaping on, so every value that came from a
file name, a file or the server is text, never markup; every value also goes
through ``redact.scrub`` (the environment's ``finalize``) so a server reply
quoting the password cannot put it on the page. The page is written through
``pagefile.write_page`` (workdirs' rules: temporary + fsync + rename, no link followed).

A burst of 10,000 files must not mean 10,000 rewrites: each page is rewritten
at most once per ``RENDER_EVERY`` seconds while files keep finishing, and
always once more at the end (``stop``), so the final state is on the page.
``once`` is a batch run whose page is read afterwards: it rewrites at most every
``ONCE_RENDER_EVERY`` seconds (a rewrite during uploads costs them about its own
time: see the constant).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from loguru import logger

from dropbox_sync.config import InboxConfig
from dropbox_sync.pipeline import archive_names
from dropbox_sync.redact import scrub
from dropbox_sync.report import pagefile
from dropbox_sync.report.content import gather

if TYPE_CHECKING:
    from dropbox_sync.pipeline.health import InboxSnapshot
    from dropbox_sync.pipeline.outcome import FileReport
    from dropbox_sync.state.journal import Journal

RENDER_EVERY = 2.0  # seconds between rewrites of one page while files keep finishing
# ``once``: a rewrite while files are uploading delays them by most of its own length, 35-50 ms
# each for an inbox with a thousand files: its thread and the uploading one take turns at the GIL,
# and the uploader waits for each turn back (bench/bench_page_cost.py). Staff watching a
# service want the page fresh; a batch run's page is read when it ends, and is written then.
ONCE_RENDER_EVERY = 10.0
IDLE_REFRESH = 600.0  # a running service rewrites an unchanged page this often: its time shows it is alive
CHECK_EVERY = 1.0  # how often the live state (waiting, held) is compared with the page's
RETRY_FAILED = 30.0  # a page that could not be written (a browser or scanner holds it on Windows) is tried again


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# -- keeping the pages current ---------------------------------------------------------


@dataclass
class _Page:
    inbox: InboxConfig
    due: bool = True  # something happened that the page does not show yet
    rendered_at: float | None = None  # monotonic time of the last rewrite
    shown: object = None  # the live state the page shows
    results: dict = field(default_factory=dict)  # gather's cache of the result files it read
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

    def start(self, pipeline: Any, *, at_once: bool = True) -> ReportPages:
        """Watch ``pipeline`` (its ``snapshots()`` and ``activity``). The first pages are written
        at once, or (``at_once=False``: ``once``) after ``render_every`` like any rewrite, so a
        short run writes each page once, at its end (``stop``), and uploads start sooner."""
        self._pipeline = pipeline
        for page in self._pages.values():
            pagefile.remove_stale_temporaries(page.inbox.path, page.inbox.report)
            if not at_once:
                page.rendered_at = self.clock()
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
        try:  # Jinja2 imported and the template compiled now, before any page is due: in
            _template()  # ``once``, while files settle, not in the middle of the uploads
        except Exception:  # noqa: BLE001 - the first render meets it again and logs it
            pass
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
        return archive_names.display_name(value)
    return value


def from_config(cfg: Any, *, journal: Journal | None, render_every: float = RENDER_EVERY) -> ReportPages | None:
    """The pages of a loaded config (not yet started); None when every inbox has ``report = ""``."""
    pages = ReportPages(cfg.inboxes, journal, render_every=render_every)
    return pages if pages else None
