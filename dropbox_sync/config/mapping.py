"""Column mapping: what Infiniti receives, built from the columns of an export as it is.

    [inbox.columns]                       # output column = template over export columns
    username = "{studCode}"
    library-group = "Year {scholasticYear}"
    system-group = "Student"

    [inbox.values.library-group]          # rendered value -> value sent
    "Year 07" = "Year 7"

A template is literal text with ``{Name}`` placeholders; ``{{`` and ``}}`` are
literal braces. Nothing else is evaluated: no attribute access, indexing,
conversions or format specs (those are refused with a message, not taken as
part of a column name, since a technician who writes ``{code:05}`` expects
formatting we do not do). Values are text and pass through untouched, so
leading zeros, long numbers and dates arrive as the export has them.

This module is pure (no files): ``config.py`` builds a ``ColumnMapping`` per
route, ``mapper.py`` streams an export through one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from dropbox_sync.errors import TemplateError

USERNAME = "username"
# The columns Infiniti's import cannot do without (preflight.py checks uploads for them).
REQUIRED_OUTPUT = ("username", "library-group", "system-group")
# Characters that mean "Python format syntax" inside a placeholder.
_FORMAT_SYNTAX = {"!": "a conversion", ":": "a format spec", "[": "indexing"}


def fold(name: str) -> str:
    """How column names are compared: case and surrounding spaces do not matter
    (as in Infiniti's import, our emulator and preflight.py)."""
    return name.strip().casefold()


@dataclass(frozen=True)
class Template:
    """A parsed template: literal text (str) and column references (``Column``)."""

    source: str
    parts: tuple[str | Column, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        """The export columns it reads, as written in the config."""
        return tuple(part.name for part in self.parts if isinstance(part, Column))

    @property
    def constant(self) -> str | None:
        """The text of a template without placeholders (the same on every row)."""
        return None if self.columns else "".join(p for p in self.parts if isinstance(p, str))


@dataclass(frozen=True)
class Column:
    name: str  # as written between the braces, surrounding spaces removed


def parse_template(text: str) -> Template:
    """Parse ``text``; a ``TemplateError`` says what is wrong (the caller adds the key)."""
    if not text.strip():
        raise TemplateError('is empty: give a column such as "{StudentID}" or a fixed value')
    parts: list[str | Column] = []
    literal: list[str] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char in "{}" and text.startswith(char * 2, i):
            literal.append(char)
            i += 2
        elif char == "}":
            raise TemplateError(f'has a "}}" with no "{{" before it (write "}}}}" for a literal brace): {text}')
        elif char == "{":
            end = text.find("}", i + 1)
            if end < 0:
                raise TemplateError(f'has a "{{" that is never closed (write "{{{{" for a literal brace): {text}')
            name = _placeholder(text[i + 1 : end], text)
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append(Column(name))
            i = end + 1
        else:
            literal.append(char)
            i += 1
    if literal:
        parts.append("".join(literal))
    return Template(text, tuple(parts))


def _placeholder(inner: str, text: str) -> str:
    name = inner.strip()
    if not name:
        raise TemplateError(f'has an empty placeholder "{{}}": name a column of the export: {text}')
    if "{" in name:
        raise TemplateError(f'has a "{{" inside a placeholder (write "{{{{" for a literal brace): {text}')
    for char, what in _FORMAT_SYNTAX.items():
        if char in name:
            raise TemplateError(
                f"uses {what} in {{{name}}}: only {{Column}} is supported, values are sent "
                f"as the export has them: {text}"
            )
    return name


@dataclass(frozen=True)
class ColumnMapping:
    """The columns Infiniti receives, in order, and per-column value replacements."""

    columns: tuple[tuple[str, Template], ...]  # (output column, template)
    values: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()  # (output column, (from, to)...)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)

    @property
    def source_columns(self) -> tuple[str, ...]:
        """Every export column the templates read, once each, in order of first use."""
        seen: dict[str, str] = {}
        for _, template in self.columns:
            for name in template.columns:
                seen.setdefault(fold(name), name)
        return tuple(seen.values())

    def replacements(self, output: str) -> dict[str, str]:
        return dict(next((pairs for name, pairs in self.values if name == output), ()))

    @property
    def username_index(self) -> int:
        return next(i for i, name in enumerate(self.output_names) if fold(name) == USERNAME)


def build(columns: object, values: object) -> ColumnMapping:
    """A mapping from the raw TOML tables; ``TemplateError`` names the offending sub-key
    (``columns.username``, ``values.library-group."Year 07"``) for config.py to prefix."""
    if not isinstance(columns, Mapping) or not columns:
        raise TemplateError('must be a table of output column = template, e.g. username = "{StudentID}"', key="columns")
    parsed: list[tuple[str, Template]] = []
    seen: dict[str, str] = {}
    for name, text in columns.items():
        key = f"columns.{name}"
        if not name.strip():  # key=f"columns.{name}" would read "columns. names ..."
            raise TemplateError(
                f"has an output column with no name ({json.dumps(name)} = ...): name it as "
                "Infiniti's import expects, e.g. username",
                key="columns",
            )
        if fold(name) in seen:
            raise TemplateError(f'repeats column "{seen[fold(name)]}" (names are compared ignoring case)', key=key)
        seen[fold(name)] = name
        if not isinstance(text, str):
            raise TemplateError('must be text in quotes, e.g. "{StudentID}" or "Student"', key=key)
        try:
            parsed.append((name, parse_template(text)))
        except TemplateError as exc:
            raise TemplateError(str(exc), key=key) from None
    username = next((t for name, t in parsed if fold(name) == USERNAME), None)
    if username is not None and username.constant is not None:
        # Every row would be the same user; "{{studCode}}" (a Jinja habit) is the usual cause.
        hint = (
            f' ("{{{{" and "}}}}" are literal braces: write "{username.constant}")' if "{" in username.constant else ""
        )
        raise TemplateError(
            f'must name a column of the export, e.g. "{{StudentID}}": a fixed username would make '
            f"every row the same user{hint}",
            key=f"columns.{seen[USERNAME]}",
        )
    missing = [c for c in REQUIRED_OUTPUT if c not in seen]
    if missing:
        raise TemplateError(f"lacks {', '.join(missing)}: Infiniti needs {', '.join(REQUIRED_OUTPUT)}", key="columns")
    return ColumnMapping(tuple(parsed), _values(values, seen))


def _values(values: object, produced: Mapping[str, str]) -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
    if values is None:
        return ()
    if not isinstance(values, Mapping):
        raise TemplateError('must be tables such as [inbox.values.library-group] of "from" = "to"', key="values")
    out = []
    for column, table in values.items():
        key = f"values.{column}"
        if fold(column) not in produced:
            raise TemplateError(
                f"names a column that columns does not produce (it has: {', '.join(produced.values())})", key=key
            )
        if not isinstance(table, Mapping):
            raise TemplateError('must be a table of "rendered value" = "value to send"', key=key)
        pairs = []
        for before, after in table.items():
            if not isinstance(after, str):
                raise TemplateError("must be text in quotes", key=f'{key}."{before}"')
            pairs.append((before, after))
        out.append((produced[fold(column)], tuple(pairs)))
    return tuple(out)
