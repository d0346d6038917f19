"""Benchmark: what column mapping costs, and that its memory stays flat.

(a) Cost per 100,000 rows: a TASS-style export (8 columns, codes with leading
    zeros) of --rows rows is read with ``csv.reader`` alone (the baseline: the
    least any mapping must do) and mapped with ``mapper.map_file`` to a file, the
    TASS mapping of docs/mapping.md (five output columns, one value table), each
    in a fresh child process, best of --rounds. Reported: seconds per 100,000
    rows of each and their ratio, from the same run.
(b) Peak RSS on a --size-mb export (default 1 GiB of real rows, about 14
    million): ``map_file`` in a child, and the product itself,
    ``dropbox-sync preview`` (which maps the whole file as ``run`` and ``send``
    would, and prints the first rows). Peak RSS from the kernel (wait4's
    ru_maxrss). Goal: within 64 MB, like ``send``.

    .venv/bin/python bench/bench_mapping.py [--rows 200000] [--rounds 3] [--size-mb 1024] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import sys
import textwrap

import common as c

MB = 1024 * 1024
GOAL_RSS_MB = 64
TIMEOUT = 600.0
TASS_HEADER = "studCode,firstName,surname,preferredName,scholasticYear,pcTutorGroup,rollClass,emailAddress\r\n"
TASS_MAPPING = {
    "username": "{studCode}",
    "library-group": "Year {scholasticYear}",
    "system-group": "Student",
    "emailAddress": "{emailAddress}",
    "formClass": "{scholasticYear}{rollClass}",
}
TASS_VALUES = {"library-group": {"Year 07": "Year 7", "Year 08": "Year 8", "Year 09": "Year 9"}}


def tass_rows(start: int, count: int) -> str:
    lines = []
    for n in range(start, start + count):
        year = 7 + n % 6
        lines.append(
            f"{n:07d},First{n},Surname{n},Pref{n},{year:02d},PC{n % 40},{'ABCDEF'[n % 6]},s{n:07d}@school.example\r\n"
        )
    return "".join(lines)


def make_export(path: c.Path, *, rows: int | None = None, size: int | None = None) -> int:
    """Write an export of ``rows`` rows, or of about ``size`` bytes; return its rows."""
    written = made = 0
    with open(path, "w", encoding="utf-8", newline="", buffering=8 * MB) as out:
        written += out.write(TASS_HEADER)
        while (rows is not None and made < rows) or (size is not None and written < size):
            count = 10_000 if rows is None else min(10_000, rows - made)
            written += out.write(tass_rows(made, count))
            made += count
    return made


# Each child times its own work (process CPU time around it), so Python's start-up
# and imports are not counted in either figure.
READ_ONLY = textwrap.dedent("""
    import csv, sys, time
    started = time.process_time()
    with open(sys.argv[1], encoding="utf-8-sig", newline="") as f:
        for row in csv.reader(f):
            pass
    print(time.process_time() - started)
""")
MAP = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from dropbox_sync.pipeline import mapper
    from dropbox_sync.config import mapping
    spec = mapping.build(json.loads(sys.argv[3]), json.loads(sys.argv[4]))
    started = time.process_time()
    result = mapper.map_file(spec, Path(sys.argv[1]), Path(sys.argv[2]))
    print(time.process_time() - started)
    assert result.problem is None, result.problem
""")


def run_child(code: str, *args: str) -> tuple[c.Finished, float]:
    """The child's kernel figures, and the CPU seconds it measured around its work."""
    with open(c.temp_dir("child") / "out", "w+", encoding="utf-8") as out:
        done = c.run_measured(
            [c.PYTHON, "-c", code, *args], timeout=TIMEOUT, env=c.child_env(), stdout=out, stderr=None
        )
        out.seek(0)
        text = out.read()
    if done.returncode != 0:
        raise SystemExit(f"child failed (exit {done.returncode})")
    return done, float(text.strip())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--dir", default=None, help="where the big files go (default: the temp folder)")
    args = parser.parse_args()
    import json

    mapping_args = (json.dumps(TASS_MAPPING), json.dumps(TASS_VALUES))
    with c.bench("Mapping cost and memory", deadline=TIMEOUT * 2, base=args.dir) as (report, work):
        export, mapped = work / "export.csv", work / "mapped.csv"
        make_export(export, rows=args.rows)
        per = 100_000 / args.rows
        reads = [run_child(READ_ONLY, str(export))[1] for _ in range(args.rounds)]
        maps = [run_child(MAP, str(export), str(mapped), *mapping_args)[1] for _ in range(args.rounds)]
        base, cost = min(reads) * per, min(maps) * per
        report.add("csv.reader alone, per 100,000 rows (CPU)", "baseline", c.fmt_s(base), None)
        report.add("map_file, per 100,000 rows (CPU)", "info", f"{c.fmt_s(cost)} ({cost / base:.1f}x csv alone)", None)
        report.note(
            f"{args.rows:,} rows, {export.stat().st_size / MB:.1f} MiB; best of {args.rounds} child "
            "processes, each timing its own work (CPU)"
        )

        big, out = work / "big.csv", work / "big-mapped.csv"
        rows = make_export(big, size=args.size_mb * MB)
        report.note(f"big export: {big.stat().st_size / MB:.0f} MiB, {rows:,} rows")
        done, _ = run_child(MAP, str(big), str(out), *mapping_args)
        out.unlink(missing_ok=True)
        rss = done.maxrss_kb / 1024
        report.add(
            f"map_file peak RSS, {args.size_mb} MiB export", f"<= {GOAL_RSS_MB} MB", f"{rss:.1f} MB", rss <= GOAL_RSS_MB
        )
        report.add(f"map_file time, {args.size_mb} MiB export", "info", c.fmt_s(done.seconds), None)
        _preview(report, work, big, args.size_mb)
    return c.finish(report)


def _preview(report: c.Report, work: c.Path, big: c.Path, size_mb: int) -> None:
    """The product's own path: ``dropbox-sync preview`` maps the whole export."""
    inbox = work / "inbox"
    inbox.mkdir()
    config = work / "config.toml"
    lines = [
        f"state_dir = {c.toml_value(str(work / 'state'))}",
        "[[inbox]]",
        'name = "students"',
        f"path = {c.toml_value(str(inbox))}",
        'url = "https://127.0.0.1:9/api/import/users"',
        'username = "autoimport"',
        f"password = {c.toml_value(c.PASSWORD)}",
        'max_file_size = "4GB"',
        "[inbox.columns]",
        *[f'"{k}" = {c.toml_value(v)}' for k, v in TASS_MAPPING.items()],
        "[inbox.values.library-group]",
        *[f'"{k}" = {c.toml_value(v)}' for k, v in TASS_VALUES["library-group"].items()],
    ]
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    config.chmod(0o600)
    done = c.run_measured(
        c.product_cmd("--config", str(config), "preview", str(big), "--rows", "3"), timeout=TIMEOUT, env=c.child_env()
    )
    if done.returncode != 0:
        report.add("dropbox-sync preview", "exit 0", f"exit {done.returncode}", False)
        return
    rss = done.maxrss_kb / 1024
    report.add(
        f"dropbox-sync preview peak RSS, {size_mb} MiB export",
        f"<= {GOAL_RSS_MB} MB",
        f"{rss:.1f} MB",
        rss <= GOAL_RSS_MB,
    )
    report.add(f"dropbox-sync preview time, {size_mb} MiB export", "info", c.fmt_s(done.seconds), None)


if __name__ == "__main__":
    sys.exit(main())
