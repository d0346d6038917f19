"""What a server answered, read defensively: pure logic, no network.

Everything a server sends is untrusted: size, encoding, nesting, types,
headers (DESIGN §9). Once it has answered, the import happened, so reading the
answer must never fail: ``read_reply`` turns any bytes into a ``Reply``, keeping
every part that can be read and saying what could not (``Reply.problem``), and
never raises. The bytes come capped at ``MAX_REPLY_BYTES`` by client.py.
"""

from __future__ import annotations

import codecs
import datetime as dt
import email.utils
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from dropbox_sync.pipeline.archive_names import display_name
from dropbox_sync.redact import scrub

# Infiniti's reply lists every row's outcome when some fail: about 100 bytes a
# row, so 4 MiB holds the details of a 40,000-row file. Past it, the rest of
# the reply is not read at all (a hostile or broken server could send gigabytes).
MAX_REPLY_BYTES = 4 * 1024 * 1024
# Nesting kept in results; deeper parts are replaced by a note. Python's own
# JSON writer recurses, so an unbounded depth would fail writing the result.
MAX_DEPTH = 32
TEXT_SNIPPET = 2000  # of a reply that is not JSON (a proxy's HTML page), kept for people
SUMMARY_CHARS = 500  # of the summary shown in logs, emails and status
MAX_RETRY_AFTER = 86_400.0  # a day: longer is a server's mistake, not a plan
TOO_DEEP = "(nested deeper than dropbox-sync keeps; not kept)"
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_SURROGATE = re.compile("[\ud800-\udfff]")
_DIGITS = re.compile("[0-9]+")  # str.isdigit() also accepts '²', which float() refuses
_LONGEST_NUMBER = 100  # digits: a longer integer is kept as its text


@dataclass(frozen=True)
class Reply:
    """What the server answered, whatever it was."""

    status: int
    body: dict[str, Any] | None  # the JSON object (or its readable leading part), when there was one
    text: str  # start of the body when it was not JSON ("" otherwise)
    retry_after: float | None
    seconds: float
    sha256: str | None = None  # of the bytes sent, hashed as they went out
    size: int = 0  # bytes of the reply read
    truncated: bool = False  # longer than MAX_REPLY_BYTES: the rest was not read
    problem: str | None = None  # what could not be read, for the result and the log

    @property
    def success(self) -> bool | None:
        """The server's verdict, or None if the reply carries none."""
        if self.body is None:
            return None
        value = self.body.get("success")
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"  # a verdict as text is still a verdict
        return value if isinstance(value, bool) else None

    @property
    def summary(self) -> str:
        """One line for people: the server's summary, or the start of what it sent."""
        value = self.body.get("summary") if self.body is not None else None
        return summary_line(self.text[:200].strip() or f"HTTP {self.status}" if value is None else value)

    def notes(self) -> dict[str, Any]:
        """Facts about the reply itself for the result file, when there is something to say."""
        if self.problem is None:
            return {}
        return {"reply_bytes_read": self.size, "reply_truncated": self.truncated, "reply_problem": self.problem}


def summary_line(value: object) -> str:
    """A summary as one line for people (logs, emails, status, the journal), however odd."""
    if not isinstance(value, str):
        value = json.dumps(value, ensure_ascii=False)
    line = display_name(" ".join(value.split()))
    return line if len(line) <= SUMMARY_CHARS else line[: SUMMARY_CHARS - 1] + "…"


def read_reply(
    status: int,
    content: bytes,
    *,
    content_type: str = "",
    retry_after: str | None = None,
    truncated: bool = False,
    seconds: float = 0.0,
) -> Reply:
    """Any reply as a ``Reply``; never raises (a bug here must not cause a re-upload loop)."""
    try:
        return _read(status, content, content_type, retry_after, truncated, seconds)
    except Exception as exc:  # noqa: BLE001 - the import happened; say so rather than fail
        return Reply(
            status,
            None,
            "",
            None,
            seconds,
            size=len(content),
            truncated=truncated,
            problem=f"the reply could not be read ({type(exc).__name__})",
        )


def _read(
    status: int, content: bytes, content_type: str, retry_after: str | None, truncated: bool, seconds: float
) -> Reply:
    problems = [f"longer than {MAX_REPLY_BYTES // 1024 // 1024} MiB; the rest was not read"] if truncated else []
    text, undecodable = _decode(content, content_type)
    if undecodable:
        problems.append("not valid UTF-8; undecodable bytes kept as U+FFFD")
    body, parse_problem = _json_object(text)
    if parse_problem:
        problems.append(parse_problem)
    snippet = "" if body is not None else scrub(_valid_text(text[:TEXT_SNIPPET]))
    return Reply(
        status,
        body,
        snippet,
        parse_retry_after(retry_after),
        seconds,
        size=len(content),
        truncated=truncated,
        problem="; ".join(problems) or None,
    )


def _decode(content: bytes, content_type: str) -> tuple[str, bool]:
    """The reply as text, and whether some bytes had to be replaced. JSON is UTF-8 (RFC 8259);
    a charset the server names is honoured when the bytes are not UTF-8."""
    content = content.removeprefix(codecs.BOM_UTF8)
    try:
        return content.decode("utf-8"), False
    except UnicodeDecodeError:
        pass
    charset = re.search(r"charset=\"?([\w.:-]+)", content_type, re.IGNORECASE)
    if charset:
        try:
            return content.decode(charset.group(1)), False
        except (LookupError, UnicodeDecodeError):
            pass
    return content.decode("utf-8", "replace"), True


def _json_object(text: str) -> tuple[dict[str, Any] | None, str | None]:
    """The reply's JSON object, else its complete leading members (a reply cut off, or one
    too deep to parse whole, still says ``success`` first), and what went wrong."""
    decoder = _decoder()
    try:
        value = decoder.decode(text)
    except (ValueError, RecursionError) as exc:
        members = _leading_members(text, decoder)
        if members is None and isinstance(exc, RecursionError):
            return None, "JSON nested too deep to read"
        if members is None:
            return None, ("not JSON" if text.strip() else None)
        return _clean(members, 0), "not complete JSON; only its leading members were read"
    if not isinstance(value, dict):
        return None, "JSON, but not an object"
    return _clean(value, 0), None


def _decoder() -> json.JSONDecoder:
    # NaN, Infinity, 1e999 and 5,000-digit integers are kept as their text: the result
    # file must be strict JSON, and int() refuses over 4,300 digits (a ValueError).
    return json.JSONDecoder(
        parse_constant=str, parse_float=_number(float), parse_int=_number(int), object_pairs_hook=_object
    )


def _number(kind: type):
    def parse(text: str) -> Any:
        if len(text) > _LONGEST_NUMBER:
            return text
        value = kind(text)
        return value if math.isfinite(value) else text

    return parse


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object; a repeated key with different values keeps them all (in order), so
    ``{"success": true, "success": false}`` carries no verdict instead of a guessed one."""
    result: dict[str, Any] = {}
    repeated: set[str] = set()
    for key, value in pairs:
        if key in result and result[key] != value:
            result[key] = ([*result[key]] if key in repeated else [result[key]]) + [value]
            repeated.add(key)
        elif key not in result:
            result[key] = value
    return result


def _leading_members(text: str, decoder: json.JSONDecoder) -> dict[str, Any] | None:
    """The members of a top-level object up to where it stops being readable JSON."""
    index = _WHITESPACE.match(text, 0).end()
    if not text.startswith("{", index):
        return None
    pairs: list[tuple[str, Any]] = []
    index += 1
    while True:
        index = _WHITESPACE.match(text, index).end()
        if not text.startswith('"', index):
            break
        try:
            key, index = json.decoder.scanstring(text, index + 1)
            index = _WHITESPACE.match(text, index).end()
            if not text.startswith(":", index):
                break
            value, index = decoder.raw_decode(text, _WHITESPACE.match(text, index + 1).end())
        except (ValueError, RecursionError):
            break
        pairs.append((key, value))
        index = _WHITESPACE.match(text, index).end()
        if not text.startswith(",", index):
            break
        index += 1
    return _object(pairs) if pairs else None


def _clean(value: Any, depth: int) -> Any:
    """The value with lone surrogates as U+FFFD (they cannot be written as UTF-8, nor stored
    in SQLite) and nothing deeper than MAX_DEPTH."""
    if isinstance(value, str):
        return _valid_text(value)
    if isinstance(value, dict | list) and depth >= MAX_DEPTH:
        return TOO_DEEP
    if isinstance(value, dict):
        return {_valid_text(k): _clean(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v, depth + 1) for v in value]
    return value


def _valid_text(text: str) -> str:
    return _SURROGATE.sub("\ufffd", text)


def parse_retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Seconds to wait, from Retry-After's seconds or HTTP date (RFC 9110 §10.2.3), within
    [0, MAX_RETRY_AFTER]; None for anything else (the header is only advice)."""
    if not value:
        return None
    value = value.strip()
    if _DIGITS.fullmatch(value):
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        seconds = (when - (now or dt.datetime.now(dt.UTC))).total_seconds()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER)
