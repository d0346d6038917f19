"""Which import URL a file goes to, and in what order files are sent.

One inbox may feed several imports by file name, e.g. ``users*.csv`` to
``/api/import/users`` and ``*groups*.csv`` to ``/api/import/userGroups``.
Within a batch, routes are sent in the order the config lists them (users
before groups, since groups need the users to exist), and within a route
oldest first. A file that matches no route is left where it is.
"""

from __future__ import annotations

from collections.abc import Iterable

from dropbox_sync.config import InboxConfig, Route
from dropbox_sync.watcher import Candidate, matches


def route_for(inbox: InboxConfig, name: str) -> tuple[int, Route] | None:
    """The first route whose patterns match ``name`` (case does not matter)."""
    for index, route in enumerate(inbox.routes):
        if matches(name, route.patterns, ()):
            return index, route
    return None


def in_sending_order(inbox: InboxConfig, candidates: Iterable[Candidate]) -> tuple[list[Candidate], list[str]]:
    """Routed candidates in sending order, and the names that match no route."""
    routed: list[tuple[int, Candidate]] = []
    unrouted: list[str] = []
    for candidate in candidates:
        found = route_for(inbox, candidate.name)
        if found is None:
            unrouted.append(candidate.name)
        else:
            routed.append((found[0], candidate))
    routed.sort(key=lambda pair: (pair[0], pair[1].order_key))
    return [candidate for _, candidate in routed], unrouted
