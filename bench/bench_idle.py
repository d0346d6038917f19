"""Benchmark 4, idle cost: CPU used by ``dropbox-sync run`` watching 5 empty inboxes.

Reads utime + stime of the process (all threads) from /proc/PID/stat before and
after a quiet window (default 60 s), after a short warm-up. Configs use the
defaults (rescan_seconds = 60) except the observer kind. No server is contacted
while idle, so none is started: the URL points at a closed loopback port.

Goal: < 0.5 % of one core with native observers. ``--polling`` also measures
the polling observer (information only; it costs another window).

    .venv/bin/python bench/bench_idle.py [--seconds 60] [--inboxes 5] [--polling]
"""

from __future__ import annotations

import argparse
import sys
import time

import common as c


def idle_cpu(work: c.Path, kind: str, inboxes: int, seconds: float) -> tuple[float, int, str | None]:
    base = work / kind
    folders = [base / f"inbox{n}" for n in range(inboxes)]
    fake = c.EmulatorProcess(base, None, "https://127.0.0.1:9", base / "none.pem")  # type: ignore[arg-type]
    config = c.write_config(
        base / "config.toml",
        fake,
        folders,
        ca_bundle="",
        observer=kind,
        settle_seconds=5,
        rescan_seconds=60,
        poll_seconds=2,
    )
    running = c.start_run(config, base / "run.log", inboxes)
    try:
        time.sleep(3)  # start-up scans and the first supervision pass are not idling
        before = c.cpu_ticks(running.proc.pid)
        started = time.perf_counter()
        time.sleep(seconds)
        ticks = c.cpu_ticks(running.proc.pid) - before
        elapsed = time.perf_counter() - started
        rss = c.peak_rss_kb(running.proc.pid)
    finally:
        code = running.stop()
    percent = 100.0 * ticks / c.CLK_TCK / elapsed
    problem = None if code == 0 else f"{kind}: run exited with {code} on SIGTERM"
    return percent, rss, problem


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--inboxes", type=int, default=5)
    parser.add_argument("--polling", action="store_true", help="also measure the polling observer")
    args = parser.parse_args()
    kinds = ["native", "polling"] if args.polling else ["native"]
    with c.bench("4 idle", 60 + len(kinds) * (args.seconds + 40)) as (report, work):
        problems = []
        for kind in kinds:
            percent, rss, problem = idle_cpu(work, kind, args.inboxes, args.seconds)
            goal = "< 0.5 %" if kind == "native" else "-"
            report.add(
                f"{kind}: CPU over {args.seconds:.0f} s, {args.inboxes} idle inboxes",
                goal,
                f"{percent:.3f} % of one core",
                percent < 0.5 if kind == "native" else None,
            )
            report.add(f"{kind}: peak RSS", "-", f"{rss / 1024:.1f} MB", None)
            if problem:
                problems.append(problem)
        report.add("stopped cleanly on SIGTERM", "yes", "yes" if not problems else "NO", not problems)
        for problem in problems:
            report.note(problem)
        report.note(f"CPU from /proc/PID/stat utime+stime (clock tick {1000 / c.CLK_TCK:.0f} ms)")
        return c.finish(report)


if __name__ == "__main__":
    sys.exit(main())
