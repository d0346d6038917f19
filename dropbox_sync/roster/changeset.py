"""The data of one comparison with the roster memory: what a file changes, and which rows were sent.

``changes.plan`` fills a ``Changes`` in its one pass over the file; the preparation step,
the shrink guard, the result (``facts``), the log and ``dropbox-sync diff`` read it.
``SentRows`` traces each row of a rewritten upload back to the export's row, since people
fix the export, not what we sent.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from typing import Any

from dropbox_sync.config.policy import RosterPolicy

LISTED = 200  # users listed per kind in a result; the counts are always complete


class SentRows:
    """Server row number -> export row (and spreadsheet line) when only some rows are sent;
    the same interface as ``mapper.RowMap``. A leaver's row has no export row (None)."""

    def __init__(self, export_rows: array, header_line: int) -> None:
        self._rows = export_rows  # one machine word per row sent; 0 = a leaver
        self.header_line = header_line

    def export_row(self, sent_row: int) -> int | None:
        if 1 <= sent_row <= len(self._rows) and self._rows[sent_row - 1]:
            return self._rows[sent_row - 1]
        return None

    def line(self, sent_row: int) -> int | None:
        row = self.export_row(sent_row)
        return None if row is None else row + self.header_line


@dataclass
class Changes:
    """What this file changes on its route, and what is sent."""

    remembered: int  # users in the route's memory before this file (0: none)
    memory: bool  # the route had a memory at all
    policy: RosterPolicy
    whole: str | None = None  # why every row is sent (None: only the changes)
    added: int = 0
    changed: int = 0
    unchanged: int = 0
    leavers: list[str] = field(default_factory=list)  # every one: "deactivate" sends them all
    added_listed: list[dict[str, Any]] = field(default_factory=list)
    changed_listed: list[dict[str, Any]] = field(default_factory=list)
    sent_rows: int = 0  # rows in the upload, leaver rows included
    first_leaver_row: int = 0  # server row number of the first leaver row (0: none sent)
    rewritten: bool = False  # the upload is a CSV we wrote, not the file itself
    username_column: int | None = None
    note: str | None = None  # why the memory could not be used
    sent_map: SentRows | None = None
    # A plain comparison made while the server imports the file (``plan(keep_rows=True)``):
    # its header and rows that are not blank, so ``remember`` need not read the file again.
    compared_rows: tuple[list[str], list[list[str]]] | None = field(default=None, repr=False, compare=False)

    @property
    def nothing_to_send(self) -> bool:
        return self.rewritten and self.sent_rows == 0

    @property
    def deactivating(self) -> int:
        return len(self.leavers) if self.first_leaver_row else 0

    @property
    def moving(self) -> int:
        """Users this file would change or deactivate (what change_guard weighs)."""
        return self.changed + self.deactivating

    @property
    def over_guard(self) -> bool:
        """More of the remembered roster would change than ``change_guard`` allows."""
        guard = self.policy.change_guard
        return guard > 0 and self.remembered > 0 and self.moving > guard * self.remembered

    def counts(self) -> str:
        """ "3 added, 1 changed, 1996 unchanged, 2 leavers" (for summaries and the log)."""
        return (
            f"{self.added} added, {self.changed} changed, {self.unchanged} unchanged, "
            f"{len(self.leavers)} leaver{'' if len(self.leavers) == 1 else 's'}"
        )

    def no_changes_summary(self) -> str:
        """The summary of a file delta did not upload."""
        text = f"No changes since the last import ({self.unchanged} rows unchanged)."
        if self.leavers and self.policy.leavers != "keep":
            shown = ", ".join(self.leavers[:10]) + (", ..." if len(self.leavers) > 10 else "")
            text += f" {len(self.leavers)} leaver(s), not in this export: {shown}."
        return text

    def facts(self) -> dict[str, Any]:
        """The result's ``dropbox_sync.changes``."""
        facts: dict[str, Any] = {
            "added": self.added,
            "changed": self.changed,
            "unchanged": self.unchanged,
            "leavers": len(self.leavers),
            "sent_rows": self.sent_rows,
            "sent": "whole file" if self.whole else "changes only",
            "why_whole": self.whole,
            "leavers_policy": self.policy.leavers,
            "deactivated": self.deactivating,
            "remembered_before": self.remembered,
        }
        facts["added_users"] = self.added_listed
        facts["changed_users"] = self.changed_listed
        if self.policy.leavers != "keep" or self.leavers:
            facts["leaver_users"] = self.leavers[:LISTED]
        if self.note:
            facts["note"] = self.note
        return facts
