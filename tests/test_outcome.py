"""The verdict on a server reply (pure logic: every status the emulator cannot send)."""

from __future__ import annotations

import datetime as dt

import pytest

from dropbox_sync.pipeline.client import Reply
from dropbox_sync.pipeline.outcome import Outcome, judge
from dropbox_sync.pipeline.reply import MAX_RETRY_AFTER, parse_retry_after, read_reply


def reply(status: int, body: dict | None, text: str = "") -> Reply:
    return Reply(status, body, text, None, 0.1)


@pytest.mark.parametrize(
    ("status", "body", "expected", "reason"),
    [
        (200, {"success": True, "summary": "ok"}, Outcome.PROCESSED, "ok"),
        (200, {"success": False, "summary": "1 user failed."}, Outcome.FAILED, "1 user failed."),
        (400, {"success": False, "summary": "No file was uploaded."}, Outcome.FAILED, "No file was uploaded."),
        (
            401,
            {"success": False, "summary": "Unauthorised. Check credentials."},
            Outcome.HELD,
            "HTTP 401: credentials were rejected (Unauthorised. Check credentials.)",
        ),
        (
            403,
            None,
            Outcome.HELD,
            "HTTP 403: the account lacks system administration rights (<html>Bad Gateway</html>)",
        ),
        (
            404,
            {"success": False, "summary": "Not found."},
            Outcome.HELD,
            "HTTP 404: the import URL does not exist; check its path: Infiniti imports at /api/import/users or "
            "/api/import/userGroups?tenantId=TENANT (Not found.)",
        ),
        (429, {"success": False, "summary": "slow down"}, Outcome.RETRY, "slow down"),
        (
            500,
            {"success": False, "summary": "An unexpected error occurred."},
            Outcome.RETRY,
            "An unexpected error occurred.",
        ),
        (502, None, Outcome.RETRY, "HTTP 502: <html>Bad Gateway</html> (not an Infiniti import reply)"),
        # HTML from a captive portal or proxy
        (200, None, Outcome.RETRY, "HTTP 200: <html>Bad Gateway</html> (not an Infiniti import reply)"),
        (
            200,
            {"result": "ok"},
            Outcome.RETRY,
            "HTTP 200: HTTP 200 (not an Infiniti import reply)",
        ),  # JSON, not Infiniti's
        (200, {"success": "yes", "summary": "done"}, Outcome.RETRY, "HTTP 200: done (not an Infiniti import reply)"),
        (200, {"success": "true", "summary": "done"}, Outcome.PROCESSED, "done"),  # a verdict as text
        (200, {"success": True, "summary": "two\nlines\x00"}, Outcome.PROCESSED, "two lines\\x00"),  # one log line
    ],
)
def test_judge(status, body, expected, reason):
    verdict, said = judge(reply(status, body, "<html>Bad Gateway</html>" if body is None else ""))
    assert (verdict, said) == (expected, reason)


def test_reasons_say_what_to_fix():
    assert (
        judge(reply(401, {"success": False, "summary": "Unauthorised."}))[1]
        == "HTTP 401: credentials were rejected (Unauthorised.)"
    )
    assert "not an Infiniti import reply" in judge(reply(502, None, "<html>Bad Gateway</html>"))[1]


NOW = dt.datetime(2026, 12, 2, 3, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("²", None),  # str.isdigit() says yes; float() says no
        ("-5", None),
        ("1.5", None),
        ("9" * 400, MAX_RETRY_AFTER),
        ("Wed, 02 Dec 2026 03:02:00 GMT", 120.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # in the past: now
        ("Fri, 31 Dec 9999 23:59:59 GMT", MAX_RETRY_AFTER),
        ("Fri, 31 Dec 99999 23:59:59 GMT", None),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_is_parsed_defensively(header, seconds):
    assert parse_retry_after(header, NOW) == seconds


def test_a_reply_too_big_keeps_its_leading_members_and_says_it_was_cut():
    head = b'{"success": true, "summary": "40000 users processed.", "details": {"1": "User Updated", "2": "Us'
    got = read_reply(200, head, truncated=True)
    assert got.success is True and got.summary == "40000 users processed."
    assert got.body == {"success": True, "summary": "40000 users processed."}
    assert got.notes() == {
        "reply_bytes_read": len(head),
        "reply_truncated": True,
        "reply_problem": "longer than 4 MiB; the rest was not read; "
        "not complete JSON; only its leading members were read",
    }


def test_reading_a_reply_never_raises(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug in reading")

    monkeypatch.setattr("dropbox_sync.pipeline.reply._decode", broken)  # stands in for any bug: none is known
    got = read_reply(200, b'{"success": true}')
    assert got.success is None and got.problem == "the reply could not be read (RuntimeError)"
    assert judge(got)[0] is Outcome.RETRY
