"""Benchmark 6, start-up: ``--help``, ``status`` and ``once`` on an empty inbox.

Each command is timed from fork to reaping (wall) and by the kernel's CPU count
for the child (user + system, less skewed by other work on the machine), with
bytecode cached as after ``pip install`` (see common.child_env); median of
``--runs`` runs after a warm-up, the commands interleaved run by run so a change
in the machine's load falls on all of them alike.

``once`` on an empty inbox is the fixed cost of every ``once`` run (issue 13):
config, logging, journal, locks, report page, status.json, and the imports for
them. Its config names no emulator: the inbox is empty, so nothing is sent. The
baselines, measured in the same run: ``python -c pass`` (the interpreter) and
``python -c "import httpx"`` (the start-up of the durable ceiling client,
bench/ceiling_client.py). ``python -X importtime`` names the heaviest imports
of ``once`` (cumulative).

Goal: ``--help`` median <= 300 ms.

    .venv/bin/python bench/bench_startup.py [--runs 10]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import common as c


def timed(commands: dict[str, list[str]], runs: int) -> dict[str, tuple[float, float, str | None]]:
    """name -> (median wall ms, median CPU ms, problem) over ``runs`` interleaved runs each."""
    for cmd in commands.values():
        c.run_measured(cmd, timeout=30, env=c.child_env())  # warm-up: page cache, bytecode cache
    walls: dict[str, list[float]] = {name: [] for name in commands}
    cpus: dict[str, list[float]] = {name: [] for name in commands}
    problems: dict[str, str | None] = dict.fromkeys(commands)
    for _ in range(runs):
        for name, cmd in commands.items():
            done = c.run_measured(cmd, timeout=30, env=c.child_env())
            if done.returncode != 0:
                problems[name] = f"{name}: exit {done.returncode}"
            walls[name].append(done.seconds)
            cpus[name].append(done.cpu_seconds)
    return {name: (c.median(walls[name]) * 1000, c.median(cpus[name]) * 1000, problems[name]) for name in commands}


def heaviest_imports(args: Sequence[str], limit: int = 8) -> list[tuple[int, str]]:
    """(cumulative microseconds, module) of the top-level imports of ``dropbox-sync ARGS``."""
    result = subprocess.run(
        [c.PYTHON, "-X", "importtime", "-m", "dropbox_sync", *args],
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


def empty_inbox_config(work: Path) -> Path:
    """A config with one empty inbox whose URL is never contacted (nothing to send)."""
    inbox = work / "inbox"
    inbox.mkdir()
    config = work / "config.toml"
    values = {
        "name": "inbox",
        "path": str(inbox),
        "url": "https://127.0.0.1:9/users",  # the discard port: an upload here would fail loudly
        "username": c.USER,
        "password": c.PASSWORD,
    }
    lines = [f"state_dir = {c.toml_value(str(work / 'state'))}", f"log_dir = {c.toml_value(str(work / 'logs'))}"]
    lines += ["[[inbox]]", *(f"{key} = {c.toml_value(value)}" for key, value in values.items())]
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    config.chmod(0o600)  # an inline password in a file others can read is warned about
    return config


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with c.bench("6 start-up", 180) as (report, work):
        config = str(empty_inbox_config(work))
        commands = {
            "--help": c.product_cmd("--help"),
            "status": c.product_cmd("--config", config, "status"),
            "once": c.product_cmd("--config", config, "once"),
            "python -c pass": [c.PYTHON, "-c", "pass"],
            "python -c 'import httpx'": [c.PYTHON, "-c", "import httpx"],
        }
        figures = timed(commands, args.runs)
        dev_ms = c.median(
            [c.run_measured(commands["--help"], timeout=30, env=dict(os.environ)).seconds * 1000 for _ in range(3)]
        )
        help_wall, help_cpu, problem = figures["--help"]
        report.add(
            f"dropbox-sync --help, median of {args.runs} (bytecode cached)",
            "<= 300 ms",
            f"{help_wall:.0f} ms (CPU {help_cpu:.0f} ms)",
            help_wall <= 300 and problem is None,
        )
        for name, label in (
            ("status", "status, one empty inbox"),
            ("once", "once, one empty inbox (the fixed cost of a run)"),
            ("python -c pass", "python -c pass (interpreter alone)"),
            ("python -c 'import httpx'", "python -c 'import httpx' (the ceiling client's start-up)"),
        ):
            wall, cpu, _ = figures[name]
            report.add(label, "-", f"{wall:.0f} ms (CPU {cpu:.0f} ms)", None)
        once_wall, httpx_wall = figures["once"][0], figures["python -c 'import httpx'"][0]
        report.add("once start-up beyond the ceiling client's", "-", f"{once_wall - httpx_wall:.0f} ms", None)
        cached = "off" if os.environ.get("PYTHONDONTWRITEBYTECODE") else "on"
        report.add(f"--help in this shell's own env (bytecode writing {cached})", "-", f"{dev_ms:.0f} ms", None)
        for cmd in (["--help"], ["--config", config, "once"]):
            heavy = heaviest_imports(cmd)
            report.note(
                f"heaviest imports of {cmd[-1]} (python -X importtime, cumulative): "
                + ", ".join(f"{name} {us / 1000:.0f} ms" for us, name in heavy)
            )
        for _, _, trouble in figures.values():
            if trouble:
                report.note(trouble)
        return c.finish(report)


if __name__ == "__main__":
    sys.exit(main())
