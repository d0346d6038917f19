"""Times for people: read our ISO stamps, show them in the machine's local zone, say how long ago.

We store UTC everywhere (results, journal, state files); people read local
time, with the zone named, because office staff are not UTC engineers.
"""

from __future__ import annotations

import datetime as dt


def parse_iso(text: object) -> dt.datetime | None:
    """An ISO 8601 stamp of ours (``...Z`` or with an offset) as an aware time; None if it is not one."""
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = dt.datetime.fromisoformat(text)  # 3.11+ reads "Z"
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def iso_utc(moment: dt.datetime) -> str:
    """An aware time as the stamp we store: ``2026-12-02T13:03:00Z`` (UTC, whole seconds)."""
    return moment.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def show_local(moment: dt.datetime | None) -> str:
    """``2026-12-02 14:03 CET`` in this machine's zone."""
    return moment.astimezone().strftime("%Y-%m-%d %H:%M %Z") if moment else "(unknown)"


def zone_text(moment: dt.datetime) -> str:
    """The local zone at ``moment``, named and as an offset: ``CET (UTC+01:00)``."""
    local = moment.astimezone()
    offset = local.strftime("%z")
    offset = f"UTC{offset[:3]}:{offset[3:]}" if offset else "UTC"
    name = local.tzname() or ""
    if name == "UTC" and offset == "UTC+00:00":
        return name
    return f"{name} ({offset})" if name and not name.startswith(("+", "-")) else offset


def duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``3.5 h``, ``2.0 days``."""
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
