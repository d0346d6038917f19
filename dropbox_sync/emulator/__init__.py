"""An emulator of Infiniti's non-interactive import server (for demo, rehearsals and tests).

    with Emulator(tmp_path) as emu:
        httpx.post(emu.import_url("users"), files={"file": open("users.csv", "rb")},
                   auth=("autoimport", "demo-password"),
                   verify=ssl.create_default_context(cafile=emu.ca_file))

The names below are imported on first use (PEP 562): the main CLI imports
``dropbox_sync.emulator.cli`` to build its parser on every start, and importing
the server eagerly (http.server, trustme and cryptography) cost about 100 ms of
every ``dropbox-sync`` command's start-up (bench/bench_startup.py).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dropbox_sync.emulator.accounts import DEFAULT_ACCOUNTS
    from dropbox_sync.emulator.emulator import USER_GROUPS_PATH, USERS_PATH, Emulator
    from dropbox_sync.emulator.faults import FAULTS
    from dropbox_sync.emulator.importer import DEFAULT_LIBRARY_GROUPS, DEFAULT_SYSTEM_GROUPS
    from dropbox_sync.emulator.store import UploadRecord, UserRecord

_WHERE = {
    "DEFAULT_ACCOUNTS": "accounts",
    "DEFAULT_LIBRARY_GROUPS": "importer",
    "DEFAULT_SYSTEM_GROUPS": "importer",
    "FAULTS": "faults",
    "USERS_PATH": "emulator",
    "USER_GROUPS_PATH": "emulator",
    "Emulator": "emulator",
    "UploadRecord": "store",
    "UserRecord": "store",
}

# Spelled out (not sorted(_WHERE)) so linters see the names the TYPE_CHECKING imports export.
__all__ = [
    "DEFAULT_ACCOUNTS",
    "DEFAULT_LIBRARY_GROUPS",
    "DEFAULT_SYSTEM_GROUPS",
    "FAULTS",
    "USERS_PATH",
    "USER_GROUPS_PATH",
    "Emulator",
    "UploadRecord",
    "UserRecord",
]
assert sorted(__all__) == sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
