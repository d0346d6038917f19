"""What preparing a file yields (``prepare.py``): an ``Upload`` fit to send, or a ``Rejection``
saying why it must not be; and the removal of the temporaries an upload was built in."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dropbox_sync.config import Route
from dropbox_sync.pipeline import archive_names, workfiles
from dropbox_sync.pipeline.mapper import MapResult, RowMap
from dropbox_sync.pipeline.result import CHANGE_GUARD, SHRINK_GUARD
from dropbox_sync.roster.changeset import Changes, SentRows


@dataclass(frozen=True)
class Upload:
    """A file fit to send: where to, which bytes, and what we know of them."""

    route: Route
    original: str  # the name as dropped (for people and the multipart file name)
    path: Path  # the bytes to upload: the file itself, or a temporary made from it
    size: int  # of the bytes to upload
    rows: int  # data lines after the header (of the whole file, whatever delta sends)
    sha256: str | None = None  # None: the upload hashes the bytes as they go out
    transcoded_from: str | None = None
    approved: bool = False  # a person let it past the shrink guard
    warnings: tuple[str, ...] = ()
    temporaries: tuple[Path, ...] = ()  # ours to delete once sent (discard)
    mapped: MapResult | None = None  # set when [inbox.columns] built ``path`` from the export
    changes: Changes | None = None  # against the roster memory (None: not a users file)
    compare_later: bool = False  # stage 6 left to the caller (``compare``): see prepare's compare_later

    @property
    def rewritten(self) -> bool:
        """``path`` is a CSV we built (mapped, or only the rows to send), not the file itself."""
        return self.mapped is not None or (self.changes is not None and self.changes.rewritten)

    @property
    def nothing_to_send(self) -> bool:
        """Delta found no change to send: the file is filed without an upload."""
        return self.changes is not None and self.changes.nothing_to_send

    @property
    def row_map(self) -> RowMap | SentRows:
        """Server row number -> the export's row number (and spreadsheet line): the same
        numbers unless a mapping left rows out (blank rows, empty usernames) or only the
        changes are sent."""
        if self.changes is not None and self.changes.sent_map is not None:
            return self.changes.sent_map
        return self.mapped.row_map if self.mapped is not None else RowMap()

    @property
    def username_column(self) -> int | None:
        """Where the username is in the CSV sent (None: unknown, not a users file)."""
        if self.changes is not None:
            return self.changes.username_column
        return self.route.mapping.username_index if self.route.mapping is not None else None

    def keep_sent(self, claimed: Path) -> Path | None:
        """Move an upload we built beside the claimed export as ``<archived>.sent.csv`` (it
        is archived with it); None when the export itself was uploaded."""
        if not self.rewritten:
            return None
        target = archive_names.sent_path(claimed)
        workfiles.rename_claimed(self.path, target.name)
        return target

    @property
    def facts(self) -> dict[str, Any]:
        """Our facts for the result and the journal (``result.build``)."""
        facts: dict[str, Any] = {
            "endpoint": self.route.safe_url,
            "sha256": self.sha256,
            "bytes": self.size,
            "rows": self.rows,
        }
        if self.transcoded_from:
            facts["transcoded_from"] = self.transcoded_from
        if self.approved:
            facts["approved"] = True
        if self.warnings:
            facts["warnings"] = list(self.warnings)
        if self.mapped is not None:
            facts["mapping"] = self.mapped.facts()
        if self.changes is not None:
            facts["changes"] = self.changes.facts()
        return facts

    def discard(self) -> None:
        remove_temporaries(self.temporaries)


@dataclass(frozen=True)
class Rejection:
    """A file that must not be sent: why (one sentence for people), and what we know."""

    summary: str
    stage: str  # result.PREFLIGHT (goes to failed/), SHRINK_GUARD or CHANGE_GUARD (to held/)
    facts: dict[str, Any]

    @property
    def held(self) -> bool:
        """Waits in held/ for a person's approval, rather than failed/."""
        return self.stage in (SHRINK_GUARD, CHANGE_GUARD)


def remove_temporaries(temporaries: Iterable[Path]) -> None:
    """Remove what an upload was built in (through its folder's handle: workfiles.discard)."""
    for temporary in temporaries:
        workfiles.discard(temporary)
