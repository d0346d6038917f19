"""The bad-input corpus: every way a file dropped into an inbox can be wrong.

Each ``_make_*`` function creates one input in a folder (nothing is committed as
a blob: the bytes are built here, so anyone can read how each case was made)
and returns a ``Case`` saying what a user must see happen to it:

- ``processed``: uploaded byte for byte and archived in processed/;
- ``failed``: archived in failed/ with a result whose summary contains ``summary``
  (``stage`` says whether pre-flight stopped it or the server rejected it);
- ``ignored``: left where it is, untouched, and (when ``log`` is set) named in a
  log line containing ``log``; ``log=None`` marks names that are not ours at
  all (Excel lock files, Thumbs.db, ...), skipped without a word by design;
- ``gone``: removed by its own writer before it settled: never uploaded, no error.

``make_corpus`` builds them all in one inbox with increasing modification times
in list order, so the pipeline's oldest-first order is the same on every run.
Names most likely to trip the file system (very long, not UTF-8) come last,
so if one of them wedges the pipeline it shows up as its own failure rather
than as every later case failing.
"""

from __future__ import annotations

import codecs
import io
import os
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.support import HEADER, good_csv

PROCESSED, FAILED, IGNORED, GONE = "processed", "failed", "ignored", "gone"
MAX_FILE_SIZE = "1KB"  # the inbox's max_file_size while the corpus runs (1000 bytes)
MAX_FILE_BYTES = 1000
SPARSE_SIZE = 1 << 30  # 1 GiB, allocated by truncate: no disk blocks, no write time

# A running pipeline's view of a file: True once it has seen it (it is settling).
Seen = Callable[[str], bool]


@dataclass(frozen=True)
class Case:
    name: str  # short id, used in test ids
    filename: str  # the entry's name in the inbox
    made: str  # how it was made, for people reading a failure
    expect: str  # PROCESSED, FAILED, IGNORED or GONE
    why: str  # why that is the right outcome (docs/bad-input.md)
    summary: str | None = None  # FAILED: must be in the result's summary
    stage: str | None = None  # FAILED: "preflight" (never uploaded) or "upload" (server said no)
    log: str | None = None  # IGNORED: must appear in a log line with the name
    data: bytes | None = None  # the bytes written (None: too big to keep, or not a file)
    server_users: tuple[str, ...] = ()  # usernames the server must hold afterwards, exactly
    target: Path | None = None  # a symlink's target: must be left unchanged
    target_data: bytes | None = None
    never_read: bool = False  # the pipeline must not read a byte of it
    during: Callable[[Path, Seen], None] | None = None  # done while the pipeline runs

    def path(self, inbox: Path) -> Path:
        return inbox / self.filename


def _csv(*usernames: str, line_end: str = "\n") -> bytes:
    return good_csv(*usernames).replace("\n", line_end).encode("utf-8")


def _write(inbox: Path, name: str, data: bytes) -> Path:
    path = inbox / name
    path.write_bytes(data)
    return path


# -- not text, or not UTF-8 ---------------------------------------------------------


def _make_xlsx_named_csv(inbox: Path, outside: Path) -> Case:
    # What office staff produce by typing ".csv" in Excel's save box while
    # keeping the workbook format: a ZIP archive.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as book:
        book.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types/>')
        book.writestr("xl/worksheets/sheet1.xml", "<worksheet>" + "<row/>" * 50 + "</worksheet>")
    data = buffer.getvalue()
    _write(inbox, "roster-from-excel.csv", data)
    return Case(
        "xlsx_named_csv",
        "roster-from-excel.csv",
        "an .xlsx workbook (a ZIP) saved under a .csv name",
        FAILED,
        "never sent; the result says it is a workbook and how to save it as CSV",
        summary="File is an Excel workbook, not a CSV: in Excel use Save As, CSV UTF-8",
        stage="preflight",
        data=data,
    )


def _make_random_bytes(inbox: Path, outside: Path) -> Case:
    import random

    data = random.Random(20261125).randbytes(700)
    _write(inbox, "junk.csv", data)
    return Case(
        "random_bytes",
        "junk.csv",
        "700 seeded random bytes named .csv",
        FAILED,
        "binary junk is never sent; the summary names the first bad byte",
        summary="File is not",
        stage="preflight",
        data=data,
    )


def _make_latin1(inbox: Path, outside: Path) -> Case:
    data = (HEADER + "eleve1,Élodie,Lefèvre,Year 7,Student,\n").encode("cp1252")
    _write(inbox, "latin1.csv", data)
    return Case(
        "latin1",
        "latin1.csv",
        "a Windows-1252 (ANSI) export with accented names",
        FAILED,
        "the server needs UTF-8; accents would be mangled, so the file is stopped and the "
        "summary names the line and shows the text around the offending byte",
        summary="File is not valid UTF-8: line 2 has a character saved in another encoding (byte 0xc9, "
        'shown as \ufffd) here: "eleve1,\ufffdlodie,Lef\ufffdvre',
        stage="preflight",
        data=data,
    )


def _make_truncated_utf8(inbox: Path, outside: Path) -> Case:
    data = _csv("trunc1") + "Zoë".encode()[:-1]  # cut in the middle of 'ë'
    _write(inbox, "cut-short.csv", data)
    return Case(
        "truncated_utf8",
        "cut-short.csv",
        "a UTF-8 file cut off in the middle of a two-byte character",
        FAILED,
        "a file that ends mid-character was cut short (copy interrupted); not sent",
        summary="ends in the middle of a character",
        stage="preflight",
        data=data,
    )


def _make_utf16(inbox: Path, outside: Path) -> Case:
    data = codecs.BOM_UTF16_LE + good_csv("wide1").encode("utf-16-le")
    _write(inbox, "unicode-text.csv", data)
    return Case(
        "utf16_bom",
        "unicode-text.csv",
        "UTF-16LE with BOM (Excel 'Unicode Text' renamed .csv)",
        FAILED,
        "the server needs UTF-8; the summary says how to save as CSV UTF-8",
        summary="File is UTF-16 text; Infiniti needs UTF-8",
        stage="preflight",
        data=data,
    )


# -- not the right CSV ---------------------------------------------------------------


def _make_missing_columns(inbox: Path, outside: Path) -> Case:
    data = b"username,firstName,lastName\nnocol1,A,B\n"
    _write(inbox, "no-groups.csv", data)
    return Case(
        "missing_columns",
        "no-groups.csv",
        "header without library-group and system-group",
        FAILED,
        "the server would reject the whole file; stopped before upload with the missing names",
        summary="Missing required column(s): library-group, system-group.",
        stage="preflight",
        data=data,
    )


def _make_semicolons(inbox: Path, outside: Path) -> Case:
    data = _csv("semi1").replace(b",", b";")
    _write(inbox, "excel-fr.csv", data)
    return Case(
        "semicolons",
        "excel-fr.csv",
        "';'-separated (Excel in a French/German locale)",
        FAILED,
        "one big column to the server; the summary says Infiniti needs commas",
        summary="The header is separated by ';': Infiniti needs commas.",
        stage="preflight",
        data=data,
    )


def _make_tabs(inbox: Path, outside: Path) -> Case:
    data = _csv("tab1").replace(b",", b"\t")
    _write(inbox, "tab-separated.csv", data)
    return Case(
        "tabs",
        "tab-separated.csv",
        "tab-separated text named .csv",
        FAILED,
        "one big column to the server; the summary lists the missing columns and the header seen",
        summary="Missing required column(s): username, library-group, system-group.",
        stage="preflight",
        data=data,
    )


def _make_unknown_group(inbox: Path, outside: Path) -> Case:
    data = (HEADER + "grp1,A,B,Year 13,Student,\n").encode()
    _write(inbox, "unknown-group.csv", data)
    return Case(
        "unknown_group",
        "unknown-group.csv",
        "a row whose library-group does not exist in Infiniti",
        FAILED,
        "only the server knows its groups: sent, and its row-by-row reply kept in failed/",
        summary="1 user failed",
        stage="upload",
        data=data,
    )


def _make_over_limit(inbox: Path, outside: Path) -> Case:
    usernames = [f"big{i:03d}" for i in range(40)]
    data = _csv(*usernames)
    assert len(data) > MAX_FILE_BYTES
    _write(inbox, "too-big.csv", data)
    return Case(
        "over_limit",
        "too-big.csv",
        f"{len(data)} bytes of valid CSV, max_file_size {MAX_FILE_SIZE}",
        FAILED,
        "over max_file_size: not sent; the summary gives both sizes and the remedy",
        summary="over the limit of 1.0 KB (max_file_size)",
        stage="preflight",
        data=data,
    )


def _make_sparse_gigabyte(inbox: Path, outside: Path) -> Case:
    path = inbox / "whole-district.csv"
    with open(path, "wb") as handle:
        handle.truncate(SPARSE_SIZE)  # sparse: no blocks written, no disk used
    return Case(
        "sparse_1gb",
        "whole-district.csv",
        "a 1 GiB sparse file (truncate), never written",
        FAILED,
        "the size check comes before any read: failed/ at once, memory flat, not a byte read",
        summary="File is 1.1 GB, over the limit",
        stage="preflight",
        never_read=True,
    )


# -- legal but unusual ---------------------------------------------------------------


def _make_header_only(inbox: Path, outside: Path) -> Case:
    data = HEADER.encode()
    _write(inbox, "header-only.csv", data)
    return Case(
        "header_only",
        "header-only.csv",
        "the header line and no rows",
        PROCESSED,
        "a legal import of 0 users (nothing changed since the last export)",
        summary="0 users processed",
        data=data,
    )


def _make_zero_bytes(inbox: Path, outside: Path) -> Case:
    _write(inbox, "empty.csv", b"")
    return Case(
        "zero_bytes",
        "empty.csv",
        "a zero-byte file",
        PROCESSED,
        "the vendor documents an empty CSV as a legal no-op (incremental imports)",
        summary="0 users processed",
        data=b"",
    )


def _make_bom_only(inbox: Path, outside: Path) -> Case:
    data = codecs.BOM_UTF8
    _write(inbox, "empty-excel.csv", data)
    return Case(
        "bom_only",
        "empty-excel.csv",
        "just a UTF-8 BOM (Excel 'CSV UTF-8' of an empty sheet)",
        PROCESSED,
        "an empty CSV with a BOM is still an empty CSV, which is legal; the server reads it as 0 users",
        summary="0 users processed",
        data=data,
    )


def _make_utf8_bom(inbox: Path, outside: Path) -> Case:
    data = codecs.BOM_UTF8 + _csv("bom1", "bom2")
    _write(inbox, "excel-utf8.csv", data)
    return Case(
        "utf8_bom",
        "excel-utf8.csv",
        "UTF-8 with BOM (Excel 'CSV UTF-8')",
        PROCESSED,
        "legal; uploaded byte for byte, BOM included, and the header still found",
        summary="2 users processed",
        data=data,
        server_users=("bom1", "bom2"),
    )


def _make_crlf(inbox: Path, outside: Path) -> Case:
    data = _csv("crlf1", line_end="\r\n")
    _write(inbox, "windows-lines.csv", data)
    return Case(
        "crlf",
        "windows-lines.csv",
        "CRLF line endings",
        PROCESSED,
        "legal; bytes sent unchanged",
        summary="1 user processed",
        data=data,
        server_users=("crlf1",),
    )


def _make_cr_only(inbox: Path, outside: Path) -> Case:
    data = _csv("cr1", line_end="\r")
    _write(inbox, "old-mac.csv", data)
    return Case(
        "cr_only",
        "old-mac.csv",
        "CR-only line endings (Excel 'CSV (Macintosh)')",
        PROCESSED,
        "legal CSV; bytes sent unchanged",
        summary="1 user processed",
        data=data,
        server_users=("cr1",),
    )


def _make_leading_zeros(inbox: Path, outside: Path) -> Case:
    data = (HEADER + "00123,Zero,Lead,Year 7,Student,\n0000,All,Zeros,Year 8,Student,\n").encode()
    _write(inbox, "zeros.csv", data)
    return Case(
        "leading_zeros",
        "zeros.csv",
        "usernames 00123 and 0000",
        PROCESSED,
        "the bytes are sent as they are, so 00123 reaches Infiniti as 00123, not 123",
        summary="2 users processed",
        data=data,
        server_users=("00123", "0000"),
    )


def _make_uppercase_extension(inbox: Path, outside: Path) -> Case:
    data = _csv("upper1")
    _write(inbox, "STUDENTS.CSV", data)
    return Case(
        "uppercase_ext",
        "STUDENTS.CSV",
        "extension .CSV",
        PROCESSED,
        "name patterns match case-insensitively on every OS",
        summary="1 user processed",
        data=data,
        server_users=("upper1",),
    )


def _make_unicode_name(inbox: Path, outside: Path) -> Case:
    data = _csv("uni1")
    _write(inbox, "Élèves_ñ_日本.csv", data)
    return Case(
        "unicode_name",
        "Élèves_ñ_日本.csv",
        "a name with accents, ñ and CJK",
        PROCESSED,
        "names are just names",
        summary="1 user processed",
        data=data,
    )


def _make_symbol_name(inbox: Path, outside: Path) -> Case:
    data = _csv("sym1")
    _write(inbox, "Class 7B #2 100% & more.csv", data)
    return Case(
        "symbol_name",
        "Class 7B #2 100% & more.csv",
        "a name with spaces, #, % and &",
        PROCESSED,
        "names are never put in a URL or a shell",
        summary="1 user processed",
        data=data,
    )


# -- not a regular file --------------------------------------------------------------


def _make_folder(inbox: Path, outside: Path) -> Case:
    (inbox / "x.csv").mkdir()
    (inbox / "x.csv" / "inside.csv").write_bytes(_csv("nested1"))
    return Case(
        "folder_named_csv",
        "x.csv",
        "a folder named x.csv holding a CSV",
        IGNORED,
        "folders are not uploaded, and inboxes are not recursive; warned once",
        log="ignoring x.csv: it is a folder, not a file",
    )


def _make_link_outside(inbox: Path, outside: Path) -> Case | None:
    target = outside / "secret-payroll.csv"
    target_data = _csv("payroll1")
    target.write_bytes(target_data)
    try:
        (inbox / "payroll-link.csv").symlink_to(target)
    except OSError:  # Windows without the symlink privilege
        return None
    return Case(
        "symlink_outside",
        "payroll-link.csv",
        "a symlink to a CSV outside the inbox",
        IGNORED,
        "a link could expose any file the service can read; never followed, never uploaded, its target untouched",
        log="ignoring payroll-link.csv: it is a link",
        target=target,
        target_data=target_data,
    )


def _make_linked_target(inbox: Path, outside: Path) -> Case:
    data = _csv("linked1")
    _write(inbox, "linked-target.csv", data)
    return Case(
        "linked_target",
        "linked-target.csv",
        "a plain CSV that a symlink in the inbox points at",
        PROCESSED,
        "uploaded once, as itself, not a second time through the link",
        summary="1 user processed",
        data=data,
    )


def _make_link_inside(inbox: Path, outside: Path) -> Case | None:
    try:
        (inbox / "alias.csv").symlink_to("linked-target.csv")  # relative: inside the inbox
    except OSError:
        return None
    return Case(
        "symlink_inside",
        "alias.csv",
        "a symlink to linked-target.csv in the same inbox",
        IGNORED,
        "links are never followed, even to a file that is itself uploaded",
        log="ignoring alias.csv: it is a link",
    )


def _make_fifo(inbox: Path, outside: Path) -> Case | None:
    if not hasattr(os, "mkfifo"):
        return None
    os.mkfifo(inbox / "pipe.csv")
    return Case(
        "fifo",
        "pipe.csv",
        "a named pipe (FIFO) named pipe.csv",
        IGNORED,
        "opening a FIFO would block the inbox forever; it is never opened",
        log="ignoring pipe.csv: it is not a regular file",
    )


def _make_vanishing(inbox: Path, outside: Path) -> Case:
    name = "abandoned.csv"

    def write_then_delete(folder: Path, seen: Seen) -> None:
        # A writer that is still writing (so the file cannot settle) until the
        # pipeline has seen it, then deletes its partial output.
        from tests.helpers import wait_until

        with open(folder / name, "w", encoding="utf-8") as handle:
            handle.write(HEADER)

            def grow_until_seen() -> bool:
                handle.write("gone1,A,B,Year 7,Student,\n")
                handle.flush()
                return seen(name)

            wait_until(grow_until_seen, timeout=10, interval=0.05)
        (folder / name).unlink()

    return Case(
        "deleted_while_settling",
        name,
        "written, seen by the pipeline, deleted before it settled",
        GONE,
        "its writer took it back: nothing uploaded, no error, nothing to archive",
        during=write_then_delete,
    )


# -- names that are not ours ------------------------------------------------------------


def _silent(name: str, case_id: str, made: str, why: str) -> Callable[[Path, Path], Case]:
    def make(inbox: Path, outside: Path) -> Case:
        data = _csv(case_id)
        _write(inbox, name, data)
        return Case(case_id, name, made, IGNORED, why, data=data)

    return make


_make_excel_lock = _silent(
    "~$x.csv",
    "excel_lock",
    "Excel's lock file ~$x.csv",
    "exclude '~$*': Excel keeps it while x.csv is open; silent, it is not an export",
)
_make_thumbs = _silent("Thumbs.db", "thumbs_db", "Windows Explorer's Thumbs.db", "not *.csv, and system litter; silent")
_make_desktop_ini = _silent("desktop.ini", "desktop_ini", "Windows desktop.ini", "not *.csv; silent")
_make_tmp = _silent(
    "x.csv.tmp",
    "tmp_suffix",
    "a writer's temporary x.csv.tmp",
    "exclude '*.tmp': a file still being written under a temporary name; silent",
)
_make_hidden = _silent(
    ".hidden.csv",
    "hidden",
    "a dot-file .hidden.csv",
    "exclude '.*': hidden and temporary files (rsync, editors); silent",
)


# -- names the file system may choke on (last: see the module docstring) ------------------


def _make_long_name(inbox: Path, outside: Path) -> Case:
    stem = "Students export for the autumn term " * 7  # 245 characters
    name = stem[:236].rstrip() + ".csv"
    assert 235 <= len(name.encode()) <= 240
    data = _csv("long1")
    _write(inbox, name, data)
    return Case(
        "long_name",
        name,
        f"a {len(name)}-character ASCII name",
        PROCESSED,
        "legal on every OS; the archive name is shortened to fit with its timestamp and result",
        summary="1 user processed",
        data=data,
    )


def _make_long_cjk_name(inbox: Path, outside: Path) -> Case:
    # 86 characters but 250 bytes: a limit counted in characters misses it.
    name = "日本語の生徒名簿" * 10 + "七年.csv"
    assert len(name) < 100 and 240 < len(name.encode()) <= 255
    data = _csv("cjk1")
    _write(inbox, name, data)
    return Case(
        "long_cjk_name",
        name,
        f"a {len(name)}-character Japanese name ({len(name.encode())} bytes)",
        PROCESSED,
        "Linux counts the 255 limit in bytes: the archive name is cut to fit in bytes",
        summary="1 user processed",
        data=data,
    )


def _make_newline_name(inbox: Path, outside: Path) -> Case | None:
    if sys.platform == "win32":
        return None
    name = "class list\n7B.csv"
    data = _csv("newline1")
    _write(inbox, name, data)
    return Case(
        "newline_name",
        name,
        "a name with a line break in it (possible on Linux and macOS)",
        PROCESSED,
        "names are just names; the result still names the file as dropped",
        summary="1 user processed",
        data=data,
    )


def _make_non_utf8_name(inbox: Path, outside: Path) -> Case | None:
    # Linux names are bytes: a file copied from an old Samba share or a ZIP
    # made on Windows can carry Latin-1 bytes that are not valid UTF-8.
    if not sys.platform.startswith("linux"):
        return None
    name = os.fsdecode(b"\xe9l\xe8ves-latin1-name.csv")
    data = _csv("latin1name1")
    _write(inbox, name, data)
    return Case(
        "non_utf8_name",
        name,
        "a file name in Latin-1 bytes (not valid UTF-8), Linux only",
        PROCESSED,
        "the contents are fine; the name is shown with replacement characters but never stops the file",
        summary="1 user processed",
        data=data,
    )


def unreadable_supported() -> bool:
    """chmod 000 stops reads only for an unprivileged user (root bypasses it)."""
    return hasattr(os, "geteuid") and os.geteuid() != 0


def make_unreadable(inbox: Path, outside: Path) -> Case:
    """A file the service may list and rename but not read (callers check the user)."""
    data = _csv("secret1")
    path = _write(inbox, "locked.csv", data)
    path.chmod(0)
    return Case(
        "unreadable",
        "locked.csv",
        "a file with mode 000 (readable by nobody but root)",
        FAILED,
        "it cannot be checked or sent; failed/ with the OS's reason, fixable and retryable",
        summary="File cannot be read: Permission denied",
        stage="preflight",
        data=data,
    )


def _make_unreadable(inbox: Path, outside: Path) -> Case | None:
    return make_unreadable(inbox, outside) if unreadable_supported() else None


# In creation (and so upload) order.
MAKERS: dict[str, Callable[[Path, Path], Case | None]] = {
    "xlsx_named_csv": _make_xlsx_named_csv,
    "random_bytes": _make_random_bytes,
    "latin1": _make_latin1,
    "truncated_utf8": _make_truncated_utf8,
    "utf16_bom": _make_utf16,
    "missing_columns": _make_missing_columns,
    "semicolons": _make_semicolons,
    "tabs": _make_tabs,
    "unknown_group": _make_unknown_group,
    "over_limit": _make_over_limit,
    "sparse_1gb": _make_sparse_gigabyte,
    "header_only": _make_header_only,
    "zero_bytes": _make_zero_bytes,
    "bom_only": _make_bom_only,
    "utf8_bom": _make_utf8_bom,
    "crlf": _make_crlf,
    "cr_only": _make_cr_only,
    "leading_zeros": _make_leading_zeros,
    "uppercase_ext": _make_uppercase_extension,
    "unicode_name": _make_unicode_name,
    "symbol_name": _make_symbol_name,
    "folder_named_csv": _make_folder,
    "symlink_outside": _make_link_outside,
    "linked_target": _make_linked_target,
    "symlink_inside": _make_link_inside,
    "fifo": _make_fifo,
    "deleted_while_settling": _make_vanishing,
    "unreadable": _make_unreadable,
    "excel_lock": _make_excel_lock,
    "thumbs_db": _make_thumbs,
    "desktop_ini": _make_desktop_ini,
    "tmp_suffix": _make_tmp,
    "hidden": _make_hidden,
    "long_name": _make_long_name,
    "long_cjk_name": _make_long_cjk_name,
    "newline_name": _make_newline_name,
    "non_utf8_name": _make_non_utf8_name,
}


def make_corpus(inbox: Path, outside: Path) -> list[Case]:
    """Create every case that this OS and user can make; return them in order.

    ``outside`` is a folder that is not the inbox (symlink targets live there).
    Modification times increase by one second per case, an hour in the past,
    so the pipeline takes them in list order. The sparse file's access time is
    set before its modification time, so any read of it (relatime or strictatime
    mounts) moves the access time: the test can prove it was never read.
    """
    cases = []
    for make in MAKERS.values():
        case = make(inbox, outside)
        if case is not None:
            cases.append(case)
    base = time.time() - 3600
    for number, case in enumerate(cases):
        path = case.path(inbox)
        if not os.path.lexists(path):
            continue  # made later, while the pipeline runs
        stamp = base + number
        atime = stamp - 60 if case.never_read else stamp
        os.utime(path, (atime, stamp), follow_symlinks=False)
    return cases
