"""Benchmark 2, latency: writer closes a file -> the upload arrives at the server.

``dropbox-sync run`` with settle_seconds = 1 watches one inbox; the benchmark
writes one CSV at a time, notes the moment it closed it, and reads when the
emulator received the request (its ``received_at``, same machine clock, ms
resolution). Overhead = arrival - close - settle_seconds. Then again with the
polling observer (poll_seconds = 1).

Goals: median overhead <= 100 ms (native); <= poll_seconds + 100 ms (polling).

    .venv/bin/python bench/bench_latency.py [--samples 15] [--settle 1] [--poll 1]
"""

from __future__ import annotations

import argparse
import random
import sys
import time

import common as c

SAMPLE_TIMEOUT = 15.0


def measure(
    work: c.Path, emu: c.EmulatorProcess, kind: str, samples: int, settle: float, poll: float
) -> tuple[list[float], list[str]]:
    base = work / kind
    inbox = base / "inbox"
    config = c.write_config(
        base / "config.toml", emu, [inbox], settle_seconds=settle, observer=kind, poll_seconds=poll, rescan_seconds=60
    )
    running = c.start_run(config, base / "run.log", 1)
    overheads: list[float] = []
    problems: list[str] = []
    rng = random.Random(7)
    try:
        for number in range(samples):
            before = emu.upload_count()
            path = inbox / f"{kind}{number:03d}.csv"
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(c.csv_text(number, 20, tag=kind[0]))
            closed = time.time()
            arrived = c.wait_for(lambda: emu.upload_count() > before, SAMPLE_TIMEOUT, 0.005)  # noqa: B023 (waited for here)
            if not arrived:
                problems.append(f"{kind}: sample {number} not uploaded within {SAMPLE_TIMEOUT:.0f} s")
                break
            record = emu.uploads()[before]
            overheads.append(c.iso_to_epoch(record["received_at"]) - closed - settle)
            # Let it be archived before the next file, then a random gap so samples
            # do not all fall at the same phase of the poll interval.
            c.wait_for(lambda: c.archived(inbox, "processed") > number, SAMPLE_TIMEOUT, 0.01)  # noqa: B023 (waited for here)
            time.sleep(0.2 + rng.random() * poll)
    finally:
        code = running.stop()
        if code not in (0, None):
            problems.append(f"{kind}: run exited with {code} on SIGTERM")
    return overheads, problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=15)
    parser.add_argument("--settle", type=float, default=1.0)
    parser.add_argument("--poll", type=float, default=1.0)
    args = parser.parse_args()
    deadline = 60 + 2 * args.samples * (args.settle + 2 * args.poll + 2)
    with c.bench("2 latency", deadline) as (report, work):
        emu = c.start_emulator(work)
        problems: list[str] = []
        for kind, goal in (("native", 0.100), ("polling", args.poll + 0.100)):
            overheads, trouble = measure(work, emu, kind, args.samples, args.settle, args.poll)
            problems += trouble
            if not overheads:
                report.add(f"{kind}: median overhead beyond settle", f"<= {goal * 1000:.0f} ms", "no samples", False)
                continue
            med = c.median(overheads)
            report.add(
                f"{kind}: median overhead beyond settle ({len(overheads)} samples)",
                f"<= {goal * 1000:.0f} ms",
                f"{med * 1000:.0f} ms",
                med <= goal,
            )
            report.add(
                f"{kind}: min / max overhead",
                "-",
                f"{min(overheads) * 1000:.0f} / {max(overheads) * 1000:.0f} ms",
                None,
            )
        report.add("every sample uploaded", "all", "all" if not problems else "NO", not problems)
        for problem in problems:
            report.note(problem)
        report.note(
            f"settle_seconds = {args.settle:g}, poll_seconds = {args.poll:g}, rescan_seconds = 60; "
            "arrival = emulator's received_at (ms resolution), close = writer's time.time()"
        )
        return c.finish(report)


if __name__ == "__main__":
    sys.exit(main())
