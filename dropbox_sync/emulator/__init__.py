"""An emulator of Infiniti's non-interactive import server (for demo, rehearsals and tests).

    with Emulator(tmp_path) as emu:
        httpx.post(emu.import_url("users"), files={"file": open("users.csv", "rb")},
                   auth=("autoimport", "demo-password"),
                   verify=ssl.create_default_context(cafile=emu.ca_file))
"""

from dropbox_sync.emulator.accounts import DEFAULT_ACCOUNTS
from dropbox_sync.emulator.emulator import USER_GROUPS_PATH, USERS_PATH, Emulator
from dropbox_sync.emulator.faults import FAULTS
from dropbox_sync.emulator.importer import DEFAULT_LIBRARY_GROUPS, DEFAULT_SYSTEM_GROUPS
from dropbox_sync.emulator.store import UploadRecord, UserRecord

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
