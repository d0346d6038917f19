"""Benchmark 1, throughput: 500 settled small CSVs, three ways, side by side in one run.

(a) ``dropbox-sync once`` over an inbox holding the 500 files (settle_seconds
    0.1, files settled before it starts), timed from process start to exit;
(b) the vendor's method: a bash loop running one ``curl --cacert CA -u user:pw
    -F file=@x.csv URL`` per file (verifying TLS, no -k), as a scheduled script would;
(c) the ceiling: a bare keep-alive httpx loop in its own Python process posting
    the same files, no settling, pre-flight or archiving.

Each variant gets a fresh emulator process (so every one does the same
10,000 "created" rows). Goals: (a) >= 2x as fast as (b), and >= 0.8x of (c).

    .venv/bin/python bench/bench_throughput.py [--files 500] [--rows 20] [--rounds 1]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys

import common as c

CURL_LOOP = """#!/bin/bash
# The vendor's way: one curl per file, certificate checked, reply not read.
set -u
for f in "$SRC"/*.csv; do
  curl -sS --cacert "$CA" -u "$CREDS" -F "file=@$f" -o /dev/null -w '%{http_code}\\n' "$URL"
done
"""
TIMEOUT = 150.0  # per variant


def check_emulator(emu: c.EmulatorProcess, files: int, rows: int, label: str) -> str | None:
    uploads = emu.uploads()
    good = sum(1 for u in uploads if u["status"] == 200 and u["success"] == 1)
    users = emu.user_count()
    if good != files or users != files * rows:
        return f"{label}: emulator saw {good}/{files} successful uploads and {users}/{files * rows} users"
    return None


def variant_once(work: c.Path, src: c.Path, n: int, files: int, rows: int,
                 pythonpath: str | None = None) -> tuple[float, c.Finished, str | None]:
    base = work / (f"once{n}" if pythonpath is None else f"patched{n}")
    emu = c.start_emulator(base)
    try:
        inbox = base / "inbox"
        inbox.mkdir()
        for path in sorted(src.iterdir()):
            shutil.copy2(path, inbox / path.name)
        config = c.write_config(base / "config.toml", emu, [inbox], settle_seconds=0.1)
        env = c.child_env({"PYTHONPATH": pythonpath}) if pythonpath else None
        with open(base / "once.log", "wb") as log:
            done = c.run_measured(c.product_cmd("--config", str(config), "once"), timeout=TIMEOUT,
                                  stdout=log, stderr=subprocess.STDOUT, env=env)
        problem = None
        if done.returncode != 0 or c.archived(inbox, "processed") != files:
            problem = (f"once: exit {done.returncode}, {c.archived(inbox, 'processed')}/{files} processed; "
                       f"see {base / 'once.log'}")
        return done.seconds, done, problem or check_emulator(emu, files, rows, "once")
    finally:
        emu.stop()


def variant_curl(work: c.Path, src: c.Path, n: int, files: int, rows: int) -> tuple[float, c.Finished, str | None]:
    base = work / f"curl{n}"
    emu = c.start_emulator(base)
    try:
        script = base / "curl-loop.sh"
        script.write_text(CURL_LOOP)
        env = {"PATH": "/usr/bin:/bin", "SRC": str(src), "CA": str(emu.ca_file),
               "CREDS": f"{c.USER}:{c.PASSWORD}", "URL": emu.users_url}
        with open(base / "codes.txt", "wb") as out:
            done = c.run_measured(["bash", str(script)], timeout=TIMEOUT, env=env, stdout=out,
                                  stderr=subprocess.STDOUT)
        codes = (base / "codes.txt").read_text().split()
        problem = None
        if done.returncode != 0 or codes.count("200") != files:
            problem = f"curl loop: exit {done.returncode}, {codes.count('200')}/{files} HTTP 200"
        return done.seconds, done, problem or check_emulator(emu, files, rows, "curl")
    finally:
        emu.stop()


def variant_ceiling(work: c.Path, src: c.Path, n: int, files: int, rows: int) -> tuple[float, c.Finished, str | None]:
    base = work / f"ceiling{n}"
    emu = c.start_emulator(base)
    try:
        paths = [str(p) for p in sorted(src.iterdir())]
        out_path = base / "ceiling.json"
        with open(out_path, "wb") as out:
            done = c.run_measured([c.PYTHON, str(c.BENCH_DIR / "ceiling_client.py"), emu.users_url,
                                   str(emu.ca_file), c.USER, c.PASSWORD, *paths], timeout=TIMEOUT, stdout=out)
        problem = None
        try:
            result = json.loads(out_path.read_text())
        except ValueError:
            result = {"ok": 0, "loop_seconds": float("nan")}
        if done.returncode != 0 or result["ok"] != files:
            problem = f"ceiling: exit {done.returncode}, {result['ok']}/{files} ok"
        done.loop_seconds = result["loop_seconds"]  # type: ignore[attr-defined]
        return done.seconds, done, problem or check_emulator(emu, files, rows, "ceiling")
    finally:
        emu.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--rows", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3,
                        help="repeat the three variants (order rotated each round); report medians")
    parser.add_argument("--patched", metavar="DIR",
                        help="also time `once` with PYTHONPATH=DIR (a patched copy of dropbox_sync) in every round")
    args = parser.parse_args()
    deadline = 60 + args.rounds * 4 * TIMEOUT
    with c.bench("1 throughput", deadline) as (report, work):
        src = work / "src"
        c.write_csvs(src, args.files, args.rows)
        times: dict[str, list[float]] = {"once": [], "curl": [], "ceiling": [], "patched": []}
        ceiling_loop: list[float] = []
        cpu: dict[str, list[float]] = {"once": [], "ceiling": [], "curl": [], "patched": []}
        problems: list[str] = []
        variants = [("curl", variant_curl), ("ceiling", variant_ceiling), ("once", variant_once)]
        if args.patched:
            def variant_patched(*a: c.Any) -> tuple[float, c.Finished, str | None]:
                return variant_once(*a, pythonpath=args.patched)
            variants.append(("patched", variant_patched))
        patched_vs_ceiling: list[float] = []
        vs_curl: list[float] = []
        vs_ceiling: list[float] = []
        for n in range(args.rounds):
            # Rotate the order so no variant always runs first (cold caches) or last.
            for name, variant in variants[n % len(variants):] + variants[:n % len(variants)]:
                seconds, done, problem = variant(work, src, n, args.files, args.rows)
                print(f"round {n + 1}: {name:8s} {seconds:7.2f} s  ({args.files / seconds:6.1f} files/s)"
                      f"{'  PROBLEM: ' + problem if problem else ''}", flush=True)
                times[name].append(seconds)
                if problem:
                    problems.append(problem)
                if name == "ceiling":
                    ceiling_loop.append(done.loop_seconds)  # type: ignore[attr-defined]
                cpu[name].append(done.cpu_seconds)
            # Ratios within a round compare runs made under the same machine load.
            vs_curl.append(times["curl"][-1] / times["once"][-1])
            vs_ceiling.append(times["ceiling"][-1] / times["once"][-1])
            if args.patched:
                patched_vs_ceiling.append(times["ceiling"][-1] / times["patched"][-1])
        once, curl, ceiling = (c.median(times[k]) for k in ("once", "curl", "ceiling"))
        rate = lambda s: f"{args.files / s:.0f} files/s"  # noqa: E731
        report.add("(a) dropbox-sync once", "-", f"{once:.2f} s, {rate(once)}", None)
        report.add("(b) curl loop (vendor)", "-", f"{curl:.2f} s, {rate(curl)}", None)
        report.add("(c) httpx keep-alive ceiling", "-", f"{ceiling:.2f} s, {rate(ceiling)}", None)
        report.add("(c) ceiling, loop only (no start-up)", "-",
                   f"{c.median(ceiling_loop):.2f} s, {rate(c.median(ceiling_loop))}", None)
        spread = lambda xs: f" (rounds: {', '.join(f'{x:.2f}' for x in xs)})" if len(xs) > 1 else ""  # noqa: E731
        report.add("speed (a) vs (b) = t(b)/t(a), median of rounds", ">= 2.0x",
                   f"{c.median(vs_curl):.2f}x{spread(vs_curl)}", c.median(vs_curl) >= 2.0)
        report.add("speed (a) vs (c) = t(c)/t(a), median of rounds", ">= 0.8x",
                   f"{c.median(vs_ceiling):.2f}x{spread(vs_ceiling)}", c.median(vs_ceiling) >= 0.8)
        if args.patched:
            patched = c.median(times["patched"])
            report.add(f"(a') once with PYTHONPATH={args.patched}", "-", f"{patched:.2f} s, {rate(patched)}", None)
            report.add("speed (a') vs (c), median of rounds", "(0.8x)",
                       f"{c.median(patched_vs_ceiling):.2f}x{spread(patched_vs_ceiling)}", None)
            report.add("speed (a') vs (a) = t(a)/t(a'), median", "-",
                       f"{c.median([o / p for o, p in zip(times['once'], times['patched'], strict=True)]):.2f}x", None)
        report.add("client CPU user+sys: once / ceiling / curl loop", "-",
                   " / ".join(f"{c.median(cpu[k]):.2f} s" for k in ("once", "ceiling", "curl")), None)
        report.add("every file uploaded and archived, all variants", "all", "all" if not problems else "NO",
                   not problems)
        for problem in problems:
            report.note(problem)
        report.note(f"{args.files} files x {args.rows} rows, {args.rounds} round(s); median per variant; "
                    "each variant on a fresh emulator process over TLS on 127.0.0.1")
        return c.finish(report)


if __name__ == "__main__":
    sys.exit(main())
