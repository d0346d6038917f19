"""Benchmark 6, start-up: ``dropbox-sync --help``, median of 10 runs after a warm-up.

Timed from fork to reaping, with bytecode cached as after ``pip install`` (see
common.child_env). Also shown for context: a bare ``python -c pass``, and the
same command in this dev shell's own environment (which may disable bytecode
caching). ``python -X importtime`` names the heaviest imports (cumulative).

Goal: median <= 300 ms.

    .venv/bin/python bench/bench_startup.py [--runs 10]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import common as c


def median_ms(cmd: list[str], runs: int, env: dict[str, str] | None = None) -> tuple[float, str | None]:
    c.run_measured(cmd, timeout=30, env=env)  # warm-up: page cache, bytecode cache
    times, problem = [], None
    for _ in range(runs):
        done = c.run_measured(cmd, timeout=30, env=env)
        if done.returncode != 0:
            problem = f"{' '.join(cmd[-2:])}: exit {done.returncode}"
        times.append(done.seconds)
    return c.median(times) * 1000, problem


def heaviest_imports(limit: int = 8) -> list[tuple[int, str]]:
    """(cumulative microseconds, module) of the top-level imports of ``dropbox-sync --help``."""
    result = subprocess.run(
        [c.PYTHON, "-X", "importtime", "-m", "dropbox_sync", "--help"],
        env=c.child_env(),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    rows = []
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, _, rest = line.partition(":")
        parts = rest.split("|")
        if len(parts) != 3:
            continue
        name = parts[2].rstrip()
        depth = (len(name) - len(name.lstrip())) // 2
        if depth <= 2:  # dropbox_sync, its direct imports and theirs
            rows.append((int(parts[1]), name.strip()))
    return sorted(rows, reverse=True)[:limit]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with c.bench("6 start-up", 120) as (report, work):
        help_ms, problem = median_ms(c.product_cmd("--help"), args.runs)
        bare_ms, _ = median_ms([c.PYTHON, "-c", "pass"], args.runs)
        dev_ms, _ = median_ms(c.product_cmd("--help"), max(3, args.runs // 3), env=dict(os.environ))
        report.add(
            f"dropbox-sync --help, median of {args.runs} (bytecode cached)",
            "<= 300 ms",
            f"{help_ms:.0f} ms",
            help_ms <= 300 and problem is None,
        )
        report.add("python -c pass (interpreter alone)", "-", f"{bare_ms:.0f} ms", None)
        cached = "off" if os.environ.get("PYTHONDONTWRITEBYTECODE") else "on"
        report.add(f"--help in this shell's own env (bytecode writing {cached})", "-", f"{dev_ms:.0f} ms", None)
        heavy = heaviest_imports()
        report.note(
            "heaviest imports (python -X importtime, cumulative): "
            + ", ".join(f"{name} {us / 1000:.0f} ms" for us, name in heavy)
        )
        if problem:
            report.note(problem)
        return c.finish(report)


if __name__ == "__main__":
    sys.exit(main())
