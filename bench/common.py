"""Shared machinery for the benchmarks in bench/: children, emulators, configs, tables.

Every benchmark runs the product as a real subprocess against an emulator in
its own process (so the client under test and the server never share a GIL),
on 127.0.0.1 only. Everything a benchmark starts is registered here and killed,
and every temp folder removed, on the way out, also when the hard deadline
fires (``hard_deadline``) or an exception escapes.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
PYTHON = sys.executable
VENV_BIN = Path(PYTHON).parent
DROPBOX_SYNC = str(VENV_BIN / "dropbox-sync") if (VENV_BIN / "dropbox-sync").exists() else None
USER = "autoimport"
PASSWORD = "bench-Pa55word-91c2"
HEADER = "username,firstName,lastName,library-group,system-group,emailAddress\n"
CLK_TCK = os.sysconf("SC_CLK_TCK")

_children: list[subprocess.Popen] = []
_temp_dirs: list[Path] = []
_cleanup_lock = threading.Lock()


def product_cmd(*args: str) -> list[str]:
    """The console script if installed, else ``python -m dropbox_sync``."""
    if DROPBOX_SYNC:
        return [DROPBOX_SYNC, *args]
    return [PYTHON, "-m", "dropbox_sync", *args]


# -- children and cleanup ----------------------------------------------------------


_pycache: Path | None = None


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for product children: bytecode cached as after a real install.

    ``pip install`` compiles .pyc files, so an installed product never compiles
    its modules at start-up; a dev shell with PYTHONDONTWRITEBYTECODE=1 and an
    editable install compiles ours on every start. Children get a run-scoped
    PYTHONPYCACHEPREFIX (warmed by ``warm_bytecode``) so they behave like the
    installed product without writing into the source tree.
    """
    global _pycache
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if _pycache is None:
        shared = os.environ.get("DSBENCH_PYCACHE")
        _pycache = Path(shared) if shared else temp_dir("pycache")
    env["PYTHONPYCACHEPREFIX"] = str(_pycache)
    env.update(extra or {})
    return env


def warm_bytecode() -> None:
    """Import everything the product and the ceiling client use once, filling the cache."""
    code = (
        "import dropbox_sync.cli, dropbox_sync.pipeline.runner, dropbox_sync.commands.check, "
        "dropbox_sync.commands.demo, "
        "dropbox_sync.emulator, dropbox_sync.emulator.cli, httpx, watchdog.observers, "
        "watchdog.observers.polling, trustme, truststore, python_multipart, sqlite3, json, csv"
    )
    subprocess.run([PYTHON, "-c", code], env=child_env(), check=True, stdin=subprocess.DEVNULL)
    subprocess.run(
        product_cmd("--help"), env=child_env(), check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
    )


def spawn(cmd: Sequence[str], **kwargs: Any) -> subprocess.Popen:
    """Start a child in its own process group, remembered for cleanup."""
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    if kwargs.get("env") is None:
        kwargs["env"] = child_env()
    proc = subprocess.Popen(list(cmd), start_new_session=True, **kwargs)
    _children.append(proc)
    return proc


def stop_child(proc: subprocess.Popen, *, grace: float = 10.0) -> int | None:
    """SIGTERM, then SIGKILL after ``grace``; the child's whole group (it is its own leader)."""
    if proc.returncode is None and proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    else:
        # The leader is gone; make sure nothing it started lingers in its group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ValueError):
        _children.remove(proc)
    return proc.returncode


def temp_dir(prefix: str, base: str | None = None) -> Path:
    path = Path(tempfile.mkdtemp(prefix=f"dsbench-{prefix}-", dir=base))
    _temp_dirs.append(path)
    return path


def cleanup() -> None:
    with _cleanup_lock:
        for proc in list(_children):
            with contextlib.suppress(Exception):
                stop_child(proc, grace=5)
        for path in list(_temp_dirs):
            shutil.rmtree(path, ignore_errors=True)
            with contextlib.suppress(ValueError):
                _temp_dirs.remove(path)


atexit.register(cleanup)


def hard_deadline(seconds: float, name: str) -> None:
    """After ``seconds`` kill every child, remove temp folders and exit 3, whatever is running."""

    def fire() -> None:
        print(
            f"\n{name}: HARD DEADLINE of {seconds:.0f} s reached; killing children and exiting",
            file=sys.stderr,
            flush=True,
        )
        cleanup()
        os._exit(3)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()

    def on_signal(signum: int, _frame: object) -> None:
        cleanup()
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)


@dataclass
class Finished:
    returncode: int
    seconds: float  # wall time from just before fork to reaping
    maxrss_kb: int  # the child's own peak RSS (wait4's rusage)
    cpu_seconds: float  # user + system of the child
    started_epoch: float = 0.0  # time.time() just before the fork

    @property
    def ended_epoch(self) -> float:
        return self.started_epoch + self.seconds


def run_measured(
    cmd: Sequence[str],
    *,
    timeout: float,
    env: dict[str, str] | None = None,
    stdout: Any = subprocess.DEVNULL,
    stderr: Any = subprocess.DEVNULL,
    cwd: str | Path | None = None,
) -> Finished:
    """Run a child to its end; wall time, peak RSS and CPU from the kernel (wait4)."""
    epoch = time.time()
    started = time.perf_counter()
    proc = spawn(cmd, env=env, stdout=stdout, stderr=stderr, cwd=cwd)
    killer = threading.Timer(timeout, lambda: _kill_group(proc.pid))
    killer.daemon = True
    killer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        killer.cancel()
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    with contextlib.suppress(ValueError):
        _children.remove(proc)
    return Finished(proc.returncode, seconds, usage.ru_maxrss, usage.ru_utime + usage.ru_stime, epoch)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def wait_for(condition: Callable[[], Any], timeout: float, interval: float = 0.02) -> Any:
    """Poll until ``condition()`` is truthy; return it, or None at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


# -- /proc ----------------------------------------------------------------------------


def cpu_ticks(pid: int) -> int:
    """utime + stime of a live process (all its threads), in clock ticks."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)


def peak_rss_kb(pid: int) -> int:
    """VmHWM: the highest resident set size the live process has had."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


# -- the emulator, in its own process -------------------------------------------------


@dataclass
class EmulatorProcess:
    state_dir: Path
    proc: subprocess.Popen
    base_url: str
    ca_file: Path

    @property
    def users_url(self) -> str:
        return f"{self.base_url}/api/import/users"

    def _db(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.state_dir / 'emulator.sqlite3'}?mode=ro", uri=True, timeout=10)

    def upload_count(self) -> int:
        with contextlib.closing(self._db()) as db:
            return db.execute("SELECT count(*) FROM uploads").fetchone()[0]

    def uploads(self) -> list[dict[str, Any]]:
        with contextlib.closing(self._db()) as db:
            db.row_factory = sqlite3.Row
            return [dict(r) for r in db.execute("SELECT * FROM uploads ORDER BY seq")]

    def user_count(self) -> int:
        with contextlib.closing(self._db()) as db:
            return db.execute("SELECT count(*) FROM users").fetchone()[0]

    def stop(self) -> None:
        stop_child(self.proc)


_emulator_root: Path | None = None


def emulator_root() -> Path:
    """Where emulators keep their state: tmpfs when there is one (DSBENCH_EMULATOR_DIR to choose).

    The emulator stands in for a remote server. On the client's own disk its
    per-request temp file and SQLite writes would queue behind the client's
    fsyncs in the same ext4 journal (and the other way round), a coupling a real
    server on another machine does not have.
    """
    global _emulator_root
    if _emulator_root is None:
        wanted = os.environ.get("DSBENCH_EMULATOR_DIR", "/dev/shm")
        _emulator_root = temp_dir("emulators", wanted if os.path.isdir(wanted) else None)
    return _emulator_root


def start_emulator(base: Path, name: str = "emulator", *, extra: Sequence[str] = ()) -> EmulatorProcess:
    """``dropbox-sync emulator --port 0`` in a fresh state dir; waits for its banner."""
    base.mkdir(parents=True, exist_ok=True)
    state_dir = Path(tempfile.mkdtemp(prefix=f"{base.name}-{name}-", dir=emulator_root()))
    out_path = base / f"{name}.out"
    with open(out_path, "wb") as out:
        proc = spawn(
            product_cmd(
                "emulator",
                "--port",
                "0",
                "--state-dir",
                str(state_dir),
                "--account",
                f"{USER}:{PASSWORD}:admin",
                *extra,
            ),
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    def banner() -> tuple[str, str] | None:
        text = out_path.read_text(errors="replace")
        url = re.search(r"listening on (https?://\S+)", text)
        ca = re.search(r"CA certificate: (\S+)", text)
        if proc.poll() is not None:
            raise RuntimeError(f"emulator exited early:\n{text}")
        return (url.group(1), ca.group(1)) if url and ca else None

    found = wait_for(banner, 30)
    if not found:
        stop_child(proc)
        raise RuntimeError("emulator did not print its banner in 30 s")
    return EmulatorProcess(state_dir, proc, found[0], Path(found[1]))


# -- files and configs ------------------------------------------------------------------


def csv_text(file_no: int, rows: int = 20, tag: str = "u") -> str:
    """A valid import CSV whose usernames are unique per file (so every row is a 'created')."""
    lines = [HEADER]
    for row in range(rows):
        user = f"{tag}{file_no:05d}r{row:02d}"
        lines.append(f"{user},First{row},Last{file_no},Year 7,Student,{user}@school.example\n")
    return "".join(lines)


def write_csvs(folder: Path, count: int, rows: int = 20, tag: str = "u") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number in range(count):
        path = folder / f"{tag}{number:05d}.csv"
        path.write_text(csv_text(number, rows, tag), encoding="utf-8")
        paths.append(path)
    return paths


def fresh_inbox(base: Path, src: Path) -> Path:
    """A copy of the source files in a new inbox, on disk before the clock starts (so no
    variant pays for writing back another's copies)."""
    inbox = base / "inbox"
    inbox.mkdir()
    for path in sorted(src.iterdir()):
        shutil.copy2(path, inbox / path.name)
    os.sync()
    return inbox


def toml_value(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else json.dumps(value)


def write_config(path: Path, emulator: EmulatorProcess, inboxes: Sequence[Path], **overrides: Any) -> Path:
    """A product config with one [[inbox]] per folder, all pointing at ``emulator``."""
    lines = [
        f"state_dir = {toml_value(str(path.parent / 'state'))}",
        f"log_dir = {toml_value(str(path.parent / 'logs'))}",
    ]
    for folder in inboxes:
        folder.mkdir(parents=True, exist_ok=True)
        values = {
            "name": folder.name,
            "path": str(folder),
            "url": emulator.users_url,
            "username": USER,
            "password": PASSWORD,
            "ca_bundle": str(emulator.ca_file),
            "settle_seconds": 0.1,
            "rescan_seconds": 60,
            "once_retry_seconds": 10,
            **overrides,
        }
        lines.append("[[inbox]]")
        lines += [f"{key} = {toml_value(value)}" for key, value in values.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def archived(inbox: Path, which: str) -> int:
    """Files (not results) in INBOX/processed or INBOX/failed."""
    try:
        with os.scandir(inbox / which) as entries:
            return sum(1 for e in entries if not e.name.endswith(".result.json") and not e.name.startswith("."))
    except FileNotFoundError:
        return 0


# -- reporting ------------------------------------------------------------------------------


@dataclass
class Row:
    figure: str
    goal: str
    measured: str
    verdict: str  # PASS, MISS or INFO


@dataclass
class Report:
    name: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    def add(self, figure: str, goal: str, measured: str, ok: bool | None) -> None:
        verdict = "INFO" if ok is None else ("PASS" if ok else "MISS")
        self.rows.append(Row(figure, goal, measured, verdict))

    def note(self, text: str) -> None:
        self.notes.append(text)

    def print(self) -> None:
        headers = ("figure", "goal", "measured", "verdict")
        table = [headers, *[(r.figure, r.goal, r.measured, r.verdict) for r in self.rows]]
        widths = [max(len(row[i]) for row in table) for i in range(4)]
        line = "+-" + "-+-".join("-" * w for w in widths) + "-+"
        print(f"\n{self.name}  ({time.perf_counter() - self.started:.1f} s)")
        print(line)
        for number, row in enumerate(table):
            print("| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) + " |")
            if number == 0:
                print(line)
        print(line)
        for text in self.notes:
            print(f"  note: {text}")
        sys.stdout.flush()

    def save(self) -> None:
        """Append to $DSBENCH_RESULTS (JSON lines) when run_all asks for it."""
        target = os.environ.get("DSBENCH_RESULTS")
        if not target:
            return
        record = {
            "name": self.name,
            "seconds": round(time.perf_counter() - self.started, 1),
            "rows": [r.__dict__ for r in self.rows],
            "notes": self.notes,
        }
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def exit_code(self) -> int:
        return 1 if any(r.verdict == "MISS" for r in self.rows) else 0


def finish(report: Report) -> int:
    load = os.getloadavg()
    report.note(f"load average at end {load[0]:.2f}")
    report.print()
    report.save()
    return report.exit_code()


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def fmt_s(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


@contextlib.contextmanager
def bench(name: str, deadline: float, base: str | None = None) -> Iterator[tuple[Report, Path]]:
    """A report and a temp folder; hard deadline armed; everything cleaned up after."""
    hard_deadline(deadline, name)
    work = temp_dir(name.split()[0].lower(), base)
    report = Report(name)
    warm_bytecode()
    load = os.getloadavg()
    report.note(f"load average at start {load[0]:.2f} (2 cores: other work on the machine skews figures)")
    try:
        yield report, work
    finally:
        cleanup()


# -- the product's `run` mode ---------------------------------------------------------------


@dataclass
class RunningProduct:
    proc: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, grace: float = 30.0) -> int | None:
        return stop_child(self.proc, grace=grace)


def start_run(config: Path, log_path: Path, inboxes: int, *, timeout: float = 60.0) -> RunningProduct:
    """``dropbox-sync --config X run``; returns once every inbox logs that it is watched."""
    with open(log_path, "wb") as out:
        proc = spawn(product_cmd("--config", str(config), "run"), stdout=out, stderr=subprocess.STDOUT)
    running = RunningProduct(proc, log_path)

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"dropbox-sync run exited with {proc.returncode}:\n{running.log()[-3000:]}")
        return running.log().count("watching ") >= inboxes

    if not wait_for(ready, timeout, 0.05):
        running.stop()
        raise RuntimeError(f"dropbox-sync run did not report {inboxes} watched inbox(es) in {timeout:.0f} s")
    return running


def iso_to_epoch(text: str) -> float:
    """The emulator's received_at (ISO 8601 with offset, ms) as a Unix time."""
    from datetime import datetime

    return datetime.fromisoformat(text).timestamp()
