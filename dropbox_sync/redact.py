"""Keeping secrets out of every byte the product writes: the one scrubbing layer.

Passwords are wrapped in ``Secret`` (its repr is ``***``) and registered here
as soon as they are read, before anything parses a URL that may hold one;
``scrub`` then blanks every registered secret, in every form it can take on
the way out (raw, URL-encoded, form-encoded, JSON-escaped, HTML-escaped, and
the Basic Auth token), in any text. Everything we write goes through it:

- log sinks, every format (log.py), including tracebacks;
- stdout and stderr of every command (cli.py wraps both streams);
- results, status.json and notify.json (``folder.Folder`` writes them as
  ``to_json`` encodes them: scrubbed before encoding) and report pages;
- the journal (journal.py) and emails (mail.py).

URLs are shown without their ``user:password@`` part by ``redact_url``, which
works on the text itself, so even a URL Python cannot parse loses them.
"""

from __future__ import annotations

import base64
import html
import json
import re
import threading
import urllib.parse
from typing import Any

MASK = "***"

_lock = threading.Lock()
_secrets: set[str] = set()
_in_json: set[str] = set()  # each of _secrets as it reads inside a JSON string (see to_json)
_ENCODE = json.JSONEncoder(ensure_ascii=False).encode  # no indent: the C encoder


class Secret:
    """A password that refuses to show itself in reprs, f-strings and tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        register_secret(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def register_secret(value: str) -> None:
    """Remember a secret so ``scrub`` removes it, in every encoded form, wherever it turns up."""
    # Very short secrets would blank ordinary words; a 1-2 character password
    # is refused by config validation anyway.
    if value and len(value) >= 3:
        forms = {
            value,
            urllib.parse.quote(value, safe=""),  # inside URLs (httpx, curl)
            urllib.parse.quote(value),
            urllib.parse.quote_plus(value),  # form-encoded
            json.dumps(value)[1:-1],  # inside JSON, e.g. a server reply quoting it
            json.dumps(value, ensure_ascii=False)[1:-1],
            html.escape(value),  # a report page
        }
        kept = {form for form in forms if len(form) >= 3}
        with _lock:
            _secrets.update(kept)
            _in_json.update(_json_escaped(form) for form in kept)


def register_basic_auth(username: str, password: str) -> None:
    """The ``Authorization: Basic`` token of a user and password is a secret too."""
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    register_secret(token)


def scrub(text: str) -> str:
    """Return ``text`` with every registered secret replaced by ``***``."""
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def scrub_data(data: Any) -> Any:
    """JSON-like data with every string (keys too) scrubbed: scrub BEFORE encoding,
    so no escaping can hide a secret from ``scrub``."""
    if isinstance(data, str):
        return scrub(data)
    if isinstance(data, dict):
        return {scrub_data(key): scrub_data(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [scrub_data(item) for item in data]
    return data


def _json_escaped(text: str) -> str:
    return _ENCODE(text)[1:-1]


def to_json(data: dict[str, Any]) -> str:
    """``data`` as JSON for people, every registered secret blanked: one line per key or item
    of any object or list of more than three (a result's ``details`` row by row, each user it
    lists), four levels deep at most; small ones on one line.

    Encoded by the C encoder (``indent`` would take the pure-Python one: a third of the cost
    of a result), and as it is first. JSON escapes character by character, so a string
    holding a secret in any of its forms shows that form, escaped, in the text: only then is
    the data scrubbed string by string (``scrub_data``) and encoded again, so no escaping can
    hide a secret."""
    text = _pretty(data) + "\n"
    with _lock:
        found = any(form in text for form in _in_json)
    return _pretty(scrub_data(data)) + "\n" if found else text


_STRING = json.encoder.encode_basestring  # a str as JSON, non-ASCII kept: the C function
_CONTAINERS = (dict, list, tuple)


def _c_encoder() -> Any:
    """``_ENCODE`` without its cost per call: ``JSONEncoder.encode`` makes a new C encoder
    each time, more than the text of a small object costs (a result lists each user as
    one). This is the one it makes (json/encoder.py, ``iterencode``), made once; without
    the circular-reference check, which JSON parsed from a reply and our own dicts never
    need. None where the C encoder is missing or differs: ``_ENCODE`` then."""
    make = getattr(json.encoder, "c_make_encoder", None)
    try:
        encode = make(None, json.JSONEncoder().default, _STRING, None, ": ", ", ", False, False, True)
        return encode if "".join(encode({"a": [1]}, 0)) == '{"a": [1]}' else None
    except Exception:  # noqa: BLE001 - a probe: missing (None), another signature, anything odd
        return None


_C_ENCODE = _c_encoder()


def _one_line(value: Any) -> str:
    return "".join(_C_ENCODE(value, 0)) if _C_ENCODE is not None else _ENCODE(value)


def _pretty(value: Any, depth: int = 0) -> str:
    """A container with more than three items, or holding a container, gets one line per
    item, four levels deep at most; anything else is one line, by the C encoder."""
    kind = type(value)
    if kind is str:
        return _STRING(value)
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if kind is int:
        return int.__repr__(value)
    if depth >= 4 or not isinstance(value, _CONTAINERS):
        return _one_line(value)
    if len(value) <= 3:
        for item in value.values() if kind is dict else value:
            if isinstance(item, _CONTAINERS) and item:
                break
        else:  # nothing inside to break into lines
            return _one_line(value)
    pad, end = "  " * (depth + 1), "\n" + "  " * depth
    if kind is dict:
        items = ",\n".join(f"{pad}{_key(key)}: {_pretty(item, depth + 1)}" for key, item in value.items())
        return "{\n" + items + end + "}"
    return "[\n" + ",\n".join(pad + _pretty(item, depth + 1) for item in value) + end + "]"


def _key(key: Any) -> str:
    """An object key as JSON writes it (a number, true or null becomes a string)."""
    return _STRING(key) if type(key) is str else _ENCODE({key: 0})[1:-4]


class ScrubbingStream:
    """A text stream that scrubs everything written to it (stdout, stderr, log consoles).

    A closed or broken stream (a service without a console, ``| head``) must
    not stop the job: write errors are swallowed."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        try:
            self.stream.write(scrub(text))
        except (OSError, ValueError):
            pass
        return len(text)

    def flush(self) -> None:
        try:
            self.stream.flush()
        except (OSError, ValueError):
            pass

    def isatty(self) -> bool:
        try:
            return self.stream.isatty()
        except (AttributeError, OSError, ValueError):
            return False

    def __getattr__(self, name: str) -> Any:  # encoding, fileno, buffer...
        return getattr(self.stream, name)


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def _userinfo_span(url: str) -> tuple[int, int] | None:
    """Where ``user:password`` sits in ``scheme://user:password@host/...``, found in
    the text itself: no parsing that a stray ``[`` or a bad port could break.

    People write passwords unencoded, a ``/`` included, which ends the authority
    for RFC 3986; so the last ``@`` before any ``?`` or ``#`` counts, unless what
    precedes it is plainly a host (no ``user:`` before the first ``/``, or a port)."""
    scheme = _SCHEME.match(url)
    if not scheme:
        return None
    start = scheme.end()
    stop = min((i for i in (url.find("?", start), url.find("#", start)) if i >= 0), default=len(url))
    at = url.rfind("@", start, stop)
    if at < 0:
        return None
    userinfo = url[start:at]
    if "/" in userinfo:
        _, colon, secret = userinfo.split("/", 1)[0].partition(":")
        if not colon or not secret or secret.isdigit():
            return None  # host[:port]/path with an @ in the path
    return start, at


def redact_url(url: str) -> str:
    """``https://user:pw@host/x`` -> ``https://host/x`` (query kept), also for a URL
    that does not parse (a stray ``[``, a bad port): the credentials go first."""
    span = _userinfo_span(url)
    if span is not None:
        url = url[: span[0]] + url[span[1] + 1 :]
    return scrub(url)
