"""Bad input gets a clear message and loses nothing (issue "Never lose, never duplicate, never stall", item 7).

The whole corpus (tests/corpus.py) is dropped into ONE inbox served by the real
``run`` loop (observers, settle, claim, pre-flight, TLS upload to the real
emulator). That run happens once per module; each case is then judged by its
own test, so a failure names the input, and global tests check what no single
case can: nothing lost, nothing left claimed, no traceback. The unreadable file
and two consequences of a bad name need their own set-up and come last.

Product bugs are marked ``xfail(strict=True)`` with the reason: once fixed, the
test passes, strict turns that into a failure, and the mark must go.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from loguru import logger

from dropbox_sync import config
from dropbox_sync.emulator.store import UploadRecord
from dropbox_sync.pipeline import archive_names, discover, workdirs
from dropbox_sync.pipeline.worker import InboxWorker
from dropbox_sync.state.journal import Journal
from tests import corpus
from tests.corpus import FAILED, GONE, IGNORED, PROCESSED, Case
from tests.helpers import wait_until
from tests.support import archived, emulator_with_password, good_csv, result_of, running_service, write_config

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="the corpus uses POSIX symlinks, FIFOs and modes")

REPO = Path(__file__).resolve().parents[1]
SETTLE = 1.0  # long enough that the deleted-while-settling case is surely seen before it could settle
GRACE = 3.0  # extra wait for known-bug cases, so a fix shows up as a clean XPASS, not by luck
PLACES = ("inbox", workdirs.SENDING, workdirs.PROCESSED, workdirs.FAILED)

# Inputs the product still mishandles: case name -> why (a strict xfail each).
# A fix turns the xfail into XPASS, which strict makes a failure: delete the entry.
KNOWN_BUGS: dict[str, str] = {}
UNSUPPORTED = {
    "unreadable": "root reads a mode-000 file; covered by test_an_unreadable_file_fails_with_the_reason",
    "non_utf8_name": "only Linux file systems take names that are not UTF-8",
    "newline_name": "Windows does not allow a line break in a name",
}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def printable(name: str) -> str:
    """How a name can be shown or sent: undecodable bytes become U+FFFD, and
    control characters are escaped (a name must not forge a log line)."""
    shown = os.fsencode(name).decode("utf-8", "replace")
    return "".join(f"\\x{ord(c):02x}" if ord(c) < 0x20 or ord(c) == 0x7F else c for c in shown)


# -- the run -------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """What an input looked like before the pipeline started (its access time aside)."""

    mode: int
    size: int
    mtime_ns: int
    data: bytes | None  # regular files under 1 MiB only: never the sparse one, never a FIFO
    link: str | None
    listing: tuple[tuple[str, bytes], ...] | None
    atime_ns: int = field(compare=False, default=0)

    @classmethod
    def of(cls, path: Path) -> Entry:
        info = os.lstat(path)
        data = link = listing = None
        if stat.S_ISLNK(info.st_mode):
            link = os.readlink(path)
        elif stat.S_ISDIR(info.st_mode):
            listing = tuple(sorted((p.name, p.read_bytes()) for p in path.iterdir()))
        elif stat.S_ISREG(info.st_mode) and info.st_size < 1 << 20 and os.access(path, os.R_OK):
            data = path.read_bytes()
        return cls(info.st_mode, info.st_size, info.st_mtime_ns, data, link, listing, info.st_atime_ns)


@dataclass
class CorpusRun:
    inbox: Path
    cases: dict[str, Case]
    before: dict[str, Entry]
    logs: list[str]
    crashes: list[str] = field(default_factory=list)  # exceptions that ended a thread
    not_reached: list[str] = field(default_factory=list)
    uploads: list[UploadRecord] = field(default_factory=list)
    server_users: set[str] = field(default_factory=set)
    atime_tracks_reads: bool = False
    rss_growth_kib: int | None = None
    attempts: dict[str, int] = field(default_factory=dict)  # journal: outcome -> how many

    def lines(self, *needles: str) -> list[str]:
        return [line for line in self.logs if all(n in line for n in needles)]

    def uploads_of(self, data: bytes) -> list[UploadRecord]:
        return [u for u in self.uploads if u.sha256 == sha256(data)]


STAMP = re.compile(r"\d{8}T\d{6}Z(?:-\d+)?_(?P<original>.+)\Z", re.DOTALL)


def same_input(archived_name: str, filename: str) -> bool:
    """Does an archived entry hold this input? Long names are shortened when archived.

    The stamp is stripped here, not with archive_names.original_name, so a bug there
    cannot make a file look lost."""
    match = STAMP.match(archived_name)
    original = match.group("original") if match else archived_name
    if original == filename:
        return True
    if len(os.fsencode(filename)) <= 200:
        return False
    head = min(len(original), len(filename)) // 2  # cut to fit in bytes: compare the first half
    return original[:head] == filename[:head] and Path(original).suffix == Path(filename).suffix


def locate(inbox: Path, case: Case) -> dict[str, list[Path]]:
    """Where the input is now: left in the inbox, claimed, processed or failed."""
    found: dict[str, list[Path]] = {"inbox": [case.path(inbox)] if os.path.lexists(case.path(inbox)) else []}
    for which in PLACES[1:]:
        folder = inbox / which
        entries = (
            sorted(p for p in folder.iterdir() if not p.name.endswith(archive_names.RESULT_SUFFIX))
            if folder.is_dir()
            else []
        )
        found[which] = [p for p in entries if same_input(p.name, case.filename)]
    return found


def reached(inbox: Path, case: Case, logs: list[str], seen: Callable[[str], bool], hooks_done: set[str]) -> bool:
    where = locate(inbox, case)
    if case.expect in (PROCESSED, FAILED):
        done = where[case.expect]
        return len(done) == 1 and archive_names.result_path(done[0]).exists()
    if case.expect == IGNORED:
        return bool(where["inbox"]) and (case.log is None or any(case.log in line for line in logs))
    return case.name in hooks_done and not any(where.values()) and not seen(case.filename)  # GONE


def atime_tracks_reads(folder: Path) -> bool:
    """Does reading a file move its access time here (relatime/strictatime, not noatime)?"""
    probe = folder / "atime-probe"
    probe.write_bytes(b"probe")
    info = os.stat(probe)
    os.utime(probe, ns=(info.st_mtime_ns - 60 * 10**9, info.st_mtime_ns))
    before = os.stat(probe).st_atime_ns
    probe.read_bytes()
    moved = os.stat(probe).st_atime_ns != before
    probe.unlink()
    return moved


def max_rss_kib() -> int | None:
    try:
        import resource
    except ImportError:
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CorpusRun]:
    tmp = tmp_path_factory.mktemp("corpus")
    outside = tmp / "outside"
    outside.mkdir()
    logs: list[str] = []
    sink = logger.add(
        logs.append,
        level="DEBUG",
        format="{level}|{message}\n{exception}",
        backtrace=False,
        diagnose=False,
        colorize=False,
    )
    crashes: list[str] = []
    previous_hook = threading.excepthook

    def record_crash(args: threading.ExceptHookArgs) -> None:
        crashes.append(f"thread {args.thread.name if args.thread else '?'}: {args.exc_type.__name__}: {args.exc_value}")
        previous_hook(args)

    threading.excepthook = record_crash  # a thread the service loses is a traceback too
    emu = emulator_with_password(tmp).start()
    try:
        config_path = write_config(tmp, emu, settle_seconds=SETTLE, max_file_size=corpus.MAX_FILE_SIZE)
        inbox = tmp / "inbox"
        cases = corpus.make_corpus(inbox, outside)
        before = {c.name: Entry.of(c.path(inbox)) for c in cases if os.path.lexists(c.path(inbox))}
        before |= {f"target of {c.name}": Entry.of(c.target) for c in cases if c.target is not None}
        result = CorpusRun(inbox, {c.name: c for c in cases}, before, logs, crashes)
        result.atime_tracks_reads = atime_tracks_reads(outside)
        rss_before = max_rss_kib()
        hooks_done: set[str] = set()
        with running_service(config_path) as pipeline:

            def seen(name: str) -> bool:
                return name in pipeline.snapshots()[0].waiting

            for case in cases:
                if case.during is not None:
                    case.during(inbox, seen)
                    hooks_done.add(case.name)

            def pending(names: set[str] | None = None) -> list[str]:
                return [
                    c.name
                    for c in cases
                    if (names is None or c.name in names) and not reached(inbox, c, logs, seen, hooks_done)
                ]

            # Every case in its place; known-bug cases get a short grace after
            # the rest, so a fix is seen, but they do not hold the run up.
            with contextlib.suppress(AssertionError):
                wait_until(lambda: not (set(pending()) - set(KNOWN_BUGS)), timeout=30)
            with contextlib.suppress(AssertionError):
                wait_until(lambda: not pending(set(KNOWN_BUGS)), timeout=GRACE)
            result.not_reached = pending()
        journal = Journal(tmp / "state" / "journal.sqlite3")
        try:
            result.attempts = journal.counts_since("inbox", "0")
        finally:
            journal.close()
        rss_after = max_rss_kib()
        if rss_before is not None and rss_after is not None:
            result.rss_growth_kib = rss_after - rss_before
    finally:
        threading.excepthook = previous_hook
        logger.remove(sink)
        emu.stop()
    result.uploads = emu.uploads()
    result.server_users = {u.username for u in emu.users()}
    yield result


# -- one test per case ----------------------------------------------------------------


def check_processed(run: CorpusRun, case: Case, where: dict[str, list[Path]]) -> None:
    assert case.data is not None
    assert {k: len(v) for k, v in where.items()} == {"inbox": 0, "sending": 0, "processed": 1, "failed": 0}, where
    (path,) = where[PROCESSED]
    assert path.read_bytes() == case.data, "archived bytes must be the dropped bytes"
    result = result_of(path)
    assert result["success"] is True
    assert case.summary is not None and case.summary in result["summary"]
    facts = result["dropbox_sync"]
    assert (facts["stage"], facts["http_status"], facts["outcome"]) == ("upload", 200, PROCESSED)
    assert (facts["sha256"], facts["bytes"]) == (sha256(case.data), len(case.data))
    shortened = len(os.fsencode(case.filename)) > 200
    if not shortened:
        assert facts["file"] == printable(case.filename), "the result names the file as it was dropped"
    (upload,) = run.uploads_of(case.data)  # exactly one: never duplicated
    assert upload.stored_file is not None and upload.stored_file.read_bytes() == case.data, (
        "the server must receive the bytes unchanged (BOM, CRLF, leading zeros and all)"
    )
    if not shortened and printable(case.filename).isprintable():  # httpx %-escapes control characters
        assert upload.filename == printable(case.filename)
    missing = set(case.server_users) - run.server_users
    assert not missing, f"the server does not hold {missing}"


def check_failed(run: CorpusRun, case: Case, where: dict[str, list[Path]]) -> None:
    assert {k: len(v) for k, v in where.items()} == {"inbox": 0, "sending": 0, "processed": 0, "failed": 1}, where
    (path,) = where[FAILED]
    before, after = run.before[case.name], Entry.of(path)
    assert after == before, "a failed file must be archived exactly as it was dropped"
    result = result_of(path)
    assert result["success"] is False
    assert case.summary is not None and case.summary in result["summary"], result["summary"]
    facts = result["dropbox_sync"]
    assert (facts["stage"], facts["outcome"]) == (case.stage, FAILED)
    named = [u for u in run.uploads if u.filename == printable(case.filename)]
    if case.stage == "preflight":
        assert facts["http_status"] is None
        assert named == [], "stopped by pre-flight: never sent"
        if case.data is not None:
            assert run.uploads_of(case.data) == []
    else:
        assert facts["http_status"] == 200
        assert case.data is not None and len(run.uploads_of(case.data)) == 1
        assert result.get("details"), "the server's row-by-row reply is kept"
    assert run.lines(case.filename, "-> failed/"), "the log must name the file and say where it went"
    if case.never_read:
        check_never_read(run, case, path, facts)


def check_never_read(run: CorpusRun, case: Case, path: Path, facts: dict) -> None:
    info = os.lstat(path)
    assert info.st_size == corpus.SPARSE_SIZE
    assert info.st_blocks * 512 < 1 << 20, "still sparse: nothing was written into it"
    assert facts["sha256"] is None, "no digest: pre-flight stopped at the size, before any read"
    if run.atime_tracks_reads:
        assert info.st_atime_ns == run.before[case.name].atime_ns, "its access time moved: it was read"
    if run.rss_growth_kib is not None:
        assert run.rss_growth_kib < 256 * 1024, f"peak memory grew by {run.rss_growth_kib} KiB"


def check_ignored(run: CorpusRun, case: Case, where: dict[str, list[Path]]) -> None:
    assert {k: len(v) for k, v in where.items()} == {"inbox": 1, "sending": 0, "processed": 0, "failed": 0}, where
    assert Entry.of(case.path(run.inbox)) == run.before[case.name], "left exactly as it was"
    assert [u for u in run.uploads if u.filename == printable(case.filename)] == []
    if case.data is not None:
        assert run.uploads_of(case.data) == []
    if case.target is not None:
        assert Entry.of(case.target) == run.before[f"target of {case.name}"], "a link's target is never touched"
        assert case.target_data is not None and run.uploads_of(case.target_data) == []
    if case.log is not None:
        assert run.lines(case.log), f"no log line says {case.log!r}"
    else:
        loud = [line for line in run.lines(case.filename) if line.startswith(("WARNING|", "ERROR|"))]
        assert loud == [], "names that are not ours are skipped without a warning"


def check_gone(run: CorpusRun, case: Case, where: dict[str, list[Path]]) -> None:
    assert not any(where.values()), where
    assert [u for u in run.uploads if u.filename == case.filename] == []
    errors = [line for line in run.lines(case.filename) if line.startswith("ERROR|") or "Traceback" in line]
    assert errors == [], "a file its writer took back is no error"


CHECKS = {PROCESSED: check_processed, FAILED: check_failed, IGNORED: check_ignored, GONE: check_gone}


def _param(name: str) -> object:
    if name in KNOWN_BUGS:
        return pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[name]))
    return name


@pytest.mark.parametrize("name", [_param(n) for n in corpus.MAKERS])
def test_case(run: CorpusRun, name: str) -> None:
    case = run.cases.get(name)
    if case is None:
        pytest.skip(UNSUPPORTED.get(name, "this OS or user cannot make this input"))
    CHECKS[case.expect](run, case, locate(run.inbox, case))


# -- what no single case shows ---------------------------------------------------------


def test_every_case_reached_its_state(run: CorpusRun) -> None:
    late = set(run.not_reached) - set(KNOWN_BUGS)
    assert not late, f"never reached the expected state: {sorted(late)}"


def test_no_input_is_lost(run: CorpusRun) -> None:
    """Every input is in exactly one place, and nothing is there that was not dropped."""
    kept = [c for c in run.cases.values() if c.expect != GONE]
    counts = {c.name: sum(len(v) for v in locate(run.inbox, c).values()) for c in kept}
    assert {name: n for name, n in counts.items() if n != 1} == {}
    present = [p for p in run.inbox.iterdir() if p.name not in PLACES[1:]]
    for which in PLACES[1:]:
        present += discover.listed_files(run.inbox / which)
    assert len(present) == len(kept), sorted(p.name for p in present)


def test_every_archived_file_has_its_result_and_nothing_else_is_left(run: CorpusRun) -> None:
    for which in (workdirs.PROCESSED, workdirs.FAILED):
        names = {p.name for p in (run.inbox / which).iterdir()}
        files = {p.name for p in discover.listed_files(run.inbox / which)}
        # Besides its result, only our companions of a file (archive_names.companions): the kept
        # full name of a long one, a done marker, the refused rows as a spreadsheet.
        ours = {c.name for n in files for c in archive_names.companions(run.inbox / which / n)} & names
        assert names == files | {n + archive_names.RESULT_SUFFIX for n in files} | ours, (
            f"{which}/ holds {sorted(names)}"
        )
        for name in files:
            result = result_of(run.inbox / which / name)
            assert isinstance(result["success"], bool) and isinstance(result["summary"], str)
            assert result["dropbox_sync"]["outcome"] == which


def test_nothing_is_left_in_sending(run: CorpusRun) -> None:
    assert list((run.inbox / workdirs.SENDING).iterdir()) == []


def test_no_traceback_in_the_logs(run: CorpusRun) -> None:
    assert run.lines("Traceback") == []
    assert run.crashes == [], "an exception ended a thread of the service"


def test_no_input_stalls_the_inbox(run: CorpusRun) -> None:
    """Bad input is decided at once: no attempt was retried or held (the journal says)."""
    assert run.attempts, "the journal recorded the run"
    assert set(run.attempts) <= {PROCESSED, FAILED}, run.attempts


# -- inputs that need their own set-up -------------------------------------------------


@pytest.fixture
def emu(tmp_path: Path) -> Iterator:
    emulator = emulator_with_password(tmp_path).start()
    try:
        yield emulator
    finally:
        emulator.stop()


def _unprivileged_prefix() -> list[str]:
    """Run as nobody: root reads any file whatever its mode, so it cannot test this."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root and setpriv is missing: no way to be an unprivileged user")
    import pwd

    nobody = pwd.getpwnam("nobody")
    prefix = [setpriv, f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups", "--"]
    probe = subprocess.run(
        [*prefix, sys.executable, "-c", "import dropbox_sync"], cwd=REPO, capture_output=True, timeout=60
    )
    if probe.returncode != 0:
        pytest.skip(f"nobody cannot run this Python: {probe.stderr.decode(errors='replace')[-200:]}")
    return prefix


def test_an_unreadable_file_fails_with_the_reason(tmp_path: Path, emu) -> None:
    """The real `once` command, as an unprivileged user when the suite runs as root."""
    as_root = os.geteuid() == 0
    prefix = _unprivileged_prefix() if as_root else []
    # nobody cannot enter pytest's private tmp dirs: use a fresh dir it owns.
    work = Path(tempfile.mkdtemp(prefix="dropbox-sync-unreadable-")) if as_root else tmp_path / "work"
    try:
        work.mkdir(exist_ok=True)
        config_path = write_config(work, emu, ca_bundle=str(emu.copy_ca(work / "ca.pem")))
        inbox = work / "inbox"
        case = corpus.make_unreadable(inbox, work)  # mode 000, owned by us
        if as_root:
            import pwd

            nobody = pwd.getpwnam("nobody")
            # nobody owns everything (the config may be private to its owner) but the
            # file: it may list and rename that, not read it.
            for path in (work, *work.rglob("*")):
                if path != case.path(inbox):
                    os.chown(path, nobody.pw_uid, nobody.pw_gid)
        env = {**os.environ, "HOME": str(work), "PYTHONDONTWRITEBYTECODE": "1"}
        done = subprocess.run(
            [*prefix, sys.executable, "-m", "dropbox_sync", "--config", str(config_path), "once"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        where = locate(inbox, case)
        placed = {k: len(v) for k, v in where.items()}
        assert placed == {"inbox": 0, "sending": 0, "processed": 0, "failed": 1}, done.stderr
        (path,) = where[FAILED]
        info = os.lstat(path)
        assert stat.S_IMODE(info.st_mode) == 0 and info.st_size == len(case.data or b"")
        result = result_of(path)
        assert result["success"] is False
        assert result["summary"] == "File cannot be read: Permission denied."
        assert result["dropbox_sync"]["stage"] == "preflight"
    finally:
        if as_root:
            shutil.rmtree(work, ignore_errors=True)
    assert done.returncode == 1, done.stderr
    assert "locked.csv" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert emu.uploads() == []


def test_a_long_name_is_uploaded_once_and_archived(tmp_path: Path, emu) -> None:
    """Two passes of the service loop must not upload it twice.

    Regression: the result's temporary name did not fit in 255 bytes, so the
    result was never written and every pass uploaded the file again."""
    cfg = config.load(write_config(tmp_path, emu, settle_seconds=0))
    inbox = tmp_path / "inbox"
    assert corpus.MAKERS["long_name"](inbox, tmp_path) is not None
    worker = InboxWorker(cfg.inboxes[0])
    stop = threading.Event()
    try:
        for _ in range(2):
            with contextlib.suppress(Exception):  # what Pipeline._loop does, minus the log line
                worker.cycle(stop)
    finally:
        worker.close()
    assert len(emu.uploads()) == 1, "uploaded more than once"
    (done,) = archived(inbox, workdirs.PROCESSED)
    assert result_of(done)["success"] is True


def test_once_with_a_long_name_still_sends_the_files_behind_it(tmp_path: Path, emu) -> None:
    """Regression: the long name's error killed once's inbox thread, newer files were
    never tried, and the command still exited 0."""
    config_path = write_config(tmp_path, emu)
    inbox = tmp_path / "inbox"
    long_name = corpus.MAKERS["long_name"](inbox, tmp_path)
    assert long_name is not None
    (inbox / "later.csv").write_text(good_csv("later1"), encoding="utf-8")
    stamp = time.time() - 60
    os.utime(long_name.path(inbox), (stamp, stamp))  # older, so it goes first
    done = subprocess.run(
        [sys.executable, "-m", "dropbox_sync", "--config", str(config_path), "once"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    processed = [archive_names.original_name(p.name) for p in archived(inbox, workdirs.PROCESSED)]
    assert "later.csv" in processed, "the file behind the long name was never sent"
    assert len(processed) == 2 and len(emu.uploads()) == 2
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 0
