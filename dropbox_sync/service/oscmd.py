"""The few OS side effects the Unix backends share: run a tool, write a file whole.

Kept in one small module so tests can patch ``run_tool`` and see every
systemctl, launchctl, useradd and setfacl call the backends make.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dropbox_sync.errors import ServiceError


@dataclass(frozen=True)
class ToolResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def explain(self) -> str:
        detail = (self.stderr or self.stdout).strip()
        return f"'{' '.join(self.argv)}' failed (exit {self.returncode})" + (f": {detail}" if detail else "")


def run_tool(argv: Sequence[str], *, timeout: float = 120.0) -> ToolResult:
    """Run an OS tool and capture its output; ServiceError if it cannot be run at all."""
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise ServiceError(f"{argv[0]} not found: is this the right platform for this action?") from None
    except subprocess.TimeoutExpired:
        raise ServiceError(f"'{' '.join(argv)}' did not finish within {timeout:g} s") from None
    return ToolResult(tuple(argv), done.returncode, done.stdout, done.stderr)


def write_atomically(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write to a temporary name beside ``path``, then rename: never a half-written unit."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def staged(path: Path, destdir: Path | None) -> Path:
    """Where a file that will live at ``path`` is written when staging into ``destdir``."""
    if destdir is None:
        return path
    return destdir / path.relative_to(path.anchor)


def unstaged(path: Path, destdir: Path | None) -> Path:
    """The final location of a staged ``path`` (the inverse of ``staged``)."""
    if destdir is None:
        return path
    try:
        return Path(path.anchor) / path.relative_to(destdir)
    except ValueError:
        return path
