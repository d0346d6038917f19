"""Benchmark 3, a 1 GiB CSV: memory stays flat and the upload keeps up with curl.

Same run, each on a fresh emulator: (b) ``curl --cacert CA -u user:pw -F
file=@big.csv URL``; (a) ``dropbox-sync send big.csv``, and ``dropbox-sync once``
with big.csv in an inbox. Peak RSS comes from the kernel (wait4's ru_maxrss of
each child).

Speed is "process start -> the whole file is at the server": the benchmark polls
the emulator's temp file for the upload (every 5 ms) and notes when it reaches
the file's size. What comes after (the emulator importing the CSV, then its
reply) is the server's time, the same for every client, and reported apart.
The product reads the file once before uploading (pre-flight: UTF-8 check and
sha256): that is inside its figure, and also shown apart ("start -> request
arrives", from the emulator's received_at), with the upload-only part.

The file is 1,000 real user rows followed by whitespace-only padding lines,
which Infiniti (and the emulator) skip: every byte crosses TLS and is parsed,
but the emulator does not spend minutes upserting millions of users.

Goals: peak RSS of send and once <= 64 MB; send's speed >= 0.8x curl's.

    .venv/bin/python bench/bench_large_file.py [--size-mb 1024] [--rounds 1] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import common as c

MB = 1024 * 1024
TIMEOUT = 300.0
PAD_LINE = b" " * 8191 + b"\n"


def make_big_csv(path: c.Path, size: int) -> None:
    with open(path, "wb", buffering=8 * MB) as out:
        written = out.write(c.csv_text(0, 1000, tag="big").encode("utf-8"))
        block = PAD_LINE * (8 * MB // len(PAD_LINE))
        while written + len(block) <= size:
            written += out.write(block)
        while written + len(PAD_LINE) <= size:
            written += out.write(PAD_LINE)
        out.write(b" " * (size - written))


class BodyWatch:
    """Polls the emulator's temp file for the upload (every 5 ms): when it holds the
    whole file part, the transfer is over; what follows is the emulator's import."""

    def __init__(self, emu: c.EmulatorProcess, size: int) -> None:
        self.tmp = emu.state_dir / "tmp"
        self.size = size
        self.received: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> BodyWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _poll(self) -> None:
        while not self._stop.wait(0.005):
            try:
                sizes = [p.stat().st_size for p in self.tmp.glob("upload-*.part")]
            except OSError:
                continue
            if sizes and max(sizes) >= self.size:
                self.received = time.time()
                return


@dataclass
class Sample:
    done: c.Finished
    arrived: float | None  # request reached the emulator (its received_at)
    received: float | None  # whole file at the emulator
    problem: str | None

    def part(self, what: str) -> float:
        nan = float("nan")
        return {
            "total": self.done.seconds,
            "transfer": (self.received - self.done.started_epoch) if self.received else nan,
            "before": (self.arrived - self.done.started_epoch) if self.arrived else nan,
            "upload": (self.received - self.arrived) if self.received and self.arrived else nan,
            "server": (self.done.ended_epoch - self.received) if self.received else nan,
            "rss": self.done.maxrss_kb / 1024,
            "cpu": self.done.cpu_seconds,
        }[what]


def _finish(label: str, emu: c.EmulatorProcess, done: c.Finished, watch: BodyWatch, size: int) -> Sample:
    uploads = emu.uploads()
    record = uploads[-1] if uploads else None
    arrived = c.iso_to_epoch(record["received_at"]) if record else None
    problem = None
    if done.returncode != 0:
        problem = f"{label}: exit {done.returncode}"
    elif record is None or record["status"] != 200 or record["success"] != 1 or record["bytes"] != size:
        problem = f"{label}: emulator record {record and {k: record[k] for k in ('status', 'success', 'bytes')}}"
    elif watch.received is None:
        problem = f"{label}: never saw the whole file in the emulator's temp folder"
    return Sample(done, arrived, watch.received, problem)


def run_curl(work: c.Path, big: c.Path, n: int) -> Sample:
    emu = c.start_emulator(work, f"emu-curl{n}")
    size = big.stat().st_size
    try:
        with BodyWatch(emu, size) as watch:
            done = c.run_measured(
                [
                    "curl",
                    "-sS",
                    "--cacert",
                    str(emu.ca_file),
                    "-u",
                    f"{c.USER}:{c.PASSWORD}",
                    "-F",
                    f"file=@{big}",
                    "-o",
                    "/dev/null",
                    emu.users_url,
                ],
                timeout=TIMEOUT,
                env={"PATH": "/usr/bin:/bin"},
            )
        return _finish("curl", emu, done, watch, size)
    finally:
        emu.stop()


def run_send(work: c.Path, big: c.Path, n: int, pythonpath: str | None = None) -> Sample:
    base = work / (f"send{n}" if pythonpath is None else f"send-patched{n}")
    emu = c.start_emulator(work, base.name)
    size = big.stat().st_size
    try:
        config = c.write_config(base / "config.toml", emu, [base / "inbox"], max_file_size="4GB")
        with BodyWatch(emu, size) as watch, open(base / "send.out", "wb") as out:
            done = c.run_measured(
                c.product_cmd("--config", str(config), "send", str(big)),
                timeout=TIMEOUT,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=c.child_env({"PYTHONPATH": pythonpath}) if pythonpath else None,
            )
        return _finish("send", emu, done, watch, size)
    finally:
        emu.stop()


def run_once(work: c.Path, big: c.Path, n: int, pythonpath: str | None = None) -> Sample:
    base = work / (f"once{n}" if pythonpath is None else f"once-patched{n}")
    emu = c.start_emulator(work, base.name)
    inbox = base / "inbox"
    size = big.stat().st_size
    try:
        config = c.write_config(base / "config.toml", emu, [inbox], max_file_size="4GB", settle_seconds=0.1)
        big.rename(inbox / big.name)  # same file system: the very same bytes, no copy
        try:
            with BodyWatch(emu, size) as watch, open(base / "once.out", "wb") as out:
                done = c.run_measured(
                    c.product_cmd("--config", str(config), "once"),
                    timeout=TIMEOUT,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=c.child_env({"PYTHONPATH": pythonpath}) if pythonpath else None,
                )
            reached_processed = c.archived(inbox, "processed") == 1
        finally:
            for path in inbox.glob("**/*big.csv"):
                path.rename(big)  # back for the next variant
                break
        sample = _finish("once", emu, done, watch, size)
        if sample.problem is None and not reached_processed:
            sample.problem = "once: big.csv did not reach processed/"
        return sample
    finally:
        emu.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--dir", default="/tmp", help="where to make the big file (needs ~3x its size free)")
    parser.add_argument(
        "--patched", metavar="DIR", help="also run send and once with PYTHONPATH=DIR (a patched copy of dropbox_sync)"
    )
    args = parser.parse_args()
    size = args.size_mb * MB
    free = shutil.disk_usage(args.dir).free
    if free < 3 * size:
        print(f"need {3 * size / MB:.0f} MB free in {args.dir}, have {free / MB:.0f} MB", file=sys.stderr)
        return 2
    with c.bench("3 large file", 120 + args.rounds * 5 * TIMEOUT, base=args.dir) as (report, work):
        big = work / "big.csv"
        started = time.perf_counter()
        make_big_csv(big, size)
        report.note(
            f"{size / MB:.0f} MiB file made in {time.perf_counter() - started:.1f} s in {args.dir} "
            f"({free / MB / 1024:.0f} GiB free before); deleted after"
        )
        samples: dict[str, list[Sample]] = {"curl": [], "send": [], "once": [], "send'": [], "once'": []}
        runners: list[tuple[str, c.Any]] = [("curl", run_curl), ("send", run_send), ("once", run_once)]
        if args.patched:
            runners += [
                ("send'", lambda *a: run_send(*a, pythonpath=args.patched)),
                ("once'", lambda *a: run_once(*a, pythonpath=args.patched)),
            ]
        for n in range(args.rounds):
            for name, runner in runners[n % len(runners) :] + runners[: n % len(runners)]:
                sample = runner(work, big, n)
                samples[name].append(sample)
                print(
                    f"round {n + 1}: {name:5s} start->file at server {sample.part('transfer'):6.2f} s, "
                    f"command {sample.part('total'):6.2f} s, peak RSS {sample.part('rss'):6.1f} MB"
                    f"{'  PROBLEM: ' + sample.problem if sample.problem else ''}",
                    flush=True,
                )

        def med(name: str, what: str) -> float:
            return c.median([s.part(what) for s in samples[name]])

        rate = lambda s: f"{size / MB / s:.0f} MiB/s"  # noqa: E731
        for name in ("curl", "send", "once"):
            report.add(
                f"{name}: start -> whole file at the server",
                "-",
                f"{med(name, 'transfer'):.2f} s ({rate(med(name, 'transfer'))})",
                None,
            )
        for name in ("send", "once"):
            report.add(
                f"{name}: of which start + pre-flight (-> request arrives)", "-", f"{med(name, 'before'):.2f} s", None
            )
            report.add(
                f"{name}: of which upload only (request arrives -> file at server)",
                "-",
                f"{med(name, 'upload'):.2f} s ({rate(med(name, 'upload'))})",
                None,
            )
        report.add(
            "curl: upload only (request arrives -> file at server)",
            "-",
            f"{med('curl', 'upload'):.2f} s ({rate(med('curl', 'upload'))})",
            None,
        )
        ratio = med("curl", "transfer") / med("send", "transfer")
        report.add(
            "send speed vs curl (start -> file at server, incl. pre-flight)", ">= 0.8x", f"{ratio:.2f}x", ratio >= 0.8
        )
        report.add(
            "send speed vs curl, upload only", "-", f"{med('curl', 'upload') / med('send', 'upload'):.2f}x", None
        )
        report.add(
            "once speed vs curl (start -> file at server)",
            "-",
            f"{med('curl', 'transfer') / med('once', 'transfer'):.2f}x",
            None,
        )
        report.add(
            "whole command incl. server import: curl / send / once",
            "-",
            " / ".join(f"{med(k, 'total'):.2f} s" for k in ("curl", "send", "once")),
            None,
        )
        for name in ("send", "once"):
            rss = med(name, "rss")
            report.add(f"{name}: peak RSS", "<= 64 MB", f"{rss:.1f} MB", rss <= 64)
        report.add("curl: peak RSS", "-", f"{med('curl', 'rss'):.1f} MB", None)
        report.add(
            "client CPU user+sys (whole command): curl / send / once",
            "-",
            " / ".join(f"{med(k, 'cpu'):.2f} s" for k in ("curl", "send", "once")),
            None,
        )
        if args.patched:
            for name in ("send'", "once'"):
                report.add(
                    f"{name} (PYTHONPATH={args.patched}): start -> file at server",
                    "-",
                    f"{med(name, 'transfer'):.2f} s, {med('curl', 'transfer') / med(name, 'transfer'):.2f}x "
                    f"curl; pre-flight part {med(name, 'before'):.2f} s; peak RSS {med(name, 'rss'):.1f} MB",
                    None,
                )
        problems = [s.problem for ss in samples.values() for s in ss if s.problem]
        report.add("every upload complete and accepted", "all", "all" if not problems else "NO", not problems)
        for problem in problems:
            report.note(problem)
        return c.finish(report)


if __name__ == "__main__":
    sys.exit(main())
