"""What a report page rewritten during uploads costs them: `once` over 1,000 small files.

The page thread and the uploading thread take turns at the GIL; while a page is rendered
the uploader waits for every turn back. This times, inside one `once` process (its own
driver, bytecode cached as after an install), each page rewrite and each file's
transaction (``FileTransaction.take``), then compares the transactions that overlapped a
rewrite with the median of the others: their excess is what the rewrites cost the uploads.

Variants alternate round by round, each on a fresh emulator and inbox:
"2 s" forces the service's cadence (``RENDER_EVERY``) on `once`; "once" is its own
(``ONCE_RENDER_EVERY``). Informational only: no goal, exit 0 unless a run fails.

    .venv/bin/python bench/bench_page_cost.py [--rounds 3] [--files 1000]
"""

from __future__ import annotations

import argparse
import json
import subprocess

import common as c

TIMEOUT = 150.0  # per run

# Run in the product's interpreter: patch timers around the page's rewrite and each file's
# transaction, run `once`, print what was timed as one JSON line.
DRIVER = """
import json, statistics, sys, time
from dropbox_sync import cli
from dropbox_sync.pipeline import transaction
from dropbox_sync.report import page

if sys.argv[2] == "2s":
    page.ONCE_RENDER_EVERY = page.RENDER_EVERY
clock, rewrites, takes = time.perf_counter, [], []

def timed(owner, name, into):
    original = getattr(owner, name)
    def wrapper(*args, **kwargs):
        started = clock()
        try:
            return original(*args, **kwargs)
        finally:
            into.append((started, clock()))
    setattr(owner, name, wrapper)

timed(page.ReportPages, "_write", rewrites)
timed(transaction.FileTransaction, "take", takes)
try:
    cli.main(["--config", sys.argv[1], "once"])
except SystemExit:
    pass
during = [rewrite for rewrite in rewrites if rewrite[0] < takes[-1][1]]  # the final one comes after
def overlaps(take):
    return any(take[0] < end and start < take[1] for start, end in during)
hit = [end - start for start, end in takes if overlaps((start, end))]
usual = statistics.median(end - start for start, end in takes if not overlaps((start, end)))
print(json.dumps({
    "files": len(takes),
    "rewrites_during": len(during),
    "rewrite_ms": sum(end - start for start, end in during) * 1000,
    "excess_ms": max(0.0, sum(hit) - len(hit) * usual) * 1000,
    "run_s": takes[-1][1] - takes[0][0],
}))
"""


def run(work: c.Path, src: c.Path, label: str, n: int) -> dict[str, float]:
    base = work / f"{label}{n}"
    emu = c.start_emulator(base)
    try:
        inbox = c.fresh_inbox(base, src)
        config = c.write_config(base / "config.toml", emu, [inbox], settle_seconds=0.1)
        done = subprocess.run(
            [c.PYTHON, "-c", DRIVER, str(config), label],
            env=c.child_env(),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    finally:
        emu.stop()
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{label}: exit {done.returncode}: {done.stderr[-2000:]}")
    return json.loads(lines[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--files", type=int, default=1000)
    args = parser.parse_args()
    labels = ["2s", "once"]
    with c.bench("page cost", 60 + args.rounds * len(labels) * TIMEOUT) as (report, work):
        src = work / "src"
        c.write_csvs(src, args.files, 20)
        rows: dict[str, list[dict[str, float]]] = {label: [] for label in labels}
        for n in range(args.rounds):
            for label in labels[n % 2 :] + labels[: n % 2]:
                row = run(work, src, label, n)
                rows[label].append(row)
                print(f"round {n + 1}: {label:4s} " + " ".join(f"{k}={v:.1f}" for k, v in row.items()), flush=True)
        for label, name in (("2s", "`once` at the service's 2 s cadence"), ("once", "`once` at its own cadence")):
            got = rows[label]
            report.add(
                f"{name}: rewrites during uploads / their time / uploads' excess / run, medians",
                "-",
                f"{c.median([r['rewrites_during'] for r in got]):.0f} / "
                f"{c.median([r['rewrite_ms'] for r in got]):.0f} ms / "
                f"{c.median([r['excess_ms'] for r in got]):.0f} ms / "
                f"{c.median([r['run_s'] for r in got]):.2f} s",
                None,
            )
        report.note(f"{args.files} files x 20 rows, {args.rounds} rounds, variants alternating")
    return c.finish(report)


if __name__ == "__main__":
    raise SystemExit(main())
