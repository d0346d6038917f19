"""The result's temporary, made while the server imports the file, held by another program.

The pipeline makes the result's temporary in sending/ once the request is out
(transaction._post, workfiles.Temporary) and removes it when the reply writes
no result. On Windows an antivirus or indexer opens a new file to look at it;
while it does, deleting the file fails with a sharing violation. That must
not replace the reply's outcome (here a 401: the inbox holds) with an error
out of the pass: the temporary is left, a dot-name ending .tmp that is never
taken for a file, and the next start sweeps it. The Linux twin (chattr +i):
tests/test_attack_perf.py::test_a_temporary_the_os_will_not_remove_never_turns_a_reply_into_an_unexpected_error.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Self

from winhelpers import held_open, wait_until
from winpipeline import LoopbackServer, csv_bytes, good_row, read_request, write_config

from dropbox_sync import config
from dropbox_sync.pipeline.worker import InboxWorker

REFUSED = (
    b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
)


class _Refuser:
    """One connection: read the request in full, wait until ``go`` is set, answer 401."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.go = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="refuser")

    def _serve(self) -> None:
        connection, _ = self.listener.accept()
        with connection:
            connection.settimeout(60)
            read_request(connection)
            self.go.wait(60)
            connection.sendall(REFUSED)
        self.listener.close()  # the next attempt is refused at connect

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.go.set()
        self.thread.join(60)
        self.listener.close()


def temporaries(folder: Path) -> list[Path]:
    """Our dot-name temporaries in ``folder`` (none while it does not exist yet)."""
    names = folder.iterdir() if folder.is_dir() else ()
    return [p for p in names if p.name.startswith(".") and p.name.endswith(".tmp")]


def test_a_held_result_temporary_never_replaces_the_reply(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    with _Refuser() as server:
        path = write_config(
            tmp_path / "conf",
            LoopbackServer(server.listener.getsockname()[1]),
            inbox=inbox,
            ca_bundle="",
            settle_seconds=0,
        )
        cfg = config.resolve_secrets(config.load(path))
        (inbox / "a.csv").write_bytes(csv_bytes(good_row("a")))
        worker = InboxWorker(cfg.inboxes[0])
        outcome: list[object] = []

        def one_pass() -> None:
            try:
                outcome.append(worker.cycle(threading.Event()))
            except Exception as exc:  # noqa: BLE001 - what the test looks for
                outcome.append(exc)

        runner = threading.Thread(target=one_pass, name="one-pass")
        runner.start()
        try:
            (temporary,) = wait_until(lambda: temporaries(inbox / "sending"), timeout=60)
            with held_open(temporary) as holder:  # another Windows process, as an antivirus would
                server.go.set()
                runner.join(60)
                assert not isinstance(outcome[0], Exception), repr(outcome[0])
                assert worker.hold_reason is not None and "401" in worker.hold_reason, worker.hold_reason
                assert temporary.exists()  # left while it is held
                holder.release()
        finally:
            server.go.set()
            runner.join(60)
            worker.close()
    again = InboxWorker(cfg.inboxes[0])  # the next start: its first pass sweeps it
    try:
        again.cycle(threading.Event())
    finally:
        again.close()
    assert not temporaries(inbox / "sending")
    assert [p.name for p in (inbox / "sending").iterdir() if p.name.endswith("a.csv")], "the file waits, claimed"
