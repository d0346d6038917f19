"""What a route does with its roster memory: the ``delta``, ``leavers`` and ``change_guard`` keys.

    delta = true                  # send only added and changed rows (default false)
    full_sync_days = 7            # ... but the whole file every N days (0 = never)
    leavers = "report"            # "keep" (default), "report" or "deactivate"
    leaver_values = { enabled = "FALSE" }   # what "deactivate" sends for a leaver
    change_guard = 0.2            # hold a file changing more than this share of the roster

Each key may be set per inbox (or in [defaults]) and per route ([[inbox.route]]), the
route's value winning. Pure: config.py calls ``build`` with the merged values and turns
a ``ConfigError`` from here into one line naming the inbox (and route).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dropbox_sync.errors import ConfigError

KEEP, REPORT, DEACTIVATE = "keep", "report", "deactivate"
LEAVER_CHOICES = (KEEP, REPORT, DEACTIVATE)
DEFAULT_LEAVER_VALUES = (("enabled", "FALSE"),)
DEFAULTS: dict[str, Any] = {
    "delta": False,
    "full_sync_days": 7.0,
    "leavers": KEEP,
    "leaver_values": None,  # None: DEFAULT_LEAVER_VALUES
    # None: off (0), except with leavers = "deactivate", where it is 0.2: a partial export
    # dropped on a roster route would otherwise deactivate everyone missing from it. Off by
    # default otherwise, so an upgrade does not start holding files (config.toml recommends 0.2).
    "change_guard": None,
}
DEACTIVATE_GUARD = 0.2
KEYS = frozenset(DEFAULTS)


@dataclass(frozen=True)
class RosterPolicy:
    delta: bool = False
    full_sync_days: float = 7.0  # 0 = never force a whole send
    leavers: str = KEEP
    leaver_values: tuple[tuple[str, str], ...] = DEFAULT_LEAVER_VALUES
    change_guard: float = 0.0  # 0 = off

    @property
    def deactivates(self) -> bool:
        return self.leavers == DEACTIVATE

    @property
    def rewrites(self) -> bool:
        """The upload is built from the rows to send, not the file (byte for byte) itself."""
        return self.delta or self.deactivates

    @property
    def shapes_upload(self) -> bool:
        """The roster memory decides what is sent or whether (rewrites, change_guard): the
        comparison must come before the upload. Otherwise it only informs the result, and
        the pipeline runs it while the server works (``transaction.FileTransaction._post``)."""
        return self.rewrites or self.change_guard > 0


DEFAULT = RosterPolicy()


def build(values: Mapping[str, Any]) -> RosterPolicy:
    """The policy from the merged keys (missing keys take ``DEFAULTS``); ConfigError("key problem")."""
    merged = {**DEFAULTS, **{k: v for k, v in values.items() if k in KEYS and v is not None}}
    delta = merged["delta"]
    if not isinstance(delta, bool):
        raise ConfigError("delta must be true or false")
    days = merged["full_sync_days"]
    if isinstance(days, bool) or not isinstance(days, int | float) or not 0 <= days <= 36_500:  # nan, inf too
        raise ConfigError("full_sync_days must be a number of days (0 = never send the whole file)")
    leavers = merged["leavers"]
    if leavers not in LEAVER_CHOICES:
        raise ConfigError(f"leavers must be one of {', '.join(LEAVER_CHOICES)}")
    guard = merged["change_guard"]
    if guard is None:
        guard = DEACTIVATE_GUARD if leavers == DEACTIVATE else 0.0
    if isinstance(guard, bool) or not isinstance(guard, int | float) or not 0 <= guard < 1:
        raise ConfigError("change_guard must be a fraction from 0 (off) to below 1, e.g. 0.2")
    return RosterPolicy(delta, float(days), leavers, _leaver_values(merged["leaver_values"]), float(guard))


def _leaver_values(raw: object) -> tuple[tuple[str, str], ...]:
    if raw is None:
        return DEFAULT_LEAVER_VALUES
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigError('leaver_values must be a table of column = "value", e.g. { enabled = "FALSE" }')
    pairs = []
    for column, value in raw.items():
        if not column.strip() or not isinstance(value, str):
            raise ConfigError(f'leaver_values.{column} must be text in quotes, e.g. "FALSE"')
        if column.strip().casefold() == "username":
            raise ConfigError("leaver_values cannot set username: it names the user to deactivate")
        pairs.append((column.strip(), value))
    return tuple(pairs)
