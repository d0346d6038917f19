"""Every sentence the emulator says to a client, in one place.

The vendor documents only a few replies verbatim (the summary line, the
"Unauthorised" reply and the emailAddress row failure); those are copied
exactly. The rest are written in the same voice so a client that shows them to
office staff reads consistently. Tests and other modules import these instead
of repeating strings.
"""

from __future__ import annotations

from collections.abc import Iterable

# Whole-request replies.
UNAUTHORISED = "Unauthorised. Check credentials."
FORBIDDEN = "Forbidden. The user does not have system administration privileges."
NOT_FOUND = "Not found."
METHOD_NOT_ALLOWED = "Method not allowed. Use POST."
NO_FILE = "No file was uploaded."
NOT_MULTIPART = "No file was uploaded. The request must be multipart/form-data."
MALFORMED_MULTIPART = "No file was uploaded. The multipart/form-data body could not be read."
NOT_UTF8 = "The file could not be read. It is not UTF-8 encoded text."
SERVER_ERROR = "An unexpected error occurred."

# Row outcomes.
USER_CREATED = "User Created"
USER_UPDATED = "User Updated"
BAD_EMAIL = "Field (emailAddress) is not a well-formed email address"
BAD_ENABLED = "Field (enabled) must be TRUE or FALSE"

REQUIRED_COLUMNS = ("username", "library-group", "system-group")


def missing_columns(names: Iterable[str]) -> str:
    return f"Missing required column(s): {', '.join(names)}."


def not_csv(reason: str) -> str:
    return f"The file could not be read as CSV: {reason}."


def field_required(field: str) -> str:
    return f"Field ({field}) is required"


def library_group_missing(name: str) -> str:
    return f"Library group ({name}) does not exist"


def system_group_missing(name: str) -> str:
    return f"System group ({name}) does not exist"


def row_failure(problem: str) -> str:
    """The vendor states the problem twice and ends with a space; keep both quirks."""
    return f"{problem}. User failed to import: {problem}. "


def _users(n: int) -> str:
    return f"{n} user" if n == 1 else f"{n} users"


def summary(processed: int, created: int, updated: int, failed: int) -> str:
    return (
        f"{_users(processed)} processed. {_users(created)} created. {_users(updated)} updated. {_users(failed)} failed."
    )
