"""Helpers for the Windows lane tests.

Imported only under a Windows Python (the directory's conftest.py keeps Linux
pytest away from this package), but kept to the standard library so that it
imports anywhere. Deliberately independent of the Linux tests' helpers: this
directory runs on its own interpreter with its own conftest.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

# Starting a Windows python.exe takes about a second under Wine and longer on a
# loaded CI machine; deadlines are generous because they only bound failures.
CHILD_START_TIMEOUT = 60.0
CHILD_EXIT_TIMEOUT = 30.0


def wait_until(
    predicate: Callable[[], T],
    timeout: float,
    interval: float = 0.02,
    message: str | None = None,
) -> T:
    """Poll ``predicate`` until it returns something truthy; return that value.

    Raises AssertionError once ``timeout`` seconds have passed. The short pause
    between polls is the polling interval, not the synchronisation: the
    deadline is what bounds the wait.
    """
    deadline = time.monotonic() + timeout
    pause = threading.Event()  # never set: its wait() is the polling interval
    while True:
        result = predicate()
        if result:
            return result
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(message or f"condition not met within {timeout} s")
        pause.wait(min(interval, remaining))


class Recorder:
    """Thread-safe list of observations that tests can wait on.

    Producers (watchdog handler threads) call ``add``; the test thread calls
    ``wait_for`` which sleeps on a condition variable until a matching item
    arrives or the deadline passes, so there is no polling and no fixed sleep.
    """

    def __init__(self) -> None:
        self._items: list[object] = []
        self._cond = threading.Condition()

    def add(self, item: object) -> None:
        with self._cond:
            self._items.append(item)
            self._cond.notify_all()

    def snapshot(self) -> list[object]:
        with self._cond:
            return list(self._items)

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def wait_for(
        self,
        match: Callable[[object], bool],
        timeout: float,
        what: str = "item",
        start: int = 0,
    ) -> object:
        """Return the first item, from index ``start`` on, that ``match`` accepts."""
        found: list[object] = []

        def seen() -> bool:
            found[:] = [item for item in self._items[start:] if match(item)]
            return bool(found)

        with self._cond:
            if not self._cond.wait_for(seen, timeout):
                raise AssertionError(f"no {what} within {timeout} s; recorded: {self._items!r}")
            return found[0]


# The child opens the file with Python's open(), which (through the CRT) shares
# read and write but not delete: exactly what an SIS exporter or Excel does to
# a file it is still writing. It prints one line once the handle is open and
# keeps it until its stdin gives it a line (or closes).
_HOLDER_CODE = r"""
import sys
handle = open(sys.argv[1], sys.argv[2])
sys.stdout.write("held\n")
sys.stdout.flush()
sys.stdin.readline()
handle.close()
sys.stdout.write("released\n")
sys.stdout.flush()
"""


class HeldFile:
    """A file held open by another Windows process (a child python.exe)."""

    _code = _HOLDER_CODE

    def __init__(self, path: Path, mode: str = "rb") -> None:
        self.path = Path(path)
        self.mode = mode
        self._proc: subprocess.Popen[str] | None = None
        self._stderr: str | None = None  # set once the child is reaped

    def _read_line(self, timeout: float) -> str:
        # readline() blocks; do it on a helper thread so a child that hangs
        # or dies cannot hang the test past the deadline.
        assert self._proc is not None and self._proc.stdout is not None
        line: list[str] = []
        reader = threading.Thread(
            target=lambda: line.append(self._proc.stdout.readline()),  # type: ignore[union-attr]
            name="held-file-reader",
            daemon=True,
        )
        reader.start()
        reader.join(timeout)
        if reader.is_alive():
            self._kill()
            reader.join(CHILD_EXIT_TIMEOUT)
            raise AssertionError(f"holder process said nothing within {timeout} s")
        return line[0].strip() if line else ""

    def start(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-c", self._code, os.fspath(self.path), self.mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        if self._read_line(CHILD_START_TIMEOUT) != "held":
            stderr = self._finish()
            raise AssertionError(f"holder process could not open {self.path}: {stderr}")

    def release(self) -> None:
        """Tell the child to close the file, and wait until it has."""
        if self._proc is None or self._stderr is not None:
            return
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write("release\n")
            self._proc.stdin.flush()
        except OSError:
            pass  # the child is gone already; _read_line sees EOF and we report it
        if self._read_line(CHILD_EXIT_TIMEOUT) != "released":
            stderr = self._finish()
            raise AssertionError(f"holder process did not release {self.path}: {stderr}")
        self._finish()

    def _kill(self) -> None:
        if self._proc is not None and self._stderr is None and self._proc.poll() is None:
            self._proc.kill()

    def _finish(self) -> str:
        """Reap the child (killing it if it will not exit); return its stderr."""
        if self._proc is None:
            return ""
        if self._stderr is None:
            try:
                _, stderr = self._proc.communicate(timeout=CHILD_EXIT_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                _, stderr = self._proc.communicate(timeout=CHILD_EXIT_TIMEOUT)
            self._stderr = stderr or ""
        return self._stderr


@contextlib.contextmanager
def held_open(path: Path, mode: str = "rb") -> Iterator[HeldFile]:
    """Keep ``path`` open in another process for the duration of the block.

    Yields the HeldFile so the block can ``release()`` it early; the child is
    always reaped on the way out.
    """
    held = HeldFile(path, mode)
    held.start()
    try:
        yield held
    finally:
        try:
            held.release()
        finally:
            held._kill()
            held._finish()


# The writer child: opens the file like the holder (no share-delete), then
# appends what each "write <hex>" line of its stdin carries, flushed to the
# OS at once, and answers "wrote"; "release" closes the file.
_WRITER_CODE = r"""
import sys
handle = open(sys.argv[1], sys.argv[2])
sys.stdout.write("held\n")
sys.stdout.flush()
for line in sys.stdin:
    command, _, argument = line.strip().partition(" ")
    if command != "write":
        break
    handle.write(bytes.fromhex(argument))
    handle.flush()
    sys.stdout.write("wrote\n")
    sys.stdout.flush()
handle.close()
sys.stdout.write("released\n")
sys.stdout.flush()
"""


class SlowWriter(HeldFile):
    """Another Windows process writing a file in pieces, holding it open throughout.

    What an SIS export job or a copy over a slow link does: the test decides
    when each piece arrives, so "while it is being written" is a state the
    test can wait in, not a race.
    """

    _code = _WRITER_CODE

    def __init__(self, path: Path, mode: str = "wb") -> None:
        super().__init__(path, mode)

    def write(self, data: bytes) -> None:
        """Append ``data`` in the child; returns once the child has written it."""
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write(f"write {data.hex()}\n")
        self._proc.stdin.flush()
        if self._read_line(CHILD_EXIT_TIMEOUT) != "wrote":
            stderr = self._finish()
            raise AssertionError(f"writer process could not write {self.path}: {stderr}")


@contextlib.contextmanager
def slow_writer(path: Path, mode: str = "wb") -> Iterator[SlowWriter]:
    """A SlowWriter for the block; ``release()`` closes the file (also on the way out)."""
    writer = SlowWriter(path, mode)
    writer.start()
    try:
        yield writer
    finally:
        try:
            writer.release()
        finally:
            writer._kill()
            writer._finish()
