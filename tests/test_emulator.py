"""The Infiniti emulator, exercised over real sockets (TLS unless a test says otherwise)."""

from __future__ import annotations

import argparse
import hashlib
import io
import re
import socket
import ssl
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from dropbox_sync.emulator import Emulator, wording
from dropbox_sync.emulator import cli as emulator_cli
from tests.helpers import wait_until

AUTH = ("autoimport", "demo-password")
HEADER = "username,library-group,system-group,firstName,lastName,emailAddress\n"
EMAIL_ROW_FAILURE = (
    "Field (emailAddress) is not a well-formed email address. "
    "User failed to import: Field (emailAddress) is not a well-formed email address. "
)
UNAUTHORISED = {"success": False, "summary": "Unauthorised. Check credentials."}


def csv_bytes(*rows: str, header: str = HEADER) -> bytes:
    return (header + "".join(row + "\n" for row in rows)).encode("utf-8")


def verify_for(emu: Emulator) -> ssl.SSLContext:
    assert emu.ca_file is not None
    return ssl.create_default_context(cafile=str(emu.ca_file))


@pytest.fixture
def client(emulator: Emulator) -> Iterator[httpx.Client]:
    with httpx.Client(verify=verify_for(emulator), auth=AUTH, timeout=10.0) as c:
        yield c


def upload(
    client: httpx.Client, emu: Emulator, content: bytes, *, endpoint: str = "users", tenant: str | None = None, **kwargs
) -> httpx.Response:
    return client.post(emu.import_url(endpoint, tenant), files={"file": ("users.csv", content)}, **kwargs)


# -- imports ------------------------------------------------------------------


def test_upload_creates_then_updates(emulator: Emulator, client: httpx.Client) -> None:
    content = csv_bytes(
        "s001,Year 7,Student,Ann,Lee,ann@example.edu",
        "s002,Year 8,Student,Bo,Ng,",
        "t001,Staff,Teacher,Cy,Oh,cy@example.edu",
    )
    first = upload(client, emulator, content)
    assert first.status_code == 200
    assert first.headers["content-type"] == "application/json"
    assert first.json() == {
        "success": True,
        "summary": "3 users processed. 3 users created. 0 users updated. 0 users failed.",
    }
    second = upload(client, emulator, content)
    assert second.json() == {
        "success": True,
        "summary": "3 users processed. 0 users created. 3 users updated. 0 users failed.",
    }
    users = {u.username: u for u in emulator.users()}
    assert set(users) == {"s001", "s002", "t001"}
    assert users["s001"].fields["firstName"] == "Ann"
    assert (users["t001"].library_group, users["t001"].system_group) == ("Staff", "Teacher")
    records = emulator.uploads()
    assert [r.seq for r in records] == [1, 2]
    assert records[0].sha256 == hashlib.sha256(content).hexdigest()
    assert (records[0].bytes, records[0].status, records[0].success) == (len(content), 200, True)
    assert (records[0].username, records[0].tenant, records[0].path) == ("autoimport", None, "/api/import/users")
    assert records[1].summary == second.json()["summary"]
    emulator.stop()
    assert emulator.uploads() == records  # still readable from the state dir


def test_vendor_example_reply_is_reproduced_exactly(emulator: Emulator, client: httpx.Client) -> None:
    upload(client, emulator, csv_bytes("old1,Students,Student,,,"))
    reply = upload(
        client,
        emulator,
        csv_bytes(
            "old1,Students,Student,Al,Bee,al@example.edu",
            "bad1,Students,Student,Cee,Dee,not-an-address",
            "new1,Students,Student,Ed,Eff,ed@example.edu",
        ),
    )
    assert reply.status_code == 200
    assert reply.json() == {
        "success": False,
        "summary": "3 users processed. 1 user created. 1 user updated. 1 user failed.",
        "details": {"1": "User Updated", "2": EMAIL_ROW_FAILURE, "3": "User Created"},
    }
    assert [u.username for u in emulator.users()] == ["new1", "old1"]


def test_singular_summary(emulator: Emulator, client: httpx.Client) -> None:
    reply = upload(client, emulator, csv_bytes("only,Staff,Staff,,,"))
    assert reply.json()["summary"] == "1 user processed. 1 user created. 0 users updated. 0 users failed."


@pytest.mark.parametrize(
    ("row", "outcome"),
    [
        (
            "a1,Year 13,Student,,,",
            "Library group (Year 13) does not exist. User failed to import: Library group (Year 13) does not exist. ",
        ),
        (
            "a1,Year 9,Janitor,,,",
            "System group (Janitor) does not exist. User failed to import: System group (Janitor) does not exist. ",
        ),
        (",Year 9,Student,,,", "Field (username) is required. User failed to import: Field (username) is required. "),
        (
            "a1,,Student,,,",
            "Field (library-group) is required. User failed to import: Field (library-group) is required. ",
        ),
        ("a1,Year 9,Student,,,a@b@c", EMAIL_ROW_FAILURE),
    ],
)
def test_row_failures(emulator: Emulator, client: httpx.Client, row: str, outcome: str) -> None:
    reply = upload(client, emulator, csv_bytes(row, "ok1,Year 9,Student,,,"))
    assert reply.json() == {
        "success": False,
        "summary": "2 users processed. 1 user created. 0 users updated. 1 user failed.",
        "details": {"1": outcome, "2": "User Created"},
    }


def test_headers_and_groups_match_ignoring_case(emulator: Emulator, client: httpx.Client) -> None:
    content = csv_bytes("x1,year 10,TEACHER,", header=" Username ,LIBRARY-GROUP,System-Group,EmailAddress\n")
    assert upload(client, emulator, content).json()["success"] is True
    (user,) = emulator.users()
    assert (user.library_group, user.system_group) == ("Year 10", "Teacher")


def test_username_twice_in_one_file_is_created_then_updated(emulator: Emulator, client: httpx.Client) -> None:
    reply = upload(client, emulator, csv_bytes("dup,Staff,Staff,A,,", "dup,Staff,Teacher,B,,"))
    assert reply.json()["summary"] == "2 users processed. 1 user created. 1 user updated. 0 users failed."
    (user,) = emulator.users()
    assert (user.system_group, user.fields["firstName"]) == ("Teacher", "B")


def test_missing_required_column_fails_whole_import(emulator: Emulator, client: httpx.Client) -> None:
    content = csv_bytes("m1,Staff,,", header="username,library-group,firstName\n")
    reply = upload(client, emulator, content)
    assert reply.status_code == 200
    assert reply.json() == {"success": False, "summary": "Missing required column(s): system-group."}
    assert emulator.users() == []


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"  \r\n\n \t\n",
        b"\xef\xbb\xbf",
        HEADER.encode(),
        b"\xef\xbb\xbf" + HEADER.encode() + b"\n\n",
    ],
    ids=["empty", "whitespace", "bom-only", "header-only", "bom-header-blank-lines"],
)
def test_empty_files_are_a_successful_no_op(emulator: Emulator, client: httpx.Client, content: bytes) -> None:
    reply = upload(client, emulator, content)
    assert reply.status_code == 200
    assert reply.json() == {
        "success": True,
        "summary": "0 users processed. 0 users created. 0 users updated. 0 users failed.",
    }


def test_bom_is_stripped_from_first_header(emulator: Emulator, client: httpx.Client) -> None:
    content = b"\xef\xbb\xbf" + csv_bytes("007,Staff,Staff,,,", header="username,library-group,system-group\n")
    assert upload(client, emulator, content).json()["success"] is True
    assert [u.username for u in emulator.users()] == ["007"]  # leading zeros survive


def test_not_utf8_fails_whole_import_and_changes_nothing(emulator: Emulator, client: httpx.Client) -> None:
    rows = "".join(f"u{i},Staff,Staff,,,\n" for i in range(3000))
    content = (HEADER + rows).encode() + "caf\u00e9,Staff,Staff,,,\n".encode("latin-1")
    reply = upload(client, emulator, content)
    assert reply.json() == {"success": False, "summary": wording.NOT_UTF8}
    assert emulator.users() == []


# -- the multipart body -------------------------------------------------------


def test_first_file_part_is_used_whatever_the_names(emulator: Emulator, client: httpx.Client) -> None:
    first = csv_bytes("first,Staff,Staff,,,")
    second = csv_bytes("second,Staff,Staff,,,")
    reply = client.post(
        emulator.import_url(),
        data={"comment": "a plain field comes first"},
        files=[("whatever", ("odd name.txt", first)), ("file", ("users.csv", second))],
    )
    assert reply.json()["summary"].startswith("1 user processed. 1 user created.")
    assert [u.username for u in emulator.users()] == ["first"]
    record = emulator.uploads()[-1]
    assert (record.filename, record.sha256) == ("odd name.txt", hashlib.sha256(first).hexdigest())


def test_body_without_file_part_is_rejected(emulator: Emulator, client: httpx.Client) -> None:
    boundary = "b0undary"
    body = f'--{boundary}\r\nContent-Disposition: form-data; name="file"\r\n\r\nx\r\n--{boundary}--\r\n'
    reply = client.post(
        emulator.import_url(),
        content=body.encode(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert reply.status_code == 400
    assert reply.json() == {"success": False, "summary": "No file was uploaded."}


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/csv", b"username,library-group,system-group\n"),
        ("multipart/form-data; boundary=xyz", b"--xyz\r\nContent-Disposition: form-data; name=f; filename=a\r\n\r\nab"),
    ],
    ids=["not-multipart", "truncated-multipart"],
)
def test_unreadable_bodies_are_400(emulator: Emulator, client: httpx.Client, content_type: str, body: bytes) -> None:
    reply = client.post(emulator.import_url(), content=body, headers={"Content-Type": content_type})
    assert reply.status_code == 400
    assert reply.json()["success"] is False
    assert reply.json()["summary"].startswith("No file was uploaded.")
    assert emulator.users() == []


def test_keep_uploads_keeps_the_bytes(tmp_path: Path) -> None:
    content = csv_bytes("k1,Staff,Staff,,,")
    with Emulator(tmp_path, keep_uploads=True) as emu, httpx.Client(verify=verify_for(emu), auth=AUTH) as c:
        upload(c, emu, content)
        (record,) = emu.uploads()
    assert record.stored_file == tmp_path / "uploads" / "000001.csv"
    assert record.stored_file.read_bytes() == content
    assert list((tmp_path / "tmp").iterdir()) == []


def _peak_rss_mib() -> float:
    """This process's peak RSS (client and emulator both); 0 where unknown."""
    try:
        import resource
    except ImportError:  # Windows
        return 0.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def test_large_upload_streams_with_flat_memory(emulator: Emulator, client: httpx.Client) -> None:
    """50 MB sent chunked from a generator: it arrives whole, memory does not follow."""
    boundary = "streamboundary"
    padding = "p" * 1000
    row_count = 50_000
    digest = hashlib.sha256()

    def body() -> Iterator[bytes]:
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="f"; filename="big.csv"\r\n'
            "Content-Type: text/csv\r\n\r\n"
        ).encode()
        header = b"username,library-group,system-group,notes\n"
        digest.update(header)
        yield header
        for start in range(0, row_count, 1000):
            chunk = "".join(f"u{i % 1000},Students,Student,{padding}\n" for i in range(start, start + 1000)).encode()
            digest.update(chunk)
            yield chunk
        yield f"\r\n--{boundary}--\r\n".encode()

    peak_before = _peak_rss_mib()
    reply = client.post(
        emulator.import_url(),
        content=body(),
        timeout=60.0,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    grown_mib = _peak_rss_mib() - peak_before
    assert reply.json() == {
        "success": True,
        "summary": "50000 users processed. 1000 users created. 49000 users updated. 0 users failed.",
    }
    (record,) = emulator.uploads()
    assert record.bytes > 50_000_000
    assert record.sha256 == digest.hexdigest()
    assert grown_mib < 30, f"peak memory grew by {grown_mib:.0f} MiB for a 50 MB upload"


def test_file_upload_with_content_length(emulator: Emulator, client: httpx.Client, tmp_path: Path) -> None:
    path = tmp_path / "users.csv"
    path.write_bytes(
        csv_bytes(
            *(f"f{i},Staff,Staff,,,{'x' * 200}" for i in range(20_000)),
            header="username,library-group,system-group,notes,\n",
        )
    )
    with path.open("rb") as f:
        reply = client.post(emulator.import_url(), files={"upload": f})
    assert reply.json()["summary"].startswith("20000 users processed. 20000 users created.")
    assert emulator.uploads()[0].sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


# -- authentication and routing ------------------------------------------------


@pytest.mark.parametrize(
    "auth",
    [None, ("autoimport", "wrong"), ("nobody", "demo-password")],
    ids=["missing", "wrong-password", "unknown-user"],
)
def test_bad_credentials_are_401(emulator: Emulator, auth: tuple[str, str] | None) -> None:
    with httpx.Client(verify=verify_for(emulator), auth=auth) as c:
        reply = upload(c, emulator, csv_bytes("x,Staff,Staff,,,"))
    assert reply.status_code == 401
    assert reply.json() == UNAUTHORISED
    assert reply.headers["www-authenticate"] == 'Basic realm="Infiniti"'
    assert emulator.users() == []
    assert emulator.uploads()[0].username == (auth[0] if auth else None)


def test_non_admin_is_403(tmp_path: Path) -> None:
    accounts = {"autoimport": ("demo-password", True), "librarian": ("books", False)}
    with Emulator(tmp_path, accounts=accounts) as emu, httpx.Client(verify=verify_for(emu)) as c:
        reply = upload(c, emu, csv_bytes("x,Staff,Staff,,,"), auth=("librarian", "books"))
        assert reply.status_code == 403
        assert reply.json() == {
            "success": False,
            "summary": "Forbidden. The user does not have system administration privileges.",
        }


def test_password_can_change_while_running(emulator: Emulator, client: httpx.Client) -> None:
    content = csv_bytes("x,Staff,Staff,,,")
    assert upload(client, emulator, content).status_code == 200
    emulator.set_password("autoimport", "rotated")
    assert upload(client, emulator, content).status_code == 401
    assert upload(client, emulator, content, auth=("autoimport", "rotated")).status_code == 200
    emulator.set_accounts({"other": ("pw", True)})
    assert upload(client, emulator, content, auth=("other", "pw")).status_code == 200


def test_unknown_path_is_404_and_wrong_method_405(emulator: Emulator, client: httpx.Client) -> None:
    reply = client.post(emulator.base_url + "/api/import/teachers", files={"file": ("u.csv", b"")})
    assert (reply.status_code, reply.json()) == (404, {"success": False, "summary": "Not found."})
    reply = client.get(emulator.import_url())
    assert reply.status_code == 405
    assert reply.headers["allow"] == "POST"
    assert client.get(emulator.base_url + "/").status_code == 404


def test_tenants_are_separate_namespaces(emulator: Emulator, client: httpx.Client) -> None:
    content = csv_bytes("same,Staff,Staff,,,")
    created = "1 user processed. 1 user created. 0 users updated. 0 users failed."
    for tenant in ("school1", "school2", None):
        assert upload(client, emulator, content, endpoint="userGroups", tenant=tenant).json()["summary"] == created
    reply = upload(client, emulator, content, endpoint="users", tenant="school1")
    assert reply.json()["summary"] == "1 user processed. 0 users created. 1 user updated. 0 users failed."
    assert [u.username for u in emulator.users("school2")] == ["same"]
    assert [r.tenant for r in emulator.uploads()] == ["school1", "school2", None, "school1"]
    assert emulator.uploads()[0].path == "/api/import/userGroups"


def test_concurrent_uploads_are_all_counted(emulator: Emulator) -> None:
    def worker(n: int) -> list[str]:
        with httpx.Client(verify=verify_for(emulator), auth=AUTH, timeout=30.0) as c:
            content = csv_bytes("shared,Staff,Staff,,,", f"own{n},Staff,Staff,,,")
            return [upload(c, emulator, content).json()["summary"] for _ in range(5)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        summaries = [s for batch in pool.map(worker, range(8)) for s in batch]
    counts = [tuple(map(int, re.findall(r"\d+", s))) for s in summaries]
    assert len(counts) == 40
    assert sum(c[1] for c in counts) == 9  # "shared" once, each thread's own user once
    assert sum(c[2] for c in counts) == 80 - 9
    assert len(emulator.uploads()) == 40
    assert len(emulator.users()) == 9


def test_silent_client_does_not_stall_others(emulator: Emulator, client: httpx.Client) -> None:
    """The TLS handshake runs in the connection's thread, not the accept loop."""
    with socket.create_connection(("127.0.0.1", emulator.port)) as silent:
        reply = upload(client, emulator, csv_bytes("x,Staff,Staff,,,"), timeout=5.0)
        assert reply.status_code == 200
        started = time.monotonic()
        emulator.stop()  # with the silent connection still open
        assert time.monotonic() - started < 2.0
        assert silent.recv(1) == b""


def test_state_survives_restart_and_ca_is_reused(tmp_path: Path) -> None:
    content = csv_bytes("keep,Staff,Staff,,,")
    summaries, cas = [], []
    for _ in range(2):
        with Emulator(tmp_path) as emu, httpx.Client(verify=verify_for(emu), auth=AUTH) as c:
            summaries.append(upload(c, emu, content).json()["summary"])
            assert emu.ca_file is not None
            cas.append(emu.ca_file.read_bytes())
            seqs = [r.seq for r in emu.uploads()]
    assert summaries[1] == "1 user processed. 0 users created. 1 user updated. 0 users failed."
    assert cas[0] == cas[1]
    assert seqs == [1, 2]


def test_plain_http_mode(tmp_path: Path) -> None:
    with Emulator(tmp_path, tls=False) as emu, httpx.Client(auth=AUTH) as c:
        assert emu.base_url.startswith("http://127.0.0.1:")
        assert emu.ca_file is None
        assert upload(c, emu, csv_bytes("p,Staff,Staff,,,")).json()["success"] is True


# -- faults -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status", "content_type"),
    [
        ("503", 503, "text/plain"),
        ("html502", 502, "text/html"),
        ("429", 429, "text/plain"),
        ("401", 401, "application/json"),
        ("403", 403, "application/json"),
        ("500", 500, "application/json"),
    ],
)
def test_http_faults(emulator: Emulator, client: httpx.Client, fault: str, status: int, content_type: str) -> None:
    content = csv_bytes("f,Staff,Staff,,,")
    emulator.inject(fault, retry_after=7 if fault in ("429", "503") else None)
    reply = upload(client, emulator, content)
    assert reply.status_code == status
    assert reply.headers["content-type"].startswith(content_type)
    if fault in ("429", "503"):
        assert reply.headers["retry-after"] == "7"
    if fault == "401":
        assert reply.json() == UNAUTHORISED
    if fault == "html502":
        assert "<h1>502 Bad Gateway</h1>" in reply.text
    assert emulator.users() == []  # a faulted request imports nothing
    assert upload(client, emulator, content).status_code == 200  # only the next request was faulted
    faulted, normal = emulator.uploads()
    assert (faulted.fault, faulted.status, faulted.sha256) == (fault, status, hashlib.sha256(content).hexdigest())
    assert normal.fault is None


def test_429_has_a_retry_after_by_default(emulator: Emulator, client: httpx.Client) -> None:
    emulator.inject("429", count=2)
    replies = [upload(client, emulator, b"") for _ in range(3)]
    assert [r.status_code for r in replies] == [429, 429, 200]
    assert replies[0].headers["retry-after"].isdigit()


def test_unknown_fault_is_refused(emulator: Emulator) -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        emulator.inject("explode")


def test_reset_fault_breaks_the_connection(emulator: Emulator, client: httpx.Client) -> None:
    emulator.inject("reset")
    with pytest.raises(httpx.TransportError):
        upload(client, emulator, csv_bytes("r,Staff,Staff,,,"))
    (record,) = emulator.uploads()
    assert (record.fault, record.status) == ("reset", None)
    assert upload(client, emulator, b"").status_code == 200


def _caused_by(exc: BaseException | None, kind: type[BaseException]) -> bool:
    """Whether kind is anywhere in exc's chain (httpcore keeps the OS error in args)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, kind):
            return True
        seen.add(id(exc))
        nested = [a for a in exc.args if isinstance(a, BaseException)]
        exc = exc.__cause__ or exc.__context__ or (nested[0] if nested else None)
    return False


def test_reset_fault_is_a_tcp_reset_in_plain_http(tmp_path: Path) -> None:
    with Emulator(tmp_path, tls=False) as emu, httpx.Client(auth=AUTH) as c:
        emu.inject("reset")
        with pytest.raises(httpx.ReadError) as caught:
            upload(c, emu, b"")
        assert _caused_by(caught.value, ConnectionResetError)


def test_hang_fault_times_out_the_client_and_stop_is_prompt(emulator: Emulator, client: httpx.Client) -> None:
    emulator.inject("hang")
    with pytest.raises(httpx.ReadTimeout):
        upload(client, emulator, b"", timeout=httpx.Timeout(5.0, read=0.3))
    assert emulator.uploads()[0].fault == "hang"
    started = time.monotonic()
    emulator.stop()
    assert time.monotonic() - started < 2.0


def test_hang_fault_ends_after_hang_seconds(emulator: Emulator, client: httpx.Client) -> None:
    emulator.inject("hang", hang_seconds=0.2)
    with pytest.raises(httpx.RemoteProtocolError):
        upload(client, emulator, b"")


def test_stop_interrupts_a_hang_in_progress(emulator: Emulator) -> None:
    emulator.inject("hang")
    errors: list[BaseException] = []

    def post() -> None:
        with httpx.Client(verify=verify_for(emulator), auth=AUTH, timeout=30.0) as c:
            try:
                upload(c, emulator, b"")
            except httpx.TransportError as exc:
                errors.append(exc)

    poster = threading.Thread(target=post)
    poster.start()
    wait_until(lambda: emulator.uploads())  # the hang has begun
    started = time.monotonic()
    emulator.stop()
    poster.join(10)
    assert time.monotonic() - started < 2.0
    assert len(errors) == 1


# -- command line ---------------------------------------------------------------


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    emulator_cli.configure_parser(parser)
    return parser.parse_args(list(argv))


def test_cli_serves_until_stopped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = _parse(
        "--port",
        "0",
        "--state-dir",
        str(tmp_path / "state"),
        "--ca-out",
        str(tmp_path / "ca.pem"),
        "--account",
        "robot:s3cr:et:admin",
        "--library-group",
        "Year 13",
    )
    stop = threading.Event()
    result: list[int] = []
    runner = threading.Thread(target=lambda: result.append(emulator_cli.command(args, stop)))
    runner.start()
    try:
        out = io.StringIO()

        def banner_done() -> bool:
            out.write(capsys.readouterr().out)
            return "Press Ctrl+C" in out.getvalue()

        wait_until(banner_done)
    finally:
        stop.set()
        runner.join(10)
    text = out.getvalue()
    assert result == [0]
    assert "s3cr:et" not in text
    found = re.search(r"listening on (https://127\.0\.0\.1:\d+)", text)
    assert found is not None
    url = found.group(1)
    assert f"Import URL (users): {url}/api/import/users" in text
    assert f"{url}/api/import/userGroups?tenantId=school1" in text
    assert f"curl --cacert {tmp_path / 'ca.pem'} -u robot:<password> -F file=@users.csv" in text
    assert (tmp_path / "ca.pem").is_file()


def test_cli_upload_while_running(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = _parse("--port", "0", "--state-dir", str(tmp_path), "--library-group", "Year 13")
    stop = threading.Event()
    runner = threading.Thread(target=emulator_cli.command, args=(args, stop))
    runner.start()
    try:
        out = io.StringIO()

        def banner() -> str:
            out.write(capsys.readouterr().out)
            found = re.search(r"Import URL \(users\): (\S+)", out.getvalue())
            return found.group(1) if found else ""

        url = wait_until(banner)
        ctx = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
        reply = httpx.post(url, auth=AUTH, verify=ctx, files={"f": ("u.csv", csv_bytes("y,Year 13,Student,,,"))})
        assert reply.json()["success"] is True
    finally:
        stop.set()
        runner.join(10)


def test_cli_port_in_use_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = _parse("--port", str(port), "--state-dir", str(tmp_path))
        assert emulator_cli.command(args, threading.Event()) == 2
    err = capsys.readouterr().err
    assert err == f"emulator: cannot listen on 127.0.0.1:{port}: address already in use\n"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a:b", ("a", "b", True)),
        ("a:b:user", ("a", "b", False)),
        ("a:b:admin", ("a", "b", True)),
        ("a:b:c", ("a", "b:c", True)),
    ],
)
def test_account_option(value: str, expected: tuple[str, str, bool]) -> None:
    assert emulator_cli.parse_account(value) == expected


def test_account_option_needs_a_password() -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        emulator_cli.parse_account("justuser")
