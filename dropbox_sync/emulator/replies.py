"""HTTP replies as plain values, so the handler only has to send them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from dropbox_sync.emulator import wording

JSON = "application/json"


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str = JSON
    headers: tuple[tuple[str, str], ...] = field(default=())
    # What the upload record says about this reply (None when it is not JSON).
    success: bool | None = None
    summary: str | None = None


def json_reply(status: int, payload: dict[str, Any], headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    return Reply(
        status,
        body,
        headers=headers,
        success=payload.get("success"),
        summary=payload.get("summary"),
    )


def failure(status: int, summary: str, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    return json_reply(status, {"success": False, "summary": summary}, headers)


def unauthorised() -> Reply:
    return failure(401, wording.UNAUTHORISED, (("WWW-Authenticate", 'Basic realm="Infiniti"'),))


def forbidden() -> Reply:
    return failure(403, wording.FORBIDDEN)


def not_found() -> Reply:
    return failure(404, wording.NOT_FOUND)


def method_not_allowed() -> Reply:
    return failure(405, wording.METHOD_NOT_ALLOWED, (("Allow", "POST"),))


def bad_request(summary: str) -> Reply:
    return failure(400, summary)


def text(
    status: int, body: str, content_type: str = "text/plain; charset=utf-8", headers: tuple[tuple[str, str], ...] = ()
) -> Reply:
    return Reply(status, body.encode("utf-8"), content_type, headers)
