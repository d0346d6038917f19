"""The annotated example config that ``init`` writes, fitted to the machine it runs on.

One example file (``config.example.toml``, written for Windows, the first
platform); on Linux and macOS its Windows paths become the local conventions,
so the file a technician opens already names folders that can exist there.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

EXAMPLE = Path(__file__).with_name("config.example.toml")

# The note on backslashes, which only Windows paths need.
_WINDOWS_NOTE = re.compile(
    r"(Relative paths are relative to this file\.) Windows paths:.*?\n# (Check your changes with:)", re.DOTALL
)
_COMMON = {
    "PEM file of a private CA; empty = Windows/OS trust store": "PEM file of a private CA; empty = the OS trust store",
}
_LOCAL = {
    "linux": {
        "machine-wide default (Windows: C:\\ProgramData\\dropbox-sync)": (
            "machine-wide default (/var/lib/dropbox-sync, logs in /var/log/dropbox-sync)"
        ),
        "D:/SIS/export": "/srv/sis/export",
        "D:/SIS/groups": "/srv/sis/groups",
        '"C:/ProgramData/dropbox-sync/password.txt"': '"/etc/dropbox-sync/infiniti.secret"',
    },
    "darwin": {
        "machine-wide default (Windows: C:\\ProgramData\\dropbox-sync)": (
            "machine-wide default (/Library/Application Support/dropbox-sync, logs in /Library/Logs/dropbox-sync)"
        ),
        "D:/SIS/export": "/Users/Shared/SIS/export",
        "D:/SIS/groups": "/Users/Shared/SIS/groups",
        '"C:/ProgramData/dropbox-sync/password.txt"': '"/Library/Application Support/dropbox-sync/infiniti.secret"',
    },
}


def example_text(platform: str = sys.platform) -> str:
    """The example for ``platform`` (a ``sys.platform`` value)."""
    text = EXAMPLE.read_text(encoding="utf-8")
    if platform == "win32":
        return text
    local = _LOCAL["darwin" if platform == "darwin" else "linux"]  # other Unixes: Linux's conventions
    text = _WINDOWS_NOTE.sub(r"\1 \2", text)
    for old, new in {**_COMMON, **local}.items():
        text = text.replace(old, new)
    return text


def next_step(config: Path | None, platform: str = sys.platform) -> str:
    """The closing hint of ``init``, with the ``--config`` it was given (the service and
    every later command need it too)."""
    where = ""
    if config is not None:
        shown = str(config)
        if platform == "win32":
            where = f' --config "{shown}"' if " " in shown else f" --config {shown}"
        else:
            where = f" --config {shlex.quote(shown)}"
    return f"edit the [[inbox]] path, url and username, set the password, then run: dropbox-sync{where} check --online"
