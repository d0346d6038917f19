"""One file made ready to upload, or the reason it must not be: the one preparation step.

The pipeline (``transaction.py``), ``check`` and ``send`` all call ``prepare``, so what
``check`` promises is what ``run`` does. Its stages, in order:

1. regular file: a link or special file (put in ``sending/`` between scan and claim)
   is never followed or read;
2. route: the first route matching the file's ORIGINAL name (``claim.original_of``:
   the archive name of a long name is shortened and may have lost "groups");
3. encoding: a file that is valid UTF-8 (BOM or not) is sent as it is; with
   ``source_encoding`` set, any other file is transcoded into a UTF-8 copy (the
   dropped bytes are what gets archived);
4. pre-flight of those bytes (size, text, required columns; with a column mapping,
   the columns its templates read); then a column ``import_error`` (a fixed
   failed-rows file dropped back) is left out of what is sent;
5. column mapping (the route's ``[inbox.columns]``): the export streamed into the CSV
   Infiniti receives, a temporary in ``scratch`` (``mapper.py``);
6. changes (``changes.py``): that CSV against the route's roster memory: added, changed,
   unchanged, leavers; with ``delta`` (or leavers to deactivate) the rows to send are
   written to a temporary, and a file with nothing to send is not uploaded at all;
7. shrink guard: far fewer rows than the last import on this route waits in held/;
8. change guard: a file that would change or deactivate more than ``change_guard`` of
   the roster waits in held/.

Every read, stat and temporary of a claimed file goes through its work folder's
handle (``workfiles.open_claimed`` and kin, workdirs.py): sending/ is shared ground.

The caller uploads ``Upload.path`` and then calls ``Upload.discard()`` (the worker
first keeps a mapped upload as ``<archived>.sent.csv``: ``Upload.keep_sent``).
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from dropbox_sync.config import InboxConfig, Route
from dropbox_sync.errors import TranscodeError
from dropbox_sync.pipeline import archive_names, failed_rows, mapper, preflight, routes, transcode, workfiles
from dropbox_sync.pipeline.prepared import Rejection, Upload, remove_temporaries
from dropbox_sync.pipeline.result import CHANGE_GUARD, PREFLIGHT, SHRINK_GUARD
from dropbox_sync.roster import changes
from dropbox_sync.roster.memory import Roster
from dropbox_sync.state import held


def prepare(
    inbox: InboxConfig,
    path: Path,
    name: str | None = None,
    *,
    scratch: Path | None = None,
    last_rows: Callable[[str], int | None] | None = None,
    approved: bool = False,
    roster: Roster | None = None,
    now: dt.datetime | None = None,
    compare_later: bool = False,
    before_comparing: Callable[[], None] | None = None,
) -> Upload | Rejection:
    """Make ``path`` ready to upload for ``inbox``, or say why it must not be.

    ``name`` is the name the file was dropped with (default ``path.name``); routes
    match it. ``scratch`` is where temporaries go (default: beside ``path``, i.e.
    ``sending/``, where a crash's leftovers are tidied at start). ``last_rows(url)``
    gives the rows of the last import on a route for the shrink guard (None: no guard).
    ``roster``: the roster memory to compare with (None: none, every row is "added");
    ``now``: the clock of ``full_sync_days``. ``compare_later``: where the roster memory
    only informs the result (``RosterPolicy.shapes_upload`` false), stage 6 is left out
    (``Upload.compare_later``) for the caller to run with ``compare`` while the server
    works; ``before_comparing`` is called before a comparison done here (the caller's
    memory must be up to date first). Never raises for a bad file; the caller owns
    ``Upload.discard()``."""
    name = path.name if name is None else name
    original = archive_names.display_name(name)
    try:
        info = workfiles.lstat_claimed(path)  # through sending/'s handle for a claimed file
    except OSError as exc:
        return Rejection(f"File cannot be read: {exc.strerror or exc}.", PREFLIGHT, {})
    if not stat.S_ISREG(info.st_mode):
        return Rejection(
            f"Not uploaded: {original} is a link or not a regular file; links are never followed or uploaded.",
            PREFLIGHT,
            {},
        )
    found = routes.route_for(inbox, name)
    if found is None:
        return Rejection(
            f'Not uploaded: {original} matches no route of inbox "{inbox.name}".',
            PREFLIGHT,
            {"bytes": info.st_size, "sha256": _sha256(inbox, path)},
        )
    route = found[1]
    temporaries: list[Path] = []
    try:
        prepared = _encoded(inbox, route, path, original, info.st_size, scratch, temporaries)
        if isinstance(prepared, Upload):
            if compare_later and not route.policy.shapes_upload:
                prepared = dataclasses.replace(prepared, compare_later=True)
            else:
                if before_comparing is not None:
                    before_comparing()
                prepared = _changes(inbox, prepared, path, scratch, temporaries, roster, now or dt.datetime.now(dt.UTC))
        if isinstance(prepared, Upload):
            if approved:
                prepared = dataclasses.replace(prepared, approved=True)
            else:
                prepared = _shrink_guard(inbox, prepared, path.name, last_rows) or _change_guard(prepared) or prepared
    except BaseException:
        remove_temporaries(temporaries)
        raise
    if isinstance(prepared, Rejection):
        remove_temporaries(temporaries)
    return prepared


def _encoded(
    inbox: InboxConfig,
    route: Route,
    path: Path,
    original: str,
    size: int,
    scratch: Path | None,
    temporaries: list[Path],
) -> Upload | Rejection:
    """Stages 3 to 5: the UTF-8 bytes to upload, pre-flighted, mapped."""
    endpoint = {"endpoint": route.safe_url}
    upload_path, transcoded_from = path, None
    check = {"max_file_size": inbox.max_file_size, "mapping": route.mapping}
    try:
        # No digest here: the upload hashes the bytes as they go out, which
        # saves a whole pass over a large file.
        inspection = preflight.inspect(path, digest=False, **check)
        if inspection.not_utf8 and inbox.source_encoding:
            # Only what is not UTF-8 already: office staff save "CSV UTF-8" into
            # the same inbox as the SIS's cp1252 exports (issue 11 item 14).
            upload_path = transcode.to_utf8(path, inbox.source_encoding, folder=scratch)
            temporaries.append(upload_path)
            transcoded_from = inbox.source_encoding
            inspection = preflight.inspect(upload_path, digest=False, **check)
    except TranscodeError as exc:
        return Rejection(str(exc), PREFLIGHT, {**endpoint, "bytes": size, "sha256": _sha256(inbox, path)})
    except OSError as exc:
        return Rejection(
            f"File cannot be read: {exc.strerror or exc}.", PREFLIGHT, {**endpoint, "bytes": size, "sha256": None}
        )
    upload = Upload(
        route,
        original,
        upload_path,
        inspection.size,
        inspection.rows,
        transcoded_from=transcoded_from,
        temporaries=tuple(temporaries),
    )
    if inspection.problem is not None:
        return Rejection(inspection.problem, PREFLIGHT, {**upload.facts, "sha256": _sha256(inbox, path)})
    if inspection.error_column:
        upload = _without_error_column(upload, path, scratch, temporaries)
    if route.mapping is None:
        return upload
    return _mapped(inbox, upload, path, scratch, temporaries)


def _mapped(
    inbox: InboxConfig, upload: Upload, path: Path, scratch: Path | None, temporaries: list[Path]
) -> Upload | Rejection:
    """Stage 5: the CSV Infiniti receives, streamed from the export into a temporary.

    The export was pre-flighted (size, text, the columns the templates read); what
    this writes is UTF-8 with Infiniti's required columns by construction
    (``mapping.build`` insists on them), so it is not read a third time."""
    assert upload.route.mapping is not None
    try:
        target, sink = _temporary(path, scratch, ".mapped")
        temporaries.append(target)
        mapped = mapper.map_file(upload.route.mapping, upload.path, target, sink=sink)
    except OSError as exc:
        return Rejection(
            f"File cannot be mapped: {exc.strerror or exc}.",
            PREFLIGHT,
            {**upload.facts, "sha256": _sha256(inbox, path)},
        )
    if mapped.problem is not None:
        return Rejection(mapped.problem, PREFLIGHT, {**upload.facts, "sha256": _sha256(inbox, path)})
    return dataclasses.replace(
        upload,
        path=target,
        size=workfiles.lstat_claimed(target).st_size,
        rows=mapped.rows_sent,
        warnings=(*upload.warnings, *mapped.warnings),
        mapped=mapped,
        temporaries=tuple(temporaries),
    )


def _without_error_column(upload: Upload, path: Path, scratch: Path | None, temporaries: list[Path]) -> Upload:
    """Stage 3b: a column ``import_error`` (a fixed failed-rows file dropped back) is never
    sent. Read only after the pre-flight passed, so never a huge or binary file; checking
    a file without one costs reading its header."""
    made: list[Path] = []

    def open_target() -> BinaryIO:
        target, sink = _temporary(path, scratch, ".upload")
        made.append(target)
        return sink

    try:
        kept = failed_rows.without_error_column(upload.path, open_target)
    except (OSError, UnicodeError, csv.Error):
        kept = False  # valid UTF-8 text but an odd CSV: the server's to judge, as sent
    if not kept:
        remove_temporaries(made)
        return upload
    return dataclasses.replace(
        upload, path=made[0], size=workfiles.lstat_claimed(made[0]).st_size, temporaries=tuple(temporaries)
    )


def _changes(
    inbox: InboxConfig,
    upload: Upload,
    path: Path,
    scratch: Path | None,
    temporaries: list[Path],
    roster: Roster | None,
    now: dt.datetime,
) -> Upload | Rejection:
    """Stage 6: the upload against the route's roster memory; only the rows to send, with delta."""
    if upload.rows > changes.MAX_ROWS:
        return upload
    made: list[Path] = []

    def open_target() -> BinaryIO:
        """Only when plan rewrites the upload (delta, deactivating leavers): a comparison alone
        makes no file. Tidied after a crash like the other temporaries."""
        target, sink = _temporary(path, scratch, ".changes")
        made.append(target)
        temporaries.append(target)  # removed by prepare if anything escapes
        return sink

    def drop_made() -> None:
        remove_temporaries(made)
        temporaries[:] = [t for t in temporaries if t not in made]

    route = upload.route
    try:
        found = changes.plan(
            upload.path,
            inbox.name,
            route.safe_url,
            route.policy,
            roster,
            now,
            open_target=open_target,
            row_map=upload.mapped.row_map if upload.mapped is not None else None,
            keep_rows=upload.compare_later,  # the file sent, remembered from these rows
        )
    except (OSError, UnicodeDecodeError, csv.Error, ValueError) as exc:
        # Sending the file as it is stays right (the server reads it its own way and says
        # what it refused); only the memory learns nothing from it.
        drop_made()
        warning = f"not compared with the roster memory ({exc}); sent as it is"
        return dataclasses.replace(upload, warnings=(*upload.warnings, warning))
    if found is None or not found.rewritten:
        drop_made()  # written, but the file itself goes, byte for byte
        return upload if found is None else dataclasses.replace(upload, changes=found)
    return dataclasses.replace(
        upload,
        path=made[0],
        size=workfiles.lstat_claimed(made[0]).st_size,
        changes=found,
        temporaries=tuple(temporaries),
    )


def compare(inbox: InboxConfig, upload: Upload, path: Path, roster: Roster | None, now: dt.datetime) -> Upload:
    """Stage 6 of an upload prepared with ``compare_later`` (``path``: the claimed file). The
    route's policy neither rewrites nor guards, so no temporary is made and nothing is held:
    only ``Upload.changes`` (the result's facts) and perhaps a warning come of it."""
    assert upload.compare_later and not upload.route.policy.shapes_upload
    found = _changes(inbox, upload, path, None, list(upload.temporaries), roster, now)
    assert isinstance(found, Upload) and found.temporaries == upload.temporaries
    return dataclasses.replace(found, compare_later=False)


def _change_guard(upload: Upload) -> Rejection | None:
    """Stage 8: hold a file that would change or deactivate too much of what the route remembers."""
    found = upload.changes
    if found is None or not found.over_guard:
        return None
    guard, moving = found.policy.change_guard, found.moving
    reason = (
        f"Held for approval: it would change {found.changed} and deactivate {found.deactivating} of the "
        f"{found.remembered} users this route remembers ({moving / found.remembered:.0%}; change_guard = "
        f"{guard:g}). Changes: {found.counts()}. {held.what_to_do(upload.original).capitalize()}"
    )
    return Rejection(reason, CHANGE_GUARD, upload.facts)


def _shrink_guard(
    inbox: InboxConfig, upload: Upload, archived_as: str, last_rows: Callable[[str], int | None] | None
) -> Rejection | None:
    if inbox.shrink_guard <= 0 or last_rows is None:
        return None
    last = last_rows(upload.route.safe_url)
    if last is None or upload.rows >= inbox.shrink_guard * last:
        return None
    reason = (
        f"Held for approval: {upload.rows} rows, but the last file imported on this route had {last} "
        f"(shrink_guard = {inbox.shrink_guard:g}). {held.what_to_do(upload.original).capitalize()}"
    )
    return Rejection(reason, SHRINK_GUARD, upload.facts)


def _sha256(inbox: InboxConfig, path: Path) -> str | None:
    """The digest of the dropped bytes, for a result that stops before the upload."""
    return preflight.file_sha256(path, max_file_size=inbox.max_file_size)


def _temporary(path: Path, scratch: Path | None, label: str) -> tuple[Path, BinaryIO]:
    """A new temporary of unpredictable name, made O_EXCL without following a link, beside
    ``path`` (in sending/, through its handle) or in ``scratch``: a dot-name ending .tmp,
    never taken for a dropped file, tidied after a crash (workfiles.create_temporary)."""
    return workfiles.create_temporary(scratch / path.name if scratch is not None else path, label)
