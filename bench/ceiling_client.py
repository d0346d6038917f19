"""The ceilings: a bare keep-alive httpx loop posting files, and the same loop made durable.

Bare (the default): no settling, pre-flight, claiming, results or archiving;
what any Python client on httpx could do at best. Also usable with
``--clients N`` (threads, one keep-alive client each) by bench_emulator.py.

Durable (``--durable INBOX``): the least a crash-safe uploader must add to that
loop, per file of INBOX (listed once, in name order): claim it by a rename into
INBOX/sending/, post it, write the reply to a temp file in INBOX/processed/,
fsync it and rename it into place (<name>.result.json), then rename the file
into INBOX/processed/. After a crash every file is whole in one place, and one
that was archived has its result beside it. No settling, pre-flight, journal,
log or report.

Run as its own process (interpreter start and imports included, like the
product's) by bench_throughput.py.

    python bench/ceiling_client.py URL CA USER PASSWORD FILE... [--clients N] [--repeat R]
    python bench/ceiling_client.py URL CA USER PASSWORD --durable INBOX

Prints one JSON line: {"loop_seconds", "start", "end", "requests", "ok", "statuses"}.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import threading
import time
from collections import Counter

import httpx


def post_all(
    url: str, ca: str, auth: tuple[str, str], files: list[str], counter: Counter, lock: threading.Lock, deadline: float
) -> None:
    context = ssl.create_default_context(cafile=ca)
    with httpx.Client(verify=context, auth=httpx.BasicAuth(*auth), timeout=60) as client:
        for path in files:
            if time.monotonic() > deadline:
                break
            with open(path, "rb") as handle:
                response = client.post(url, files={"file": (path.rsplit("/", 1)[-1], handle, "text/csv")})
            success = response.status_code == 200 and response.json().get("success") is True
            with lock:
                counter[response.status_code] += 1
                counter["ok"] += success


def post_durably(url: str, ca: str, auth: tuple[str, str], inbox: str, counter: Counter, deadline: float) -> None:
    """The durable ceiling: claim, post, result (temp, fsync, rename), archive; one file at a time."""
    sending, processed = os.path.join(inbox, "sending"), os.path.join(inbox, "processed")
    os.makedirs(sending, exist_ok=True)
    os.makedirs(processed, exist_ok=True)
    names = sorted(e.name for e in os.scandir(inbox) if e.is_file(follow_symlinks=False))
    context = ssl.create_default_context(cafile=ca)
    with httpx.Client(verify=context, auth=httpx.BasicAuth(*auth), timeout=60) as client:
        for name in names:
            if time.monotonic() > deadline:
                break
            claimed = os.path.join(sending, name)
            os.rename(os.path.join(inbox, name), claimed)
            with open(claimed, "rb") as handle:
                response = client.post(url, files={"file": (name, handle, "text/csv")})
            body = response.json()
            success = response.status_code == 200 and body.get("success") is True
            result = os.path.join(processed, name + ".result.json")
            temporary = os.path.join(processed, f".{name}.result.json.tmp")
            with open(temporary, "w", encoding="utf-8") as out:
                json.dump({"file": name, "http_status": response.status_code, **body}, out)
                out.flush()
                os.fsync(out.fileno())
            os.rename(temporary, result)
            os.rename(claimed, os.path.join(processed, name))
            counter[response.status_code] += 1
            counter["ok"] += success


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("ca")
    parser.add_argument("user")
    parser.add_argument("password")
    parser.add_argument("files", nargs="*")
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=1, help="post the list this many times (per client)")
    parser.add_argument("--durable", metavar="INBOX", help="the durable ceiling over the files of INBOX")
    parser.add_argument("--max-seconds", type=float, default=300.0)
    args = parser.parse_args()
    if bool(args.durable) == bool(args.files):
        parser.error("give FILE... or --durable INBOX")
    counter: Counter = Counter()
    lock = threading.Lock()
    deadline = time.monotonic() + args.max_seconds
    work = args.files * args.repeat
    auth = (args.user, args.password)
    started_epoch = time.time()
    started = time.perf_counter()
    if args.durable:
        post_durably(args.url, args.ca, auth, args.durable, counter, deadline)
    elif args.clients == 1:
        post_all(args.url, args.ca, auth, work, counter, lock, deadline)
    else:
        threads = [
            threading.Thread(target=post_all, args=(args.url, args.ca, auth, work, counter, lock, deadline))
            for _ in range(args.clients)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    seconds = time.perf_counter() - started
    ok = counter.pop("ok", 0)
    print(
        json.dumps(
            {
                "loop_seconds": seconds,
                "start": started_epoch,
                "end": started_epoch + seconds,
                "requests": sum(counter.values()),
                "ok": ok,
                "statuses": {str(k): v for k, v in counter.items()},
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
