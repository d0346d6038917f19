"""The verdict on a server reply (pure logic: every status the emulator cannot send)."""

from __future__ import annotations

import pytest

from dropbox_sync.client import Reply
from dropbox_sync.outcome import Outcome, judge


def reply(status: int, body: dict | None, text: str = "") -> Reply:
    return Reply(status, body, text, None, 0.1)


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (200, {"success": True, "summary": "ok"}, Outcome.PROCESSED),
        (200, {"success": False, "summary": "1 user failed."}, Outcome.FAILED),
        (400, {"success": False, "summary": "No file was uploaded."}, Outcome.FAILED),
        (401, {"success": False, "summary": "Unauthorised. Check credentials."}, Outcome.HELD),
        (403, None, Outcome.HELD),
        (404, {"success": False, "summary": "Not found."}, Outcome.HELD),
        (429, {"success": False, "summary": "slow down"}, Outcome.RETRY),
        (500, {"success": False, "summary": "An unexpected error occurred."}, Outcome.RETRY),
        (502, None, Outcome.RETRY),
        (200, None, Outcome.RETRY),  # HTML from a captive portal or proxy
        (200, {"result": "ok"}, Outcome.RETRY),  # JSON, but not Infiniti's
        (200, {"success": "yes"}, Outcome.RETRY),
    ],
)
def test_judge(status, body, expected):
    verdict, reason = judge(reply(status, body, "<html>Bad Gateway</html>" if body is None else ""))
    assert verdict is expected
    assert reason


def test_reasons_say_what_to_fix():
    assert judge(reply(401, {"success": False, "summary": "Unauthorised."}))[1] == \
        "HTTP 401: credentials were rejected (Unauthorised.)"  # fmt: skip
    assert "not an Infiniti import reply" in judge(reply(502, None, "<html>Bad Gateway</html>"))[1]
