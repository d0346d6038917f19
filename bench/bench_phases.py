"""Where `once`'s time goes against the durable ceiling: start-up, pace per file, tail.

Benchmark 1 (bench_throughput.py) gives one number per run; this splits it, from the
emulator's own clock: "first" is process start to the first upload the emulator
received, "pace" the time per file between the first and the last upload, "tail" the
last upload to the process's exit. Variants alternate round by round, each on a fresh
emulator and a fresh inbox of 1,000 settled files (as in benchmark 1), so a change to
start-up or to the per-file path shows apart even on a noisy machine.

    .venv/bin/python bench/bench_phases.py [--rounds 6] [--patched DIR ...]

``--patched DIR`` (repeatable) adds ``once`` with PYTHONPATH=DIR (a copy of another
version's ``dropbox_sync``, e.g. ``git archive REV dropbox_sync | tar -x -C DIR``).
Informational only: no goal, exit 0 unless a variant fails.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

import common as c

TIMEOUT = 150.0  # per variant


def run_variant(work: c.Path, src: c.Path, label: str, pythonpath: str | None, n: int) -> dict[str, float]:
    base = work / f"{label}{n}"
    emu = c.start_emulator(base)
    try:
        inbox = c.fresh_inbox(base, src)
        if label == "durable":
            cmd = [c.PYTHON, str(c.BENCH_DIR / "ceiling_client.py"), emu.users_url, str(emu.ca_file)]
            cmd += [c.USER, c.PASSWORD, "--durable", str(inbox)]
            env = None
        else:
            config = c.write_config(base / "config.toml", emu, [inbox], settle_seconds=0.1)
            cmd = c.product_cmd("--config", str(config), "once")
            env = c.child_env({"PYTHONPATH": pythonpath} if pythonpath else None)
        with open(base / "out.log", "wb") as log:
            done = c.run_measured(cmd, timeout=TIMEOUT, stdout=log, stderr=subprocess.STDOUT, env=env)
        received = [c.iso_to_epoch(u["received_at"]) for u in emu.uploads()]
    finally:
        emu.stop()
    if done.returncode != 0 or len(received) < 2:
        raise RuntimeError(f"{label}: exit {done.returncode}, {len(received)} uploads (see {base / 'out.log'})")
    return {
        "total": done.seconds,
        "first": received[0] - done.started_epoch,
        "pace_ms": (received[-1] - received[0]) / (len(received) - 1) * 1000,
        "tail": done.ended_epoch - received[-1],
        "cpu": done.cpu_seconds,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--patched", action="append", default=[], metavar="DIR")
    args = parser.parse_args()
    variants: list[tuple[str, str | None]] = [("once", None), ("durable", None)]
    variants += [(f"patched{i}", path) for i, path in enumerate(args.patched, start=1)]
    deadline = 60 + args.rounds * len(variants) * TIMEOUT
    with c.bench("phases", deadline) as (report, work):
        src = work / "src"
        c.write_csvs(src, args.files, 20)
        rows: dict[str, list[dict[str, float]]] = {label: [] for label, _ in variants}
        for n in range(args.rounds):
            for label, path in variants[n % len(variants) :] + variants[: n % len(variants)]:
                row = run_variant(work, src, label, path, n)
                rows[label].append(row)
                print(f"round {n + 1}: {label:9s} " + " ".join(f"{k}={v:.3f}" for k, v in row.items()), flush=True)
        for label, path in variants:
            med = {key: c.median([r[key] for r in rows[label]]) for key in rows[label][0]}
            name = f"{label} ({path})" if path else label
            report.add(
                f"{name}: total / first upload / pace / tail / CPU, medians",
                "-",
                f"{med['total']:.2f} s / {med['first']:.3f} s / {med['pace_ms']:.2f} ms / {med['tail']:.3f} s / "
                f"{med['cpu']:.2f} s",
                None,
            )
        report.note(f"{args.files} files x 20 rows, {args.rounds} rounds, variants alternating; emulator clock")
        return c.finish(report)


if __name__ == "__main__":
    sys.exit(main())
