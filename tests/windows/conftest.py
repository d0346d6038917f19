"""The Windows lane: tests that only mean something under a Windows Python.

They run through ``bash tests/windows/lane.sh`` (Windows CPython under Wine on
Linux CI) or ``python -m pytest tests/windows`` on a real Windows host. The
Linux ``pytest tests`` run loads this file too; there each test module is
reported as skipped without being imported (they need pywin32,
WindowsApiObserver, ...), also when a module is named on the command line.
"""

from __future__ import annotations

import sys
import threading
import time

import pytest

SKIP_REASON = "Windows lane only: run `bash tests/windows/lane.sh` (or pytest on Windows)"

if sys.platform != "win32":

    class _WindowsOnlyModule(pytest.Module):
        """Stands in for a test module without importing it."""

        def collect(self):
            pytest.skip(SKIP_REASON)

    def pytest_pycollect_makemodule(module_path, parent):
        # Called for every test module under this directory, including one
        # named explicitly on the command line (collect_ignore misses those).
        return _WindowsOnlyModule.from_parent(parent, path=module_path)

else:
    from winhelpers import wait_until
    from winpipeline import PASSWORD, USER

    _STEPS = pytest.StashKey[list]()

    def pytest_configure(config):
        config.stash[_STEPS] = []

    @pytest.fixture
    def lane_steps(request):
        """``step(text)`` records a line for the run's summary (see pytest_terminal_summary).

        For tests whose progress is the point, such as the real service's
        install, start, processing and stop: their steps appear at the end of
        the output with or without ``-s``, passed or failed.
        """
        steps = request.config.stash[_STEPS]
        started = time.monotonic()
        steps.append(("header", request.node.nodeid.rsplit("/", 1)[-1]))

        def step(text: str) -> None:
            for number, line in enumerate(str(text).splitlines() or [""]):
                prefix = f"[{time.monotonic() - started:5.1f}s] " if number == 0 else " " * 9
                steps.append(("line", prefix + line))

        return step

    def pytest_terminal_summary(terminalreporter, exitstatus, config):
        steps = config.stash.get(_STEPS, [])
        if not steps:
            return
        terminalreporter.write_sep("=", "Windows lane: steps of the real service")
        for kind, text in steps:
            if kind == "header":
                terminalreporter.write_line(text, bold=True)
            else:
                terminalreporter.write_line("  " + text)

    @pytest.fixture
    def emulator(tmp_path):
        """The product's Infiniti emulator, in this Windows process, over TLS on 127.0.0.1.

        It keeps a copy of every upload, so tests compare the bytes the
        server received with the bytes dropped.
        """
        from dropbox_sync.emulator import Emulator

        emu = Emulator(tmp_path / "emulator", accounts={USER: (PASSWORD, True)}, keep_uploads=True).start()
        try:
            yield emu
        finally:
            emu.stop()

    @pytest.fixture(autouse=True)
    def _no_thread_leaks():
        """Fail a test that leaves a thread running (DESIGN.md, style 9).

        Threads that are finishing get a short bounded grace period: a joined
        observer's helper threads can take a moment to be reaped.
        """
        before = set(threading.enumerate())
        yield
        try:
            wait_until(lambda: not (set(threading.enumerate()) - before), timeout=5)
        except AssertionError:
            leaked = sorted(t.name for t in set(threading.enumerate()) - before)
            pytest.fail(f"threads left running by the test: {leaked}")
