"""Benchmark 5, scale: many inboxes in one process, and 10,000 files dropped at once.

(i)  ``dropbox-sync run`` with 100 inboxes (native observers); once all are
     watched, 10 files are dropped into each. Goal: all 1,000 processed, peak RSS
     (VmHWM) <= 150 MB.
(ii) ``dropbox-sync run`` with one inbox; 10,000 files are written into it as
     fast as the benchmark can. To be sure the kernel's inotify queue
     (max_queued_events, 16,384 by default; about 3 events per file) overflows,
     the product is paused with SIGSTOP while the files are written and resumed
     with SIGCONT after (``--no-pause`` to let it read events as they come).
     The product must still process every one (its scans, not events, are the
     truth). Goal: all 10,000 processed, none left or failed; reports how long
     it took and uploads/s.

    .venv/bin/python bench/bench_scale.py [--inboxes 100] [--per-inbox 10] [--burst 10000]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

import common as c

SETTLE = 0.5


def drop(folder: Path, count: int, tag: str) -> None:
    """Write ``count`` CSVs quickly (raw os calls, no buffering layers)."""
    for number in range(count):
        data = c.csv_text(number, 20, tag).encode("utf-8")
        fd = os.open(folder / f"{tag}{number:05d}.csv", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)


def pending(folder: Path) -> int:
    with os.scandir(folder) as entries:
        return sum(1 for e in entries if e.name.endswith(".csv"))


def many_inboxes(report: c.Report, work: Path, inboxes: int, per_inbox: int, timeout: float) -> list[str]:
    base = work / "many"
    emu = c.start_emulator(base)
    folders = [base / f"in{n:03d}" for n in range(inboxes)]
    config = c.write_config(base / "config.toml", emu, folders, settle_seconds=SETTLE, observer="native")
    running = c.start_run(config, base / "run.log", inboxes, timeout=120)
    problems: list[str] = []
    try:
        rss_ready = c.peak_rss_kb(running.proc.pid)
        threads = len(os.listdir(f"/proc/{running.proc.pid}/task"))
        started = time.perf_counter()
        for number, folder in enumerate(folders):
            drop(folder, per_inbox, f"i{number:03d}f")
        total = inboxes * per_inbox
        done = c.wait_for(lambda: sum(c.archived(f, "processed") for f in folders) >= total, timeout, 0.1)
        seconds = time.perf_counter() - started
        processed = sum(c.archived(f, "processed") for f in folders)
        failed = sum(c.archived(f, "failed") for f in folders)
        rss = c.peak_rss_kb(running.proc.pid)
        report.add(
            f"(i) {inboxes} inboxes x {per_inbox} files: processed",
            f"all {total}",
            f"{processed} (failed {failed})",
            processed == total and failed == 0,
        )
        report.add(
            f"(i) peak RSS (VmHWM), {threads} threads when ready",
            "<= 150 MB",
            f"{rss / 1024:.1f} MB (at ready {rss_ready / 1024:.1f} MB)",
            rss <= 150 * 1024,
        )
        if done:
            report.add(
                "(i) first drop -> all archived", "-", f"{seconds:.1f} s ({total / seconds:.0f} uploads/s)", None
            )
        else:
            problems.append(f"(i) only {processed}/{total} processed after {timeout:.0f} s")
    finally:
        code = running.stop()
        emu.stop()
        if code != 0:
            problems.append(f"(i) run exited with {code} on SIGTERM")
    return problems


def burst(report: c.Report, work: Path, count: int, timeout: float, pause: bool) -> list[str]:
    base = work / "burst"
    emu = c.start_emulator(base)
    inbox = base / "inbox"
    config = c.write_config(
        base / "config.toml", emu, [inbox], settle_seconds=SETTLE, observer="native", rescan_seconds=60
    )
    running = c.start_run(config, base / "run.log", 1)
    problems: list[str] = []
    try:
        if pause:
            os.kill(running.proc.pid, signal.SIGSTOP)  # its inotify queue fills while it cannot read
        try:
            started = time.perf_counter()
            drop(inbox, count, "b")
            written = time.perf_counter() - started
        finally:
            if pause:
                os.kill(running.proc.pid, signal.SIGCONT)
        first = c.wait_for(lambda: c.archived(inbox, "processed") > 0, timeout, 0.05)
        first_at = time.perf_counter() - started
        done = c.wait_for(lambda: c.archived(inbox, "processed") >= count, timeout, 0.2)
        seconds = time.perf_counter() - started
        rss = c.peak_rss_kb(running.proc.pid)
        processed, failed = c.archived(inbox, "processed"), c.archived(inbox, "failed")
        left = pending(inbox) + pending(inbox / "sending") if (inbox / "sending").is_dir() else pending(inbox)
        uploads = emu.upload_count()
        overflow = "overflow" in running.log().lower()
        report.add(
            f"(ii) {count} files at once: processed",
            f"all {count}",
            f"{processed} (failed {failed}, left {left}, uploads {uploads})",
            processed == count and failed == 0 and left == 0 and uploads == count,
        )
        report.add(
            "(ii) inotify queue overflowed (logged by watchdog)",
            "-",
            f"{'yes' if overflow else 'no'} (max_queued_events "
            f"{Path('/proc/sys/fs/inotify/max_queued_events').read_text().strip()})",
            None,
        )
        report.add(
            "(ii) writing the files took" + (" (product paused meanwhile)" if pause else ""),
            "-",
            f"{written:.1f} s",
            None,
        )
        if first and done:
            rate = (count - 1) / max(seconds - first_at, 1e-9)
            report.add(
                "(ii) first write -> all archived",
                "-",
                f"{seconds:.1f} s (first archived at {first_at:.1f} s; {rate:.0f} uploads/s after)",
                None,
            )
        else:
            problems.append(f"(ii) only {processed}/{count} processed after {timeout:.0f} s")
        report.add("(ii) peak RSS (VmHWM)", "-", f"{rss / 1024:.1f} MB", None)
    finally:
        code = running.stop()
        emu.stop()
        if code != 0:
            problems.append(f"(ii) run exited with {code} on SIGTERM")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--inboxes", type=int, default=100)
    parser.add_argument("--per-inbox", type=int, default=10)
    parser.add_argument("--burst", type=int, default=10_000)
    parser.add_argument("--timeout", type=float, default=200.0, help="per part, seconds")
    parser.add_argument(
        "--no-pause",
        dest="pause",
        action="store_false",
        help="do not SIGSTOP the product while the burst is written (overflow then unlikely)",
    )
    args = parser.parse_args()
    with c.bench("5 scale", 120 + 2 * (args.timeout + 60)) as (report, work):
        problems = many_inboxes(report, work, args.inboxes, args.per_inbox, args.timeout)
        problems += burst(report, work, args.burst, args.timeout, args.pause)
        report.add("clean stop, nothing missed", "yes", "yes" if not problems else "NO", not problems)
        for problem in problems:
            report.note(problem)
        report.note(f"settle_seconds = {SETTLE}, rescan_seconds = 60, native observers, 20-row files")
        return c.finish(report)


if __name__ == "__main__":
    sys.exit(main())
