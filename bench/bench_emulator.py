"""Benchmark 7, the emulator's own ceiling: is the server what limits benchmark 1?

Tiny uploads (a header and one row) from 1, 2 and 4 concurrent keep-alive
clients, each its own process (bench/ceiling_client.py), against one emulator
over TLS. Rate = all requests / (last client's end - first client's start).
For comparison, in the same run: ``dropbox-sync once`` on 200 of benchmark 1's
files (20 rows each) against a fresh emulator.

Goal: the emulator's best rate >= 2x the product's files/s, so the server is
not what limits benchmark 1.

    .venv/bin/python bench/bench_emulator.py [--requests 400] [--clients 1,2,4]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time

import common as c


def product_rate(work: c.Path, files: int) -> tuple[float, str | None]:
    base = work / "once"
    emu = c.start_emulator(base)
    try:
        inbox = base / "inbox"
        c.write_csvs(inbox, files)
        config = c.write_config(base / "config.toml", emu, [inbox], settle_seconds=0.1)
        done = c.run_measured(c.product_cmd("--config", str(config), "once"), timeout=120)
        ok = done.returncode == 0 and c.archived(inbox, "processed") == files
        return files / done.seconds, None if ok else f"once: exit {done.returncode}"
    finally:
        emu.stop()


def emulator_rate(
    work: c.Path, emu: c.EmulatorProcess, clients: int, per_client: int, tiny: c.Path
) -> tuple[float, str | None]:
    outs = [work / f"c{clients}-{n}.json" for n in range(clients)]
    procs = []
    for out in outs:
        with open(out, "wb") as handle:
            procs.append(
                c.spawn(
                    [
                        c.PYTHON,
                        str(c.BENCH_DIR / "ceiling_client.py"),
                        emu.users_url,
                        str(emu.ca_file),
                        c.USER,
                        c.PASSWORD,
                        str(tiny),
                        "--repeat",
                        str(per_client),
                        "--max-seconds",
                        "60",
                    ],
                    stdout=handle,
                )
            )
    deadline = time.monotonic() + 90
    for proc in procs:
        try:
            proc.wait(max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        c.stop_child(proc)
    results = []
    for out in outs:
        try:
            results.append(json.loads(out.read_text()))
        except ValueError:
            return 0.0, f"{clients} clients: a client printed no result"
    total = sum(r["ok"] for r in results)
    span = max(r["end"] for r in results) - min(r["start"] for r in results)
    problem = None if total == clients * per_client else f"{clients} clients: {total}/{clients * per_client} ok"
    return total / span, problem


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=400, help="per client")
    parser.add_argument("--clients", default="1,2,4")
    parser.add_argument("--files", type=int, default=200, help="for the product's reference rate")
    args = parser.parse_args()
    counts = [int(n) for n in args.clients.split(",")]
    with c.bench("7 emulator ceiling", 60 + 120 + 100 * len(counts)) as (report, work):
        problems = []
        tiny = work / "tiny.csv"
        tiny.write_text(c.csv_text(0, 1, tag="tiny"), encoding="utf-8")
        emu = c.start_emulator(work / "server")
        rates = {}
        try:
            for clients in counts:
                rate, problem = emulator_rate(work, emu, clients, args.requests, tiny)
                rates[clients] = rate
                report.add(
                    f"emulator: tiny uploads, {clients} keep-alive client process(es)",
                    "-",
                    f"{rate:.0f} requests/s",
                    None,
                )
                if problem:
                    problems.append(problem)
        finally:
            emu.stop()
            shutil.rmtree(work / "server", ignore_errors=True)
        product, problem = product_rate(work, args.files)
        if problem:
            problems.append(problem)
        best = max(rates.values())
        report.add(f"dropbox-sync once, {args.files} files of 20 rows", "-", f"{product:.0f} files/s", None)
        report.add("emulator best rate / product rate", ">= 2x", f"{best / product:.1f}x", best / product >= 2)
        report.add("all requests answered 200 success", "all", "all" if not problems else "NO", not problems)
        for problem in problems:
            report.note(problem)
        return c.finish(report)


if __name__ == "__main__":
    sys.exit(main())
