"""One process per inbox, under a Windows Python (DESIGN 9; dropbox_sync/pipeline/inboxlock.py).

On Windows the lock is ``msvcrt.locking`` on a file in the state dir (through
``filelock``). This proves, with separate Windows processes, that a second one
cannot take it, learns from the note beside it which process holds it, and that
Windows lets go of the lock when the holder is killed (TerminateProcess: no
clean release), so nothing stale ever keeps an inbox from being worked.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from dropbox_sync.pipeline.inboxlock import InboxLock

HOLDER = """
import sys
from pathlib import Path
from dropbox_sync.pipeline.inboxlock import InboxLock
lock = InboxLock(Path(sys.argv[1]), "inbox", Path(sys.argv[2]))
assert lock.acquire()
print("held", flush=True)
sys.stdin.read()
"""


def test_a_second_process_is_refused_told_who_holds_it_and_gets_it_once_the_holder_is_killed(tmp_path: Path) -> None:
    state, folder = tmp_path / "state", tmp_path / "inbox"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(state), str(folder)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        lock = InboxLock(state, "inbox", folder)
        assert not lock.acquire(), "a second process must not get the lock"
        who = lock.held_elsewhere()
        assert who is not None and who.pid == holder.pid, who
        holder.kill()  # TerminateProcess
        holder.wait(60)
        assert lock.acquire(), "Windows releases the lock of a killed process"
        assert lock.holder() is not None and lock.holder().pid != holder.pid
        lock.release()
        assert lock.held_elsewhere() is None
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.communicate()
