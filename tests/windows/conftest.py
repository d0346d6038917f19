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
