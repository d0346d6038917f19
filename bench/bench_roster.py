"""Benchmark: what delta uploads save the server, and what the roster diff costs.

(a) A --students-row nightly export (default 2,000), then the same export with
    --changed-percent of its rows changed (default 1 %, each a new library-group).
    The product (`dropbox-sync once`, delta = true) sends night 1 whole and night 2
    as changes only, to the emulator in its own process over TLS. Reported: the rows
    night 2 sent against the rows that changed (goal: equal), and the emulator's own
    import time (its ``Importer`` on a store already holding the students, best of
    --rounds) of the CSV night 2 sent against the whole export, the baseline, in the
    same run (goal: at least 20x lower).
(b) `dropbox-sync diff` of a --big-rows export (default 100,000) with 1 % changed,
    against a roster memory of as many users: wall time and peak RSS of the whole
    command in a child process (start-up included), and the CPU time of
    ``changes.plan`` alone. Goals: under 2 s and under 100 MB.

    .venv/bin/python bench/bench_roster.py [--students 2000] [--changed-percent 1] [--big-rows 100000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import textwrap

import common as c

TIMEOUT = 300.0
GOAL_RATIO, GOAL_SECONDS, GOAL_MB = 20.0, 2.0, 100.0
HEADER = "username,firstName,lastName,library-group,system-group,emailAddress\n"


def export(rows: int, changed: int = 0) -> str:
    """``rows`` students; the first ``changed`` of every 100 (spread through the file) moved up a year."""
    step = max(1, rows // changed) if changed else 0
    lines = [HEADER]
    for n in range(rows):
        year = 8 if step and n % step == 0 and n // step < changed else 7
        lines.append(f"s{n:06d},First{n},Last{n},Year {year},Student,s{n:06d}@school.example\n")
    return "".join(lines)


IMPORT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from dropbox_sync.emulator.importer import Importer
    from dropbox_sync.emulator.store import Store
    Path(sys.argv[1]).mkdir(parents=True, exist_ok=True)
    store = Store(Path(sys.argv[1]) / "emulator.sqlite3", Path(sys.argv[1]) / "uploads")
    importer = Importer(store)
    assert importer.run(Path(sys.argv[2]), "").success  # the students exist, as on night 2
    best = {}
    for _ in range(int(sys.argv[4])):
        for name in ("whole", "delta"):
            path = Path(sys.argv[2] if name == "whole" else sys.argv[3])
            started = time.perf_counter()
            assert importer.run(path, "").success
            best[name] = min(best.get(name, 1e9), time.perf_counter() - started)
    print(best["whole"], best["delta"])
""")
REMEMBER = textwrap.dedent("""
    import datetime as dt, sys
    from pathlib import Path
    from dropbox_sync.roster import changes
    from dropbox_sync import config, paths
    from dropbox_sync.roster.memory import Roster
    cfg = config.load(Path(sys.argv[1]))
    inbox = cfg.inboxes[0]
    roster = Roster(cfg.state_dir / paths.ROSTER_FILE)
    plan = changes.plan(Path(sys.argv[2]), inbox.name, inbox.routes[0].safe_url, inbox.routes[0].policy, roster,
                        dt.datetime.now(dt.UTC), target=Path(sys.argv[3]))
    changes.remember(roster, inbox.name, inbox.routes[0].safe_url, plan, Path(sys.argv[2]), {"success": True},
                     dt.datetime.now(dt.UTC))
""")
PLAN = textwrap.dedent("""
    import datetime as dt, sys, time
    from pathlib import Path
    from dropbox_sync.roster import changes
    from dropbox_sync import config, paths
    from dropbox_sync.roster.memory import Roster
    cfg = config.load(Path(sys.argv[1]))
    inbox = cfg.inboxes[0]
    roster = Roster(cfg.state_dir / paths.ROSTER_FILE, repair=False)
    started = time.process_time()
    plan = changes.plan(Path(sys.argv[2]), inbox.name, inbox.routes[0].safe_url, inbox.routes[0].policy, roster,
                        dt.datetime.now(dt.UTC), target=Path(sys.argv[3]))
    print(time.process_time() - started, plan.changed)
""")


def child(code: str, *args: str) -> tuple[c.Finished, str]:
    with open(c.temp_dir("child") / "out", "w+", encoding="utf-8") as out:
        done = c.run_measured(
            [c.PYTHON, "-c", code, *args], timeout=TIMEOUT, env=c.child_env(), stdout=out, stderr=None
        )
        out.seek(0)
        text = out.read()
    if done.returncode != 0:
        raise SystemExit(f"child failed (exit {done.returncode})")
    return done, text


def delta_nights(report: c.Report, work: c.Path, students: int, changed: int, rounds: int) -> None:
    emulator = c.start_emulator(work)
    try:
        inbox = work / "inbox"
        config = c.write_config(work / "config.toml", emulator, [inbox], delta=True)
        whole_export = work / "night1.csv"
        whole_export.write_text(export(students), encoding="utf-8")
        night2 = export(students, changed)
        for number, text in ((1, whole_export.read_text(encoding="utf-8")), (2, night2)):
            (inbox / "students.csv").write_text(text, encoding="utf-8")
            done = c.run_measured(c.product_cmd("--config", str(config), "once"), timeout=TIMEOUT, env=c.child_env())
            if done.returncode != 0:
                raise SystemExit(f"night {number}: once exited {done.returncode}")
        results = sorted((inbox / "processed").glob("*.result.json"))
        night2_result = json.loads(results[-1].read_text(encoding="utf-8"))["dropbox_sync"]
        facts = night2_result["changes"]
        report.add(
            f"night 2: rows sent / rows changed ({students:,} students)",
            "equal",
            f"{facts['sent_rows']} / {changed}",
            facts["sent_rows"] == changed,
        )
        sent = next((inbox / "processed").glob("*.sent.csv"))
        (work / "night2.csv").write_text(night2, encoding="utf-8")
        _, text = child(IMPORT, str(work / "importer"), str(work / "night2.csv"), str(sent), str(rounds))
        whole, delta = (float(x) for x in text.split())
        report.add(f"emulator import, whole export of {students:,} rows", "baseline", c.fmt_s(whole), None)
        report.add(
            f"emulator import, the {facts['sent_rows']} rows delta sent",
            f">= {GOAL_RATIO:g}x lower",
            f"{c.fmt_s(delta)} ({whole / delta:.0f}x lower)",
            whole / delta >= GOAL_RATIO,
        )
        report.note(f"uploads the emulator received: {emulator.upload_count()} (night 1 whole, night 2 changes)")
    finally:
        emulator.stop()


def big_diff(report: c.Report, work: c.Path, rows: int) -> None:
    big = work / "big"
    inbox = big / "inbox"
    inbox.mkdir(parents=True)
    config = big / "config.toml"
    config.write_text(
        "\n".join(
            [
                f"state_dir = {c.toml_value(str(big / 'state'))}",
                "[[inbox]]",
                'name = "students"',
                f"path = {c.toml_value(str(inbox))}",
                'url = "https://127.0.0.1:9/api/import/users"',
                'username = "autoimport"',
                f"password = {c.toml_value(c.PASSWORD)}",
                "delta = true",
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    config.chmod(0o600)
    first, tonight = big / "first.csv", big / "tonight.csv"
    first.write_text(export(rows), encoding="utf-8")
    tonight.write_text(export(rows, rows // 100), encoding="utf-8")
    child(REMEMBER, str(config), str(first), str(big / "scratch.tmp"))
    _, text = child(PLAN, str(config), str(tonight), str(big / "scratch.tmp"))
    cpu, changed = text.split()
    done = c.run_measured(
        c.product_cmd("--config", str(config), "diff", str(tonight)), timeout=TIMEOUT, env=c.child_env()
    )
    ok = done.returncode == 0 and int(changed) == rows // 100
    report.add(
        f"dropbox-sync diff, {rows:,} rows against {rows:,} remembered (wall)",
        f"< {GOAL_SECONDS:g} s",
        c.fmt_s(done.seconds),
        ok and done.seconds < GOAL_SECONDS,
    )
    rss = done.maxrss_kb / 1024
    report.add("dropbox-sync diff peak RSS", f"< {GOAL_MB:g} MB", f"{rss:.1f} MB", ok and rss < GOAL_MB)
    report.add("changes.plan alone (CPU)", "info", c.fmt_s(float(cpu)), None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=2000)
    parser.add_argument("--changed-percent", type=float, default=1.0)
    parser.add_argument("--big-rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with c.bench("Roster memory and delta", deadline=TIMEOUT * 3) as (report, work):
        changed = max(1, round(args.students * args.changed_percent / 100))
        delta_nights(report, work, args.students, changed, args.rounds)
        big_diff(report, work, args.big_rows)
    return c.finish(report)


if __name__ == "__main__":
    raise SystemExit(main())
