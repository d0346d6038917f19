"""Logging set-up: the only place that adds loguru sinks.

Every sink writes through ``scrub`` so a registered secret can never reach a
console or a file, whatever code logged it (ours, httpx through the stdlib
intercept, or a traceback). ``diagnose=False`` because loguru's default
prints variable values in tracebacks, passwords included (DESIGN §8.9).

Log files carry the date in their name and are never renamed: loguru's own
rotation renames the open file, which fails on Windows while another process
(an editor, a backup agent) holds it (loguru issues #1170, #184).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import sys
import threading
from pathlib import Path
from typing import TextIO

from loguru import logger

from dropbox_sync import paths
from dropbox_sync.pipeline import archive_names
from dropbox_sync.redact import ScrubbingStream, scrub, scrub_data

CONSOLE_FORMAT = "<green>{time:HH:mm:ss}</green> <level>{level: <7}</level> {message}"
FILE_FORMAT = "{time:YYYY-MM-DD HH:mm:ss.SSS ZZ} {level: <7} [{thread.name}] {message}"


def setup(
    *,
    level: str = "INFO",
    log_dir: Path | None = None,
    log_format: str = "text",
    retention_days: int = 30,
    console: TextIO | None = None,
) -> None:
    """Replace every sink: the console, and a daily file in ``log_dir`` if given."""
    logger.remove()
    # One record is one line: a file name (or a server's text) holding a line break or an
    # escape sequence must not forge a log line or repaint a terminal, whichever code logged it.
    # Only the message: the traceback loguru appends after it keeps its own lines.
    logger.configure(patcher=_one_line)
    stream = console if console is not None else sys.stderr
    if stream is None:  # pythonw.exe and Windows services have no console at all
        stream = _Nowhere()
    logger.add(
        ScrubbingStream(stream),
        level=level,
        format=CONSOLE_FORMAT,
        colorize=_is_terminal(stream),
        backtrace=False,
        diagnose=False,
    )
    if log_dir is not None:
        logger.add(
            DailyFileSink(
                log_dir,
                retention_days=retention_days,
                json_lines=log_format == "json",
                fallback=ScrubbingStream(stream),
            ),
            level=level,
            format=FILE_FORMAT,  # loguru appends "\n{exception}" to a string format itself
            colorize=False,
            backtrace=False,
            diagnose=False,
            enqueue=False,
        )
    _intercept_stdlib_logging()
    _route_uncaught_exceptions()


def _one_line(record) -> None:
    record["message"] = archive_names.display_name(record["message"])


def _route_uncaught_exceptions() -> None:
    """Uncaught exceptions (main thread or any other) go through the scrubbing
    sinks too; Python's default hooks would print them raw to stderr."""

    def main_hook(kind, value, traceback) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, value, traceback)
            return
        logger.opt(exception=(kind, value, traceback)).critical("unexpected error")

    def thread_hook(info: threading.ExceptHookArgs) -> None:
        if info.exc_type is SystemExit:
            return
        name = info.thread.name if info.thread else "?"
        logger.opt(exception=(info.exc_type, info.exc_value, info.exc_traceback)).critical(
            "unexpected error in thread {}", name
        )

    sys.excepthook = main_hook
    threading.excepthook = thread_hook


def setup_from_config(config, *, verbose: bool = False, console: TextIO | None = None) -> Path:
    """Console plus daily files in the configured (or site) log dir; returns that dir."""
    directory = config.log_dir or paths.log_dir()
    setup(
        level="DEBUG" if verbose else config.log_level, log_dir=directory, log_format=config.log_format, console=console
    )
    return directory


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class _Nowhere:
    def write(self, message: str) -> None:
        pass

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


class DailyFileSink:
    """Appends to ``dropbox-sync_YYYY-MM-DD.log``; opens a new file when the date changes."""

    def __init__(
        self, directory: Path, *, retention_days: int = 30, json_lines: bool = False, fallback: TextIO | None = None
    ) -> None:
        self.directory = directory
        self.retention_days = retention_days
        self.json_lines = json_lines
        # Where to say once that the file cannot be written: this sink cannot log about itself
        # (loguru's handler lock), and loguru's own catch prints the raw record per line.
        self._fallback = fallback
        self._problem: str | None = None  # why the last write failed, until one works again
        self._lock = threading.Lock()
        self._day: dt.date | None = None
        self._file: TextIO | None = None
        with contextlib.suppress(OSError):  # else the first line's open fails and says why, once
            directory.mkdir(parents=True, exist_ok=True)

    def path_for(self, day: dt.date) -> Path:
        suffix = "jsonl" if self.json_lines else "log"
        return self.directory / f"{paths.LOG_PREFIX}{day.isoformat()}.{suffix}"

    def write(self, message) -> None:  # loguru passes a str subclass with .record
        text = self._render(message)
        day = message.record["time"].date() if hasattr(message, "record") else dt.date.today()
        with self._lock:
            try:
                handle = self._handle_for(day)
                handle.write(scrub(text))
                handle.flush()
            except OSError as exc:  # a full disk, a vanished or read-only folder: the job goes on
                self._lost(day, exc)
                return
            if self._problem is not None:
                self._tell(
                    f"the log file {self.path_for(day)} is written again (lines were lost while: {self._problem})"
                )
                self._problem = None

    def _lost(self, day: dt.date, exc: OSError) -> None:
        self._close()  # reopened at the next line, which then starts on a fresh buffer
        problem = exc.strerror or str(exc)
        if self._problem is None:
            self._tell(
                f"cannot write the log file {self.path_for(day)} ({problem}); its lines are lost "
                "until it works again (the console still has them)"
            )
        self._problem = problem

    def _tell(self, text: str) -> None:
        if self._fallback is not None:
            stamp = dt.datetime.now().strftime("%H:%M:%S")
            self._fallback.write(f"{stamp} WARNING {archive_names.display_name(text)}\n")

    def _close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):  # the unflushed tail of a full disk: already reported
                self._file.close()
            self._file = None

    def _render(self, message) -> str:
        if not self.json_lines or not hasattr(message, "record"):
            return str(message)
        record = message.record
        entry = {
            "time": record["time"].isoformat(),
            "level": record["level"].name,
            "message": record["message"],
            "thread": record["thread"].name,
        }
        if record["exception"] is not None:
            entry["exception"] = str(message).split("\n", 1)[-1].strip()
        # Scrubbed BEFORE encoding: json.dumps escapes a '"' or '\' in a password,
        # and the escaped form would slip past a scrub of the encoded line.
        return json.dumps(scrub_data(entry), ensure_ascii=False) + "\n"

    def _handle_for(self, day: dt.date) -> TextIO:
        if self._file is None or day != self._day:
            self._close()
            # backslashreplace: a file name that is not valid UTF-8 must not stop logging.
            self._file = open(self.path_for(day), "a", encoding="utf-8", errors="backslashreplace")  # noqa: SIM115
            self._day = day
            self._prune(day)
        return self._file

    def _prune(self, today: dt.date) -> None:
        """Delete our own log files older than the retention (never user files)."""
        cutoff = today - dt.timedelta(days=self.retention_days)
        for path in self.directory.glob(f"{paths.LOG_PREFIX}*.*"):
            try:
                day = dt.date.fromisoformat(path.stem.split("_", 1)[1])
            except (IndexError, ValueError):
                continue
            if day < cutoff:
                try:
                    path.unlink()
                except OSError:
                    pass  # held open elsewhere: try again tomorrow

    def stop(self) -> None:
        with self._lock:
            self._close()


# watchdog's inotify emitter logs this at ERROR when the observer is stopped
# while a read is pending: a normal shutdown, not a fault worth an alarm.
_SHUTDOWN_NOISE = "called when the thread is inactive"


class _InterceptHandler(logging.Handler):
    """Send stdlib logging (httpx, watchdog) into loguru, hence through the scrubbers."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        if _SHUTDOWN_NOISE in record.getMessage():
            level = "DEBUG"
        logger.opt(depth=6, exception=record.exc_info).log(level, record.getMessage())


def _intercept_stdlib_logging() -> None:
    logging.basicConfig(handlers=[_InterceptHandler()], level=logging.INFO, force=True)
    # httpx logs every request URL at INFO; one line per upload is ours to write.
    for noisy in ("httpx", "httpcore", "watchdog"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
