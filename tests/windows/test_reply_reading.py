"""Reading a hostile reply in a worker thread under Windows, whose threads get smaller stacks.

json's C scanner recurses once per nesting level; a reply nested 100,000 deep
must end in RecursionError (caught by reply.read_reply), not a stack overflow
that kills the service (which would restart and send the file again). The
Linux twin: tests/test_replies.py.
"""

from __future__ import annotations

import threading

from dropbox_sync.pipeline.reply import read_reply

DEEP = 100_000


def read_in_a_thread(body: bytes):
    got = []
    thread = threading.Thread(target=lambda: got.append(read_reply(200, body)), name="reader")
    thread.start()
    thread.join(120)
    assert not thread.is_alive()
    return got[0]


def test_a_reply_nested_100000_deep_is_read_in_a_worker_thread() -> None:
    whole = read_in_a_thread(b"[" * DEEP + b"]" * DEEP)
    assert whole.success is None and whole.problem == "JSON nested too deep to read"
    inside = read_in_a_thread(
        b'{"success": true, "summary": "ok", "details": ' + b'{"a":' * DEEP + b"1" + b"}" * DEEP + b"}"
    )
    assert inside.success is True and inside.summary == "ok"
    assert inside.problem == "not complete JSON; only its leading members were read"
