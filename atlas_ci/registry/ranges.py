"""Which part of a stored file a GET or HEAD is answered with (RFC 9110, sections 13 and 14).

:func:`decide` takes the request's ``If-Match``, ``If-None-Match``, ``If-Range`` and ``Range``
fields and the file's size and ETag, and returns the status, the byte span to send and the
headers that say so. Pure: no I/O, and the work is bounded by :data:`MAX_FIELD` characters
per field whatever the client sends (thousands of ranges, 10,000-digit numbers, garbage).

What is answered, in RFC 9110's order of evaluation (13.2.2):

- ``If-Match`` that no current ETag matches (strong comparison): 412.
- ``If-None-Match`` that matches (``*``, or any listed tag, weak comparison): 304, no body.
- ``Range`` on GET: one range, satisfiable: 206 with ``Content-Range``; unsatisfiable: 416 with
  ``Content-Range: bytes */<size>``. Several ranges, an unknown unit, or a value that does not
  parse: the range is ignored and the whole file is sent (200). HEAD ignores ``Range``
  (14.2: GET is the only method range handling is defined for).
- ``If-Range`` that is not this file's strong ETag (another tag, a weak one, a date: the
  registry sends no ``Last-Modified``, so no date can be validated): the range is ignored.

``If-Modified-Since`` and ``If-Unmodified-Since`` need a ``Last-Modified``, which the registry
does not send, so they are ignored as 13.1.3 and 13.1.4 say.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence

FIELDS = ("If-Match", "If-None-Match", "If-Range", "Range")
"""The request fields :func:`decide` reads; pass every value of each (``get_all``)."""
MAX_FIELD = 8192
"""Characters of one field (all its lines joined) read at most; a longer field is treated
as malformed. Real clients send a few dozen."""
_HUGE = 10**19
"""Stands for any position of more than 19 digits: past every size a file can have."""

_DIGITS = re.compile(r"[0-9]+")
# One element of an entity-tag list (RFC 9110 8.8.3 and 5.6.1): OWS and empty elements,
# an optional W/, the quoted opaque tag, then OWS and a comma or the end.
_TAG_ELEMENT = re.compile(r'[ \t,]*(W/)?("[\x21\x23-\x7e\x80-\xff]*")[ \t]*(?:,|\Z)')
_TRAILING = re.compile(r"[ \t,]*")


@dataclasses.dataclass(frozen=True)
class Answer:
    """What to send: ``status``, ``length`` bytes of the file from ``offset``, ``headers``
    (besides Content-Type and Content-Length); ``reason`` is the error of a 412 or 416."""

    status: int
    offset: int
    length: int
    headers: Mapping[str, str]
    reason: str = ""

    @property
    def has_file_body(self) -> bool:
        """200 and 206 carry (part of) the file; 304, 412 and 416 do not."""
        return self.status in (200, 206)


def decide(method: str, size: int, etag: str | None, fields: Mapping[str, Sequence[str]]) -> Answer:
    """The answer to a ``method`` (GET or HEAD) request for a file of ``size`` bytes whose
    strong ETag is ``etag`` (quoted, e.g. ``'"abc"'``; None: it has none)."""
    tagged = {"ETag": etag} if etag is not None else {}
    whole = Answer(200, 0, size, {"Accept-Ranges": "bytes", **tagged})
    if_match = _joined(fields.get("If-Match", ()))
    if if_match is not None and not _matches(_tag_list(if_match), etag, weak=False):
        reason = "the file's ETag is not one If-Match names (the file has changed)"
        return Answer(412, 0, 0, tagged, reason)
    if_none_match = _joined(fields.get("If-None-Match", ()))
    if if_none_match is not None:
        tags = _tag_list(if_none_match)
        if tags is not None and _matches(tags, etag, weak=True):
            return Answer(304, 0, 0, tagged)
    if method != "GET":
        return whole
    ranges = fields.get("Range", ())
    if len(ranges) != 1:
        return whole  # none, or several fields of a field that is not a list: ignored
    if_range = fields.get("If-Range", ())
    if if_range and not _if_range_holds(if_range, etag):
        return whole
    span = parse_range(ranges[0], size)
    if span is None:
        return whole
    if span == UNSATISFIABLE:
        reason = f"the range {_quoted(ranges[0])} starts past the end of the {size}-byte file"
        return Answer(
            416, 0, 0, {"Content-Range": f"bytes */{size}", "Accept-Ranges": "bytes"}, reason
        )
    first, last = span
    headers = {"Content-Range": f"bytes {first}-{last}/{size}", **whole.headers}
    return Answer(206, first, last - first + 1, headers)


UNSATISFIABLE = (-1, -1)
"""What :func:`parse_range` returns for a valid range that selects no byte of the file."""


def parse_range(value: str, size: int) -> tuple[int, int] | None:
    """The first and last byte (inclusive) that ``Range: value`` selects of a ``size``-byte
    file; :data:`UNSATISFIABLE`; or None when the field is to be ignored (not ``bytes``, not
    one range, malformed)."""
    if len(value) > MAX_FIELD:
        return None
    unit, equals, range_set = value.strip(" \t").partition("=")
    if not equals or unit.lower() != "bytes":
        return None
    # 1#range-spec: empty list elements are allowed and skipped (RFC 9110 5.6.1).
    specs = [s for s in (part.strip(" \t") for part in range_set.split(",")) if s]
    if len(specs) != 1:
        return None  # several ranges: answered whole (docs/registry.md says so)
    first_text, dash, last_text = specs[0].partition("-")
    if not dash:
        return None
    if not first_text:  # suffix-range: the last N bytes
        count = _number(last_text)
        if count is None:
            return None
        if count == 0 or size == 0:
            return UNSATISFIABLE
        return max(0, size - count), size - 1
    first = _number(first_text)
    last = _number(last_text) if last_text else _HUGE
    if first is None or last is None or last < first:
        return None
    if first >= size:
        return UNSATISFIABLE
    return first, min(last, size - 1)


def _number(text: str) -> int | None:
    """A run of ASCII digits as an int, any that exceeds 19 digits as :data:`_HUGE`; None
    for anything else (signs, spaces, other scripts' digits)."""
    if not _DIGITS.fullmatch(text):
        return None
    text = text.lstrip("0") or "0"
    return _HUGE if len(text) > 19 else int(text)


def _joined(values: Sequence[str]) -> str | None:
    """The lines of a list field as one value (RFC 9110 5.3); None when it is absent."""
    if not values:
        return None
    return ", ".join(values)


def _tag_list(value: str) -> list[tuple[bool, str]] | str | None:
    """``"*"``, the ``(weak, opaque tag)`` pairs of an entity-tag list, or None if malformed."""
    if len(value) > MAX_FIELD:
        return None
    if value.strip(" \t") == "*":
        return "*"
    tags: list[tuple[bool, str]] = []
    position = 0
    while True:
        element = _TAG_ELEMENT.match(value, position)
        if element is None or element.end() == position:
            break
        tags.append((element.group(1) is not None, element.group(2)))
        position = element.end()
    if _TRAILING.fullmatch(value, position) is None or not tags:
        return None
    return tags


def _matches(tags: list[tuple[bool, str]] | str | None, etag: str | None, *, weak: bool) -> bool:
    """Whether a parsed list names the file: ``*`` always does (the file exists); a tag does
    when its opaque part is ``etag``'s and, for a strong comparison, neither is weak."""
    if isinstance(tags, str):  # "*"
        return True
    if tags is None or etag is None:
        return False
    return any(opaque == etag and (weak or not is_weak) for is_weak, opaque in tags)


def _if_range_holds(values: Sequence[str], etag: str | None) -> bool:
    """If-Range holds only for this file's own strong ETag (RFC 9110 13.1.5)."""
    if len(values) != 1 or etag is None:
        return False
    return values[0].strip(" \t") == etag


def _quoted(value: str) -> str:
    """A client's field value, short and printable, for an error message."""
    shown = "".join(c if " " <= c <= "~" else "?" for c in value[:80])
    return repr(shown + ("..." if len(value) > 80 else ""))
