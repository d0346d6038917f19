"""Fixtures shared by the test modules."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from dropbox_sync.emulator import Emulator
from tests.helpers import wait_until


@pytest.fixture(autouse=True)
def no_thread_leaks() -> Iterator[None]:
    """Fail a test that leaves behind a thread it started (fixtures included)."""
    before = set(threading.enumerate())
    yield

    def leaked() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t not in before and t.is_alive()]

    try:
        wait_until(lambda: not leaked(), timeout=5.0)
    except AssertionError:
        pytest.fail(f"threads leaked: {[t.name for t in leaked()]}")


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[Emulator]:
    """A started TLS emulator on 127.0.0.1, any free port, default account and groups."""
    emu = Emulator(tmp_path / "emulator").start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def emu(tmp_path: Path) -> Iterator[Emulator]:
    """A started emulator with the account tests/support.write_config uses (a module may override it)."""
    from tests.support import emulator_with_password

    emulator = emulator_with_password(tmp_path).start()
    try:
        yield emulator
    finally:
        emulator.stop()
