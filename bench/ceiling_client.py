"""The ceiling: a bare keep-alive httpx loop posting files, nothing else.

No settling, pre-flight, claiming, results or archiving: what any Python client
on httpx could do at best. Run as its own process (interpreter start and imports
included, like the product's) by bench_throughput.py; also usable with
``--clients N`` (threads, one keep-alive client each) by bench_emulator.py.

    python bench/ceiling_client.py URL CA USER PASSWORD FILE... [--clients N] [--repeat R]

Prints one JSON line: {"loop_seconds", "start", "end", "requests", "ok", "statuses"}.
"""

from __future__ import annotations

import argparse
import json
import ssl
import threading
import time
from collections import Counter

import httpx


def post_all(url: str, ca: str, auth: tuple[str, str], files: list[str], counter: Counter, lock: threading.Lock,
             deadline: float) -> None:
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


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("ca")
    parser.add_argument("user")
    parser.add_argument("password")
    parser.add_argument("files", nargs="+")
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=1, help="post the list this many times (per client)")
    parser.add_argument("--max-seconds", type=float, default=300.0)
    args = parser.parse_args()
    counter: Counter = Counter()
    lock = threading.Lock()
    deadline = time.monotonic() + args.max_seconds
    work = args.files * args.repeat
    started_epoch = time.time()
    started = time.perf_counter()
    if args.clients == 1:
        post_all(args.url, args.ca, (args.user, args.password), work, counter, lock, deadline)
    else:
        threads = [threading.Thread(target=post_all, args=(args.url, args.ca, (args.user, args.password), work,
                                                           counter, lock, deadline))
                   for _ in range(args.clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    seconds = time.perf_counter() - started
    ok = counter.pop("ok", 0)
    print(json.dumps({"loop_seconds": seconds, "start": started_epoch, "end": started_epoch + seconds,
                      "requests": sum(counter.values()), "ok": ok,
                      "statuses": {str(k): v for k, v in counter.items()}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
