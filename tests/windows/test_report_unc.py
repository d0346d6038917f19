"""report.html for an inbox Windows reaches by a UNC path (\\\\server\\share\\...).

Office staff open the page from the share; the service writes it there. Under
Wine a UNC name \\\\SERVER\\SHARE is served from the prefix's
``dosdevices/unc/SERVER/SHARE`` folder, so the test makes one and runs the
product's real session (journal, report pages) with ``once`` against the
emulator; on a real Windows host it uses the administrative share
\\\\localhost\\C$ instead. What only a real SMB share can show (its locking,
a share going away) is in docs/windows-testing.md.
"""

from __future__ import annotations

import dataclasses
import ntpath
import os
import shutil
import threading
import urllib.parse
import uuid
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from winpipeline import PASSWORD, archived, csv_bytes, good_row, write_config

from dropbox_sync import config
from dropbox_sync.pipeline import archive_names, workdirs
from dropbox_sync.report import pagefile
from dropbox_sync.session import pipeline_session


@pytest.fixture
def unc_folder(tmp_path: Path) -> Iterator[str]:
    """A fresh folder on a UNC path, removed afterwards."""
    prefix = os.environ.get("WINEPREFIX")
    if prefix:
        share = f"lane{uuid.uuid4().hex[:8]}"
        local = Path("Z:" + prefix.replace("/", "\\")) / "dosdevices" / "unc" / "laneserver" / share
        local.mkdir(parents=True)
        try:
            yield f"\\\\laneserver\\{share}"
        finally:
            shutil.rmtree(local, ignore_errors=True)
        return
    drive, rest = ntpath.splitdrive(str(tmp_path))
    unc = f"\\\\localhost\\{drive[0]}${rest}"
    if not os.path.isdir(unc):
        pytest.skip(f"the administrative share {unc} is not reachable on this host")
    yield unc


class Page(HTMLParser):
    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.hrefs: list[str] = []
        self.scripts = 0
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.scripts += tag == "script"
        self.hrefs += [value for name, value in attrs if tag == "a" and name == "href" and value]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_the_page_is_written_into_an_inbox_on_a_unc_path(tmp_path: Path, unc_folder: str, emulator) -> None:
    inbox = Path(unc_folder) / "SIS export"
    config_path = write_config(tmp_path / "cfg", emulator, inbox=inbox)
    cfg = config.load(config_path)
    # Under Wine, config.load's resolve() follows the share to the drive path Wine serves it
    # from (Z:\...\dosdevices\unc\...); Windows keeps \\server\share. Put the UNC path back so
    # every step below works on it, as the service on Windows does.
    cfg = dataclasses.replace(cfg, inboxes=(dataclasses.replace(cfg.inboxes[0], path=inbox),))
    (inbox / "O'Brien & Söhne #1.csv").write_bytes(csv_bytes(good_row("ob1"), good_row("ob2"), bom=True))

    with pipeline_session(cfg) as pipeline:
        result = pipeline.once(threading.Event())

    assert not result.held and not result.failed
    (filed,) = archived(inbox, workdirs.PROCESSED)
    html = (inbox / "report.html").read_text(encoding="utf-8")
    page = Page(html)
    text = " ".join(" ".join(page.text).split())
    assert "O'Brien & Söhne #1.csv" in text and "Imported" in text and page.scripts == 0
    assert "Times are this computer's local time" in text
    assert PASSWORD not in html
    # Links are relative, so they open from \\server\share\... as from a drive letter.
    assert page.hrefs and all(not h.startswith(("/", "\\")) and ":" not in h for h in page.hrefs)
    targets = {inbox / urllib.parse.unquote(h) for h in page.hrefs}
    assert {filed, archive_names.result_path(filed)} <= targets and all(t.is_file() for t in targets)
    pages = [p.name for p in inbox.iterdir() if pagefile.is_page_file(p.name, "report.html")]
    assert pages == ["report.html"], "the temporary was renamed over the page"
