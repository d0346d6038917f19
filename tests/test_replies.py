"""Odd, hostile and oversized replies: once the server has answered, the import happened.

No reply, however odd, may make the same file go up again and again. Each case
runs the real pipeline (``once``) against a small scripted server on 127.0.0.1
(the emulator cannot misbehave like this on cue) and counts the uploads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from dropbox_sync import config
from dropbox_sync.pipeline.outcome import FOREIGN_REPLIES_BEFORE_HOLD
from dropbox_sync.pipeline.rows import failed_rows, row_number
from dropbox_sync.pipeline.runner import Pipeline
from tests.badservers import Scripted, ScriptedServer, json_bytes
from tests.support import archived, good_csv, write_config

DEEP = 100_000


def once(tmp_path: Path, server: ScriptedServer, **settings) -> tuple[Path, object]:
    inbox = tmp_path / "inbox"
    config_path = write_config(
        tmp_path, server, settle_seconds=0, retry_first_seconds=0.01, once_retry_seconds=20, **settings
    )
    (inbox / "a.csv").write_text(good_csv("a"), encoding="utf-8")
    return inbox, Pipeline(config.load(config_path)).once(threading.Event())


def strict_json(path: Path) -> dict:
    """The result file as a strict JSON reader (not Python's lenient one) would see it."""

    def refuse(name: str):
        raise AssertionError(f"result file holds {name}, which is not JSON")

    return json.loads(path.read_text(encoding="utf-8", errors="strict"), parse_constant=refuse)


SUCCESS_DESPITE_ODDITIES = [
    pytest.param(
        Scripted(
            body=b'{"success": true, "summary": "1 users processed", "details": ' + b"[" * DEEP + b"]" * DEEP + b"}"
        ),
        id="details-nested-100000-deep",
    ),
    pytest.param(
        Scripted(body=json_bytes('{"success": true, "summary": "Zo\\ud800 imported"}')),
        id="lone-surrogate-escape-in-summary",
    ),
    pytest.param(Scripted(body='{"success": true, "summary": "Zoë imported"}'.encode("cp1252")), id="one-cp1252-byte"),
    pytest.param(
        Scripted(body=b'{"success": true, "summary": "\xed\xa0\x80 raw surrogate bytes"}'), id="raw-surrogate-bytes"
    ),
    pytest.param(Scripted(body=b'\xef\xbb\xbf{"success": true, "summary": "with a BOM"}'), id="utf8-bom"),
    pytest.param(Scripted(body=b'{"success": "true", "summary": "a string verdict"}'), id="success-as-string"),
    pytest.param(Scripted(body=b'{"success": true, "summary": ["not", "a", "string"]}'), id="summary-a-list"),
    pytest.param(Scripted(body=b'{"success": true, "summary": 12}'), id="summary-a-number"),
    pytest.param(
        Scripted(body=b'{"success": true, "summary": "ok", "details": ["1", "User Created"]}'), id="details-a-list"
    ),
    pytest.param(
        Scripted(body=b'{"success": true, "summary": "ok", "n": NaN, "i": -Infinity, "f": 1e999}'),
        id="nan-and-infinities",
    ),
    pytest.param(
        Scripted(body=b'{"success": true, "summary": "ok", "n": 1' + b"0" * 50_000 + b"}"), id="integer-of-50000-digits"
    ),
    pytest.param(
        Scripted(body=b'{"success": true, "summary": "ok\\u0000\\n2026-01-01 | SUCCESS | forged"}'),
        id="control-characters-in-summary",
    ),
    pytest.param(Scripted(status=503, headers=(("Retry-After", "²"),)), id="retry-after-superscript-two"),
    pytest.param(Scripted(status=503, headers=(("Retry-After", "-5"),)), id="retry-after-negative"),
    pytest.param(Scripted(status=503, headers=(("Retry-After", "9" * 400),)), id="retry-after-huge"),
    pytest.param(
        Scripted(status=503, headers=(("Retry-After", "Fri, 31 Dec 99999 23:59:59 GMT"),)),
        id="retry-after-date-out-of-range",
    ),
    pytest.param(
        Scripted(status=503, headers=(("Retry-After", "Wed, 21 Oct 2015 07:28:00 GMT"),)),
        id="retry-after-date-in-the-past",
    ),
]


@pytest.mark.parametrize("first", SUCCESS_DESPITE_ODDITIES)
def test_an_odd_reply_never_loops_and_a_readable_verdict_is_kept(tmp_path, first):
    ok = Scripted(body=b'{"success": true, "summary": "1 users processed."}')
    with ScriptedServer(first, ok) as server:
        # retry_max_seconds caps what a Retry-After may ask for (a day, a year).
        inbox, result = once(tmp_path, server, retry_max_seconds=0.2)
    assert not result.held, result.held
    [done] = archived(inbox, "processed")
    saved = strict_json(done.with_name(done.name + ".result.json"))
    assert saved["success"] is True or saved["success"] == "true"
    assert isinstance(saved["summary"], str | list | int)
    # A 503 is a passing fault: one retry; every other reply carried a verdict: no retry.
    assert server.stats.requests == (2 if first.status == 503 else 1)
    text = json.dumps(saved)
    assert "\\ud800" not in text.lower(), "no lone surrogate is written"
    report = result.reports[-1]
    assert "\n" not in report.summary and "\x00" not in report.summary, "one log line per reply"


FOREIGN = [
    pytest.param(Scripted(body=b"[" * DEEP + b"]" * DEEP), id="whole-body-nested-100000-deep"),
    pytest.param(
        Scripted(body=b"<html>Please log in to the wifi</html>", headers=(("Content-Type", "text/html"),)),
        id="captive-portal-html",
    ),
    pytest.param(Scripted(body=b'{"result": "ok"}'), id="json-but-not-infiniti"),
    pytest.param(
        Scripted(body=b'{"success": true, "summary": "a", "success": false}'), id="duplicate-success-keys-that-disagree"
    ),
    pytest.param(Scripted(body=b'{"success": tru'), id="cut-off-before-the-verdict"),
    pytest.param(Scripted(body=b"\xff\xfe\x00\x00garbage"), id="binary-garbage"),
    pytest.param(Scripted(status=418, body=b""), id="empty-body"),
]


@pytest.mark.parametrize("reply", FOREIGN)
def test_a_reply_that_is_not_infiniti_is_retried_a_few_times_then_holds_the_inbox(tmp_path, reply):
    with ScriptedServer(reply) as server:
        inbox, result = once(tmp_path, server)
    assert server.stats.requests == FOREIGN_REPLIES_BEFORE_HOLD, "bounded: no re-upload loop"
    reason = result.held["inbox"]
    assert "not an Infiniti import reply" in reason and f"{FOREIGN_REPLIES_BEFORE_HOLD} times in a row" in reason
    assert "check that 'url' is the import address" in reason
    if reply.body == b"[" * DEEP + b"]" * DEEP:
        assert "(not an Infiniti import reply: JSON nested too deep to read)" in reason
    assert len(list((inbox / "sending").iterdir())) == 1, "the file waits, claimed, nothing lost"
    assert archived(inbox, "failed") == []


def test_send_prints_any_reply_even_to_a_legacy_code_page(tmp_path):
    # A scheduled task on Windows captures stdout in the ANSI code page (cp1252), which has
    # no '✓' or U+FFFD: printing the reply must not end in a traceback.
    reply = Scripted(body=json_bytes('{"success": true, "summary": "\u2713 Zo\u00eb \\ud800 imported"}'))
    with ScriptedServer(reply) as server:
        config_path = write_config(tmp_path, server)
        loose = tmp_path / "a.csv"
        loose.write_text(good_csv("a"), encoding="utf-8")
        done = subprocess.run(
            [sys.executable, "-m", "dropbox_sync", "--config", str(config_path), "send", str(loose)],
            check=False,
            capture_output=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONIOENCODING": "cp1252"},
        )
    assert b"Traceback" not in done.stderr, done.stderr.decode("cp1252", "replace")
    assert done.returncode == 0
    assert '"summary": "\\u2713 Zo\xeb \\ufffd imported"'.encode("cp1252") in done.stdout


def test_odd_row_numbers_in_details_are_listed_as_text_never_an_exception(tmp_path):
    # The failed-rows list of results, emails and report.html read the reply's details.
    details = {
        "²": "Field (x) is bad.",
        "9" * 5000: "also bad",
        "-1": "odd",
        "2": "Field (y) is bad.",
        "1": "User Created",
    }
    export = tmp_path / "export.csv"
    export.write_text(good_csv("u1", "u2"), encoding="utf-8")
    shown, more = failed_rows(details, export)
    assert more == 0
    assert [(r.row, r.line, r.username) for r in shown] == [
        (2, 3, "u2"),
        ("-1", None, ""),
        ("9" * 5000, None, ""),
        ("²", None, ""),
    ]
    assert row_number("²") is None and row_number("12") == 12
