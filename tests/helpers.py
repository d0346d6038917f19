"""Small helpers shared by the tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.01) -> T:
    """Poll until predicate() is truthy and return its value; AssertionError after timeout."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()  # never set: its wait() is an interruptible pause
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {timeout} s: {predicate!r}")
        pause.wait(interval)
