"""The one rule for identifiers, in batch (a table's column) and online (one value).

An id (a customer, a card, a store, a ticket, a partition key) is stored, used as a Redis key and
as a folder name of the lake, so every entry point applies the same rule:

* it is Unicode text, normalised to NFC (a composed and a decomposed "é" are one id);
* it is refused when it is empty, longer than `max_length` characters (a setting, 128 by
  default), has leading or trailing whitespace, or holds a character that is invisible or a
  control: the Unicode categories Cc, Cf, Zl, Zp, Co and Cn, and the default-ignorable
  characters (fillers such as U+3164, variation selectors);
* it is refused when it could leave its folder: a path separator (`/`, `\\`), `=` (the lake's
  `key=value` folders), `.` alone or `..` anywhere, also in their compatibility forms
  (full-width `．．` or `／` become `..` and `/` under NFKC);
* within one table's column, two different ids that become equal under NFKC with whitespace
  removed (full-width letters, ligatures, `C 1` and `C1`) are refused as ambiguous.

Case stays significant: `c1` and `C1` are two ids. `id_problem` gives the short reason for one
value (the online side answers it as is), `check_id` raises `InvalidId` with it, and
`column_refusal` checks a Polars column and returns the offending rows. Messages echo at most a
few dozen characters of a value (`shown`).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import polars as pl

__all__ = [
    "ID_RULE",
    "MAX_ID_LENGTH",
    "IdRefusal",
    "InvalidId",
    "ambiguous_groups",
    "check_id",
    "column_refusal",
    "id_problem",
    "normalise",
    "normalised_column",
    "shown",
]

MAX_ID_LENGTH = 128
#: How many characters of a value any message echoes.
ECHO_LIMIT = 40
FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Co", "Cn"})
ID_RULE = (
    "an id is visible text of at most {max_length} characters: no control, format, private-use or unassigned "
    "character, no invisible filler, no '/', '\\' or '=', not '.' and no '..', no leading or trailing whitespace"
)

# Default_Ignorable_Code_Point (Unicode DerivedCoreProperties): invisible characters, some of which are
# letters or marks (U+3164 HANGUL FILLER, variation selectors) and pass a category check.
_IGNORABLE = (
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)
# Printable ASCII without '/', '\\', '=', with no space at either end: such a value is decided by the
# length and dot rules alone, without a look at each character (the common case, kept fast in batch).
_PLAIN = r"^[!-.0-<>-\[\]-~](?:[ -.0-<>-\[\]-~]*[!-.0-<>-\[\]-~])?$"
_PLAIN_RE = re.compile(_PLAIN)


class InvalidId(ValueError):
    """One id breaks the rule; `reason` is the short explanation (no more than a few dozen characters of the value)."""

    def __init__(self, field: str, value: object, reason: str):
        self.field = field
        self.reason = reason
        super().__init__(f"{field} {shown(value)}: {reason}")


def shown(value: object, limit: int = ECHO_LIMIT) -> str:
    """A value as a message may echo it: its repr with invisible characters escaped, at most `limit` characters."""
    text = "'" + "".join(_escaped(c) for c in value[: limit + 1]) + "'" if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _escaped(char: str) -> str:
    if char in "\\'":
        return "\\" + char
    if char.isprintable() and not _invisible(char):
        return char
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def normalise(value: str) -> str:
    return unicodedata.normalize("NFC", value)


def _invisible(char: str) -> bool:
    code = ord(char)
    return unicodedata.category(char) in FORBIDDEN_CATEGORIES or any(lo <= code <= hi for lo, hi in _IGNORABLE)


def _char_name(char: str) -> str:
    return unicodedata.name(char, unicodedata.category(char))


def _path_problem(text: str) -> str | None:
    for sep in ("/", "\\"):
        if sep in text:
            return f"contains {sep!r}: path separators are refused"
    if "=" in text:
        return "contains '=' (the lake's partition folders are key=value)"
    if text == "." or ".." in text:
        return "is '.' or contains '..' (a path step)"
    return None


def id_problem(value: object, *, max_length: int = MAX_ID_LENGTH) -> str | None:
    """Why `value` is not a valid id (a short reason), or None when it is one."""
    if not isinstance(value, str):
        return f"is not text ({type(value).__name__})"
    text = normalise(value)
    if not text:
        return "is empty"
    if len(text) > max_length:
        return f"is {len(text)} characters long (at most {max_length})"
    if _PLAIN_RE.match(text):
        return _path_problem(text)
    if text != text.strip():
        return "has leading or trailing whitespace"
    for char in text:
        if _invisible(char):
            return f"contains U+{ord(char):04X} ({_char_name(char)}): control characters and invisible ones are refused"
    return _path_problem(text) or _path_problem(unicodedata.normalize("NFKC", text))


def check_id(value: object, *, field: str = "id", max_length: int = MAX_ID_LENGTH) -> str:
    """`value` as the NFC text that is stored, or InvalidId naming the field and the reason."""
    reason = id_problem(value, max_length=max_length)
    if reason is not None:
        raise InvalidId(field, value, reason)
    return normalise(value)


def _fold(text: str) -> str:
    return "".join(unicodedata.normalize("NFKC", text).split())


def ambiguous_groups(values) -> list[list[str]]:
    """Groups of distinct ids that become equal under NFKC with whitespace removed (first seen first)."""
    groups: dict[str, list[str]] = {}
    for value in dict.fromkeys(values):
        if value is not None:
            groups.setdefault(_fold(value), []).append(value)
    return [ids for ids in groups.values() if len(ids) > 1]


@dataclass(frozen=True)
class IdRefusal:
    """Why a column's ids are refused: one reason, how many rows, and those rows (the frame's own columns)."""

    column: str
    reason: str
    count: int
    rows: pl.DataFrame


def column_refusal(frame: pl.DataFrame, column: str, *, max_length: int = MAX_ID_LENGTH) -> IdRefusal | None:
    """Check the ids of `frame[column]` (already NFC, nulls ignored): the first problem found with the rows
    that have it, or None. Distinct values that are not plain ASCII are checked one by one."""
    value = pl.col(column)
    plain = value.str.contains(_PLAIN) & (value.str.len_chars() <= max_length)
    plain = plain & ~value.str.contains("..", literal=True) & (value != ".")
    suspects = frame.filter(value.is_not_null() & ~plain).get_column(column).unique(maintain_order=True)
    problems = {v: p for v in suspects.to_list() if (p := id_problem(v, max_length=max_length)) is not None}
    if problems:
        first, reason = next(iter(problems.items()))
        rows = frame.filter(value.is_in(list(problems)))
        others = len(problems) - 1
        more = f" (and {others} other id(s) with a problem)" if others else ""
        return IdRefusal(column, f"{rows.height} id(s) refused: {shown(first)} {reason}{more}", rows.height, rows)
    distinct = frame.get_column(column).drop_nulls().unique(maintain_order=True)
    # Only ids with a non-ASCII character or whitespace can fold onto another id.
    candidates = distinct.filter(distinct.str.contains(r"[^!-~]"))
    if candidates.is_empty():
        return None
    folded = {_fold(v) for v in candidates.to_list()}
    pool = distinct.filter(distinct.str.contains(r"[^!-~]") | distinct.is_in(list(folded))).to_list()
    groups = ambiguous_groups(pool)
    if not groups:
        return None
    listed = "; ".join(" vs ".join(shown(v) for v in ids) for ids in groups[:3])
    ambiguous = {v for ids in groups for v in ids}
    rows = frame.filter(value.is_in(list(ambiguous)))
    reason = (
        f"{len(groups)} group(s) of ids that differ only by whitespace or compatibility forms "
        f"(full-width letters, ligatures), ambiguous: {listed}{'; …' if len(groups) > 3 else ''}"
    )
    return IdRefusal(column, reason, rows.height, rows)


def normalised_column(frame: pl.DataFrame, column: str) -> pl.DataFrame:
    """`frame` with `column` in NFC (only values that are not plain ASCII change)."""
    value = pl.col(column)
    distinct = frame.filter(value.str.contains(r"[^ -~]")).get_column(column).unique().to_list()
    changed = {v: n for v in distinct if (n := normalise(v)) != v}
    return frame.with_columns(value.replace(changed)) if changed else frame
