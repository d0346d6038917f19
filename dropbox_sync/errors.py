"""The one exception tree of dropbox-sync.

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
    │                                wrote; it is set aside and started afresh (statefiles.py)
    └── ServiceError                 an OS service action failed (service/__init__.py;
                                     exit code 1)

Third-party exceptions (httpx, ssl, OSError) are translated where they are
caught, with ``raise ... from exc``, so the layers above see only these. The
messages never contain secrets: they are built from redacted values (see
``redact.py``). ``cli.py`` is the only place that turns them into exit codes.
"""

from __future__ import annotations


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
    ) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after
        self.read_timeout = read_timeout


class FileNotReady(DropboxSyncError):
    """The file cannot be taken now (held open by its writer, or gone)."""


class StateFileDamaged(DropboxSyncError):
    """A state file is unreadable or of the wrong shape; the message names it and why."""
