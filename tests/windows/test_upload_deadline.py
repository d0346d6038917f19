"""The upload deadline under Windows sockets: a server trickling its reply is cut off.

client.py ends a request past its deadline by shutting its socket down from a
timer thread while another thread is blocked reading it. That is well defined
on Linux; this proves it under a Windows Python (Winsock as Wine provides it).
The Linux twin, with more cases: tests/test_reply_bounds.py.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Self

import pytest
from winhelpers import wait_until
from winpipeline import LoopbackServer, csv_bytes, good_row, read_request, write_config

from dropbox_sync import config
from dropbox_sync.errors import TransientError
from dropbox_sync.pipeline.client import ImportClient

REPLY_BODY = 5_000  # bytes, one every 20 ms: 100 s if nothing cut it off


class _Trickler:
    """One connection: read the request, answer 200 with headers at once, then a byte at a time."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.sent = -1  # body bytes sent before the client went away; -1 while running
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="trickler")

    def _serve(self) -> None:
        connection, _ = self.listener.accept()
        sent = 0
        with connection:
            connection.settimeout(30)
            read_request(connection)
            try:
                connection.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % REPLY_BODY
                )
                while sent < REPLY_BODY and not self.stop.wait(0.02):  # the pause IS the behaviour
                    connection.sendall(b" ")
                    sent += 1
            except OSError:
                pass  # the client shut the connection: what this test wants
        self.sent = sent

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        self.thread.join(60)
        self.listener.close()


def test_a_trickled_reply_is_cut_off_at_the_deadline(tmp_path: Path) -> None:
    with _Trickler() as server:
        path = write_config(
            tmp_path / "conf",
            LoopbackServer(server.listener.getsockname()[1]),
            inbox=tmp_path / "inbox",
            timeout=1,
            connect_timeout=1,
            ca_bundle="",
        )
        upload = tmp_path / "inbox" / "a.csv"
        upload.write_bytes(csv_bytes(good_row("a")))
        with ImportClient(config.load(path).inboxes[0]) as client, pytest.raises(TransientError) as caught:
            client.upload(upload)
        wait_until(lambda: server.sent >= 0, timeout=60)
    assert "did not finish the upload and its reply within 2 s" in str(caught.value)
    assert server.sent < REPLY_BODY
