"""The one exception tree of dropbox-sync: every exception class it defines is here.

    DropboxSyncError                 base: every error we raise on purpose
    ├── ConfigError                  the config file is wrong (exit code 2)
    │   └── TemplateError            a column mapping is malformed (mapping.py;
    │                                config.py names the inbox and key)
    ├── UsageError                   the command line is wrong (exit code 2)
    ├── TransferError                an upload could not complete
    │   ├── HoldError                only a config fix helps: 401/403/404, TLS
    │   │                            verification failure; the inbox pauses
    │   └── TransientError           try again later: connection refused,
    │                                timeout, 5xx, 429, a reply that is not JSON
    ├── FileNotReady                 the file is held open or vanished; look again later
    ├── StateFileDamaged             a state file (notify.json, status.json) is not what we
    │   │                            wrote; it is set aside and started afresh (statefiles.py)
    │   └── JournalDamaged           SQLite's quick_check found damage it did not raise on
    │                                itself; also a sqlite3.DatabaseError, so the journal's
    │                                one damage test (journal.is_damage) sees it (journal.py)
    ├── StateUnavailable             the journal cannot be opened at all (a folder in its
    │                                place, no permission, a disk not there): a start
    │                                failure; a reading command goes on without history
    ├── TranscodeError               the file is not valid in its source_encoding; the
    │                                file goes to failed/ (prepare.py)
    ├── MailError                    the SMTP server did not take the messages; the
    │                                notifier keeps them and tries later (mail.py)
    ├── UnsafeFolder                 a work folder (sending/, processed/, failed/, held/)
    │                                is a link, not a folder, or not ours; the inbox holds
    ├── ServiceError                 an OS service action failed (service/; exit code 1)
    │   ├── Win32Error               a Windows API call failed (service/win32_boundary.py)
    │   └── ServiceFailed            raised out of SvcRun so the SCM records an error
    │                                exit and its recovery actions restart us
    └── EmulatorError                the Infiniti emulator's own flow (emulator/); never
        ├── BadUpload                leaves the emulator: each becomes the HTTP reply
        ├── ClientGone               the real server gives in that case
        ├── ImportAborted
        └── WholeFileFailure

Third-party exceptions (httpx, ssl, smtplib, OSError) are translated where they
are caught, with ``raise ... from exc``, so the layers above see only these. The
messages never contain secrets: they are built from redacted values (see
``redact.py``). ``cli.py`` is the only place that turns them into exit codes.
"""

from __future__ import annotations

import sqlite3


class DropboxSyncError(Exception):
    """Base of every error dropbox-sync raises on purpose."""


class ConfigError(DropboxSyncError):
    """The configuration is invalid; the message names the file and key."""


class TemplateError(ConfigError):
    """A ``columns``/``values`` entry is malformed; ``key`` is its sub-key (``columns.username``)."""

    def __init__(self, message: str, *, key: str = "") -> None:
        super().__init__(message)
        self.key = key


class UsageError(DropboxSyncError):
    """The command line asks for something impossible (e.g. a missing file)."""


class TransferError(DropboxSyncError):
    """An upload did not produce a usable reply from the server."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class HoldError(TransferError):
    """Retrying will not help until the configuration (or server) is fixed."""


class TransientError(TransferError):
    """A passing fault: the same upload may succeed later."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        read_timeout: bool = False,
        foreign: bool = False,
    ) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after
        self.read_timeout = read_timeout
        self.foreign = foreign  # the server took the file and answered unreadably: counts towards a hold


class FileNotReady(DropboxSyncError):
    """The file cannot be taken now (held open by its writer, or gone)."""


class StateFileDamaged(DropboxSyncError):
    """A state file is unreadable or of the wrong shape; the message names it and why."""


class JournalDamaged(StateFileDamaged, sqlite3.DatabaseError):
    """quick_check found damage SQLite did not raise on by itself."""


class StateUnavailable(DropboxSyncError):
    """The journal cannot be opened at all; unlike damage, nothing can be set aside (journal.py)."""


class TranscodeError(DropboxSyncError):
    """The file is not valid in the encoding the config names."""


class MailError(DropboxSyncError):
    """The messages could not be handed to the SMTP server; try again later."""


class UnsafeFolder(DropboxSyncError):
    """A work folder cannot be trusted (workdirs.py); nothing goes through it."""


class ServiceError(DropboxSyncError):
    """An OS service action failed; the message says why and what to do."""


class Win32Error(ServiceError):
    """A Windows API call failed; ``winerror`` is the Windows error number."""

    def __init__(self, winerror: int, function: str, message: str) -> None:
        super().__init__(f"{function}: {message.strip()} (Windows error {winerror})")
        self.winerror = winerror
        self.function = function


class ServiceFailed(ServiceError):
    """Raised out of SvcRun so pythonservice.exe reports STOPPED with an error code."""


class EmulatorError(DropboxSyncError):
    """The emulator's own control flow; it never leaves the emulator. ``summary``, when
    there is one, is the wording of the reply the real server gives in that case."""

    def __init__(self, summary: str = "") -> None:
        super().__init__(summary)
        self.summary = summary


class BadUpload(EmulatorError):
    """The request is not an upload the server accepts."""


class ClientGone(EmulatorError):
    """The body ended before its declared length: nobody is left to answer."""


class ImportAborted(EmulatorError):
    """The emulator is stopping; the import is rolled back."""


class WholeFileFailure(EmulatorError):
    """The whole file is refused (not UTF-8, not CSV, columns missing)."""
