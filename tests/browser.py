"""Headless Debian chromium, for tests that must see a page as a person's browser does."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from typing import ClassVar

import pytest

CHROMIUM = "/usr/bin/chromium"
BROWSER_TIMEOUT = 90  # seconds for one headless run on a loaded 2-core machine
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium() -> str:
    """The browser's path; skips outside CI when it is not installed (CI installs it: .ci/run)."""
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is missing: .ci/run installs the chromium package")
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")


def _run(page: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    try:
        return subprocess.run(
            [chromium(), *FLAGS, f"--user-data-dir={profile}", *extra, page.resolve().as_uri()],
            capture_output=True,
            text=True,
            timeout=BROWSER_TIMEOUT,
            stdin=subprocess.DEVNULL,
            check=True,
        )
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def dump_dom(page: Path) -> str:
    """The DOM after the page has loaded (whatever a script would have changed, changed)."""
    return _run(page, "--dump-dom").stdout


def screenshot(page: Path, target: Path, *, width: int = 1100, height: int = 1300) -> None:
    _run(page, f"--screenshot={target.resolve()}", f"--window-size={width},{height}", "--hide-scrollbars")


_BREAK = "\x00"  # a line break in the text; the page's own newlines are just white space


class Dom(HTMLParser):
    """What a person sees of a DOM (its text), and the elements and links in it."""

    SILENT: ClassVar[set[str]] = {"style", "script", "title", "head"}

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self._text: list[str] = []
        self._silent = 0
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag in self.SILENT:
            self._silent += 1
        elif tag in ("p", "tr", "br", "h1", "h2", "h3", "li", "div", "table"):
            self._text.append(_BREAK)
        elif tag in ("td", "th"):
            self._text.append(" | ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SILENT:
            self._silent = max(0, self._silent - 1)

    def handle_data(self, data: str) -> None:
        if not self._silent:
            self._text.append(data)

    @property
    def text(self) -> str:
        """Block elements on lines of their own, cells separated by " | ", white space folded."""
        lines = (" ".join(line.split()) for line in "".join(self._text).split(_BREAK))
        return "\n".join(line for line in lines if line)

    def all(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.tags if name == tag]

    def links(self) -> list[str]:
        return [a["href"] for a in self.all("a") if a.get("href")]
