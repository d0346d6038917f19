"""Bounds on talking to a server: how much of a reply is read, how long a request may take,
and which TLS failures hold an inbox. Small misbehaving servers on 127.0.0.1 do what the
emulator cannot: trickle, flood, drop the handshake."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from dropbox_sync import config
from dropbox_sync.errors import TransientError
from dropbox_sync.pipeline.client import ImportClient, request_deadline
from dropbox_sync.pipeline.reply import MAX_REPLY_BYTES
from dropbox_sync.pipeline.runner import Pipeline
from dropbox_sync.pipeline.worker import InboxWorker
from tests.badservers import HandshakeDropper, Scripted, ScriptedServer
from tests.helpers import wait_until
from tests.support import (
    archived,
    good_csv,
    result_of,
    write_config,
)

CLAIMED = 256 * 1024 * 1024  # what the flooding server says it will send


def flood():
    yield b'{"success": true, "summary": "40000 users processed.", "details": {'
    row = b'"1": "User Updated", ' * 3000
    for _ in range(CLAIMED // len(row)):
        yield row


def inbox_config(tmp_path: Path, server, **settings):
    config_path = write_config(tmp_path, server, settle_seconds=0, retry_first_seconds=0.01, **settings)
    return config.load(config_path).inboxes[0]


def drop_file(tmp_path: Path) -> Path:
    path = tmp_path / "inbox" / "a.csv"
    path.write_text(good_csv("a"), encoding="utf-8")
    return path


def test_a_flood_of_a_reply_is_read_only_up_to_the_cap_and_the_result_says_so(tmp_path):
    with ScriptedServer(Scripted(body=flood, length=CLAIMED)) as server:
        config_path = write_config(tmp_path, server, settle_seconds=0)
        drop_file(tmp_path)
        result = Pipeline(config.load(config_path)).once(threading.Event())
        wait_until(lambda: server.stats.bytes_sent)  # the server's side of the story is complete
    assert not result.held
    [done] = archived(tmp_path / "inbox", "processed")
    saved = result_of(done)
    assert saved["success"] is True and saved["summary"] == "40000 users processed."
    ours = saved["dropbox_sync"]
    assert ours["reply_truncated"] is True and ours["reply_bytes_read"] == MAX_REPLY_BYTES
    assert "longer than 4 MiB; the rest was not read" in ours["reply_problem"]
    assert server.stats.requests == 1, "the verdict was read: no second upload"
    # The client stopped reading: the server could not push the rest (socket buffers hold a few MiB).
    assert server.stats.cut_short == 1 and server.stats.bytes_sent[0] < 64 * 1024 * 1024
    assert archive_size(done) < 2 * MAX_REPLY_BYTES


def archive_size(done: Path) -> int:
    return done.with_name(done.name + ".result.json").stat().st_size


TRICKLES = [
    pytest.param(
        Scripted(body=b'{"success": true, "summary": "' + b"x" * 10_000 + b'"}', trickle=0.02),
        id="body-one-byte-at-a-time",
    ),
    pytest.param(
        Scripted(headers=(("X-Padding", "y" * 10_000),), body=b"{}", trickle=0.02, trickle_headers=True),
        id="headers-one-byte-at-a-time",
    ),
]


@pytest.mark.parametrize("reply", TRICKLES)
def test_a_trickling_server_cannot_keep_a_request_open_past_its_deadline(tmp_path, reply):
    # Each byte comes well within the 1 s read timeout, so only the overall deadline
    # (connect_timeout + timeout + the file at 32 KiB/s, about 2 s here) can end it;
    # the whole reply would take over 200 s.
    with ScriptedServer(reply) as server:
        inbox = inbox_config(tmp_path, server, timeout=1, connect_timeout=1)
        with ImportClient(inbox) as client, pytest.raises(TransientError) as caught:
            client.upload(drop_file(tmp_path))
        wait_until(lambda: server.stats.bytes_sent, timeout=30)
    assert "did not finish the upload and its reply within 2 s" in str(caught.value)
    assert caught.value.read_timeout, "counts towards 'raise timeout' like a read timeout"
    assert server.stats.bytes_sent[0] < 10_000, "cut off long before the end of the reply"


def test_once_ends_against_a_server_that_trickles_for_ever(tmp_path):
    with ScriptedServer(TRICKLES[0].values[0]) as server:
        config_path = write_config(
            tmp_path,
            server,
            settle_seconds=0,
            retry_first_seconds=0.01,
            timeout=1,
            connect_timeout=1,
            once_retry_seconds=600,
        )
        drop_file(tmp_path)
        result = Pipeline(config.load(config_path)).once(threading.Event())
    assert "raise 'timeout'" in result.held["inbox"]
    assert server.stats.requests == 3, "three deadlines in a row hold the inbox"
    assert len(list((tmp_path / "inbox" / "sending").iterdir())) == 1, "the file waits, claimed"


@pytest.mark.parametrize("how", ["eof", "reset"])
def test_a_connection_dropped_mid_handshake_is_retried_not_held(tmp_path, emu, how):
    # A load balancer without a backend, or a server restarting: the TCP connection is
    # accepted, the ClientHello read, then the connection closes (SSLEOFError) or is reset.
    with HandshakeDropper(("127.0.0.1", emu.port), count=2, how=how) as dropper:
        url = f"https://127.0.0.1:{dropper.port}/api/import/users"
        config_path = write_config(tmp_path, emu, url=url, settle_seconds=0, retry_first_seconds=0.01)
        drop_file(tmp_path)
        result = Pipeline(config.load(config_path)).once(threading.Event())
    assert not result.held, result.held
    assert dropper.dropped == 2
    [retry, *_] = [r for r in result.reports if r.outcome.value == "retry"]
    assert "certificate" not in retry.summary and "ca_bundle" not in retry.summary
    # A FIN mid-handshake is an SSLEOFError; an RST may surface as SSL or as a plain reset.
    assert (
        "failed before a reply" if how == "eof" else "reset"
    ) in retry.summary.lower() or "failed before a reply" in retry.summary
    assert len(archived(tmp_path / "inbox", "processed")) == 1
    assert [u.filename for u in emu.uploads()] == ["a.csv"]


def test_a_dropped_handshake_is_a_transient_error_naming_tls(tmp_path, emu):
    with HandshakeDropper(("127.0.0.1", emu.port), count=1) as dropper:
        inbox = inbox_config(tmp_path, emu, url=f"https://127.0.0.1:{dropper.port}/api/import/users")
        with ImportClient(inbox) as client, pytest.raises(TransientError) as caught:
            client.upload(drop_file(tmp_path))
    assert "TLS connection to" in str(caught.value) and "SSLEOFError" in str(caught.value)


def test_a_long_upload_is_not_called_wedged_before_its_deadline(tmp_path):
    # The service watchdog asks wedged(); while a file is on the wire the worker may be
    # silent for as long as that upload's deadline, which grows with the file's size.
    now = [0.0]
    hold = Scripted(body=b'{"success": true, "summary": "ok"}' + b" " * 1000, trickle=0.5)
    with ScriptedServer(hold) as server:
        inbox = inbox_config(tmp_path, server, timeout=60, connect_timeout=5)
        big = tmp_path / "inbox" / "big.csv"
        big.write_text(good_csv(*(f"user{n:07d}" for n in range(40_000))), encoding="utf-8")
        worker = InboxWorker(inbox, clock=lambda: now[0])
        stop = threading.Event()

        def work() -> None:
            while not stop.is_set():
                stop.wait(min(worker.cycle(stop), 0.05))

        thread = threading.Thread(target=work, name="test-upload")
        thread.start()
        try:
            wait_until(lambda: server.stats.requests == 1)  # the file is on the wire
            assert worker.snapshot().uploading == "big.csv"
            deadline = request_deadline(inbox, big_size(tmp_path))
            assert deadline > 65 + 60, "the file's size adds to the deadline"
            now[0] = 3 * inbox.rescan_seconds + 60 + deadline - 1
            assert not worker.wedged()
            now[0] = 3 * inbox.rescan_seconds + 60 + deadline + 1
            assert worker.wedged()
        finally:
            stop.set()
            server.stopping.set()  # the trickle ends; the upload fails and the pass returns
            thread.join(30)
            worker.close()
    assert not thread.is_alive()


def big_size(tmp_path: Path) -> int:
    # The claimed file (the result's temporary, a dot-name, is made while the server works).
    [claimed] = (p for p in (tmp_path / "inbox" / "sending").iterdir() if not p.name.startswith("."))
    return claimed.stat().st_size


class AnswersOnceHandedOver(ScriptedServer):
    """Reads the request, then answers only once the client said the request was out
    (bounded: a client that waits for the reply first gets a failure after 30 s)."""

    def __init__(self) -> None:
        super().__init__(Scripted())
        self.handed_over = threading.Event()

    def next_reply(self) -> Scripted:
        first = self.handed_over.wait(30)
        return Scripted(body=b'{"success": %s, "summary": "ok"}' % (b"true" if first else b"false"))


def test_the_server_s_time_is_handed_to_the_pipeline_before_the_reply_is_read(tmp_path):
    """``ImportClient.upload``'s ``on_sent`` runs on the uploading thread once the whole request
    is out and before the reply is read: the pipeline does the roster memory's bookkeeping
    there, while the server imports (``transaction.FileTransaction._post``)."""
    with AnswersOnceHandedOver() as server:
        inbox = inbox_config(tmp_path, server)
        uploading = threading.current_thread()
        calls = []

        def on_sent() -> None:
            calls.append(threading.current_thread())
            server.handed_over.set()

        with ImportClient(inbox) as client:
            reply = client.upload(drop_file(tmp_path), on_sent=on_sent)
    assert reply.success, "the server answered only after on_sent"
    assert calls == [uploading], "once, on the uploading thread"
