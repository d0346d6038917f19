"""Running the real product under a Windows Python: config, pipeline, results.

The Windows-side equivalent of the Linux suite's tests/support.py, kept
separate on purpose (this directory runs on its own interpreter with its own
conftest, and must not import the Linux tests). Everything here drives the
product's own code: ``config.load``, ``Pipeline.run`` with its watchdog
observers, the journal, the archive folders. Nothing is patched.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from loguru import logger

from dropbox_sync import config
from dropbox_sync.pipeline import archive_names, workdirs
from dropbox_sync.pipeline.runner import Pipeline
from dropbox_sync.state.journal import Journal

USER = "autoimport"
PASSWORD = "Lane-Pa55word-9c1e"  # distinctive, so a search can prove it never leaks
HEADER = "username,firstName,lastName,library-group,system-group,emailAddress"
BOM = b"\xef\xbb\xbf"  # Excel's "CSV UTF-8" starts with one (DESIGN 8.13)

# Generous: they only bound a failure. Starting a pipeline takes well under a
# second; an upload to the in-process emulator about 0.1 s.
PIPELINE_START_TIMEOUT = 30.0
PIPELINE_STOP_TIMEOUT = 30.0
PROCESS_TIMEOUT = 30.0


def csv_bytes(*rows: str, bom: bool = False) -> bytes:
    """A CSV as a Windows exporter writes it: CRLF line ends, UTF-8, optional BOM."""
    text = "\r\n".join([HEADER, *rows]) + "\r\n"
    return (BOM if bom else b"") + text.encode("utf-8")


def good_row(username: str) -> str:
    return f"{username},First,Last,Year 7,Student,{username}@school.example"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def toml_value(value: Any) -> str:
    # JSON strings are TOML basic strings: backslashes of C:\ paths get escaped.
    return json.dumps(value) if not isinstance(value, bool) else str(value).lower()


def write_config(folder: Path, emulator, *, inbox: Path, name: str = "lane", **overrides: Any) -> Path:
    """A config in ``folder`` for one inbox, uploading to ``emulator`` over TLS.

    The password comes from a ``password_file`` and the CA from a
    ``ca_bundle`` copied next to the config, as docs/install-windows.md tells
    a technician to do; state and logs go under ``folder`` too.
    """
    folder.mkdir(parents=True, exist_ok=True)
    inbox.mkdir(parents=True, exist_ok=True)
    password_file = folder / "infiniti-password.txt"
    password_file.write_text(PASSWORD, encoding="utf-8")
    ca_file = emulator.copy_ca(folder / "emulator-ca.pem")
    values = {
        "name": name,
        "path": str(inbox),
        "url": emulator.import_url("users"),
        "username": USER,
        "password_file": str(password_file),
        "ca_bundle": str(ca_file),
        "settle_seconds": 0.3,
        # Long on purpose: a file dropped while the pipeline runs is found
        # only because the Windows observer wakes the worker, not by a rescan.
        "rescan_seconds": 120,
        "stop_timeout": 5,
        **overrides,
    }
    lines = [
        f"state_dir = {toml_value(str(folder / 'state'))}",
        f"log_dir = {toml_value(str(folder / 'logs'))}",
        "",
        "[[inbox]]",
    ]
    lines += [f"{key} = {toml_value(value)}" for key, value in values.items()]
    path = folder / "config.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@contextlib.contextmanager
def running_pipeline(config_path: Path) -> Iterator[Pipeline]:
    """The real ``Pipeline.run`` (observers, workers, supervisor) in a thread.

    Stopped and joined on the way out, whatever happened in the block.
    """
    cfg = config.load(config_path)
    journal = Journal(cfg.state_dir / "journal.sqlite3")
    pipeline = Pipeline(cfg, journal=journal, state_dir=cfg.state_dir)
    stop = threading.Event()
    thread = threading.Thread(target=pipeline.run, args=(stop,), name="lane-pipeline")
    thread.start()
    try:
        assert pipeline.ready.wait(PIPELINE_START_TIMEOUT), "the pipeline did not start"
        yield pipeline
    finally:
        stop.set()
        thread.join(PIPELINE_STOP_TIMEOUT)
        journal.close()
        assert not thread.is_alive(), "the pipeline did not stop"


def archived(inbox: Path, which: str) -> list[Path]:
    """The archived files (not results) in processed/, failed/, ..."""
    folder = inbox / which
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if archive_names.is_archived_file(p.name))


def original(path: Path) -> str:
    return archive_names.original_name(path.name)


def result_of(path: Path) -> dict[str, Any]:
    return json.loads(archive_names.result_path(path).read_text(encoding="utf-8"))


def finished(inbox: Path) -> list[Path]:
    """Every file that reached processed/ or failed/ (with its result written)."""
    return [
        p
        for which in (workdirs.PROCESSED, workdirs.FAILED)
        for p in archived(inbox, which)
        if archive_names.result_path(p).exists()
    ]


class LogRecords:
    """Every loguru record while the block runs, for "no traceback" assertions."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._sink_id: int | None = None

    def _sink(self, message) -> None:
        record = message.record
        with self._lock:
            self.records.append(
                {
                    "level": record["level"].name,
                    "message": record["message"],
                    "exception": record["exception"],
                    "text": str(message),
                }
            )

    def __enter__(self) -> LogRecords:
        self._sink_id = logger.add(self._sink, level="DEBUG", format="{message}\n{exception}", catch=False)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._sink_id is not None:
            logger.remove(self._sink_id)

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.records)

    def problems(self) -> list[str]:
        """Errors and tracebacks: what must never appear for an expected situation."""
        return [
            r["text"]
            for r in self.snapshot()
            if r["exception"] is not None or r["level"] in ("ERROR", "CRITICAL") or "Traceback" in r["text"]
        ]


class LoopbackServer:
    """What ``write_config`` needs of an emulator, for a test's own plain-HTTP server on ``port``."""

    def __init__(self, port: int) -> None:
        self.port = port

    def copy_ca(self, destination: Path) -> str:
        return ""

    def import_url(self, route: str) -> str:
        return f"http://127.0.0.1:{self.port}/api/import/{route}"


def read_request(connection) -> bytes:
    """Read one request (with a Content-Length body) from a socket, in full; return its body."""
    request = b""
    while b"\r\n\r\n" not in request:
        request += connection.recv(65536)
    head, _, body = request.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += connection.recv(65536)
    return body
