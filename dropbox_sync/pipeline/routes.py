"""Which import URL a file goes to, and in what order files are sent.

One inbox may feed several imports by file name, e.g. ``users*.csv`` to
``/api/import/users`` and ``*groups*.csv`` to ``/api/import/userGroups``.
Within a batch, routes are sent in the order the config lists them (users
before groups, since groups need the users to exist), and within a route
oldest first (``discover.py``). A file that matches no route is left where
it is. A claimed file is routed by its original name (``claim.original_of``),
never by its archive name, which may have been shortened.
"""

from __future__ import annotations

from dropbox_sync.config import InboxConfig, Route
from dropbox_sync.pipeline.archive_names import export_name
from dropbox_sync.pipeline.watcher import matches


def route_for(inbox: InboxConfig, name: str) -> tuple[int, Route] | None:
    """The first route whose patterns match ``name`` (case does not matter).

    A failed-rows file dropped back goes where its export went."""
    names = {name, export_name(name)}
    for index, route in enumerate(inbox.routes):
        if any(matches(candidate, route.patterns, ()) for candidate in names):
            return index, route
    return None
