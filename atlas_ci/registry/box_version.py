"""Box version strings as Vagrant reads them: which are valid, and in what order they come.

Vagrant reads a catalog's versions with RubyGems' ``Gem::Version`` and picks the newest one a
constraint (``~> 1.2``) allows, so a registry must accept only what that class accepts and
order versions as it does. The rules, as RubyGems documents and implements them:

- valid: digits, then ``.``-separated runs of letters and digits, then optionally one ``-``
  and ``.``-separated runs of letters, digits and ``-`` (``1.2.0``, ``2026.12.07``,
  ``1.0.0.rc1``, ``1.0.0-rc1``). This registry also refuses the empty string, surrounding
  space (which RubyGems strips, so two strings would name one version) and anything over
  :data:`MAX_LENGTH` characters;
- a ``-`` reads as ``.pre.``; the string is cut into runs of digits (numbers) and runs of
  letters (words): ``1.0.b10`` is ``1, 0, "b", 10``;
- trailing zeros of the numeric part and of the part from the first word on are dropped
  (``1.0`` and ``1.0.0`` are the same version);
- compared position by position, a missing position counting as ``0``: numbers by value,
  words by their bytes, a word before any number (``1.0.rc1`` is older than ``1.0``).

:func:`sort_key` turns a version into bytes whose byte order is that order, so the database
can sort and index versions (SQLite and PostgreSQL both compare BLOB/BYTEA bytewise).
"""

from __future__ import annotations

import functools
import re

MAX_LENGTH = 128
"""The longest version string accepted (Vagrant Cloud's own are short: ``2026.12.07``)."""

_VALID = re.compile(r"[0-9]+(?:\.[0-9A-Za-z]+)*(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?")
_PIECE = re.compile(r"[0-9]+|[A-Za-z]+")
Segment = int | str

_WORD, _END, _NUMBER = b"\x01", b"\x02", b"\x03"


class BadVersion(ValueError):
    """Not a box version; the message says why and what to send (the box service raises it
    again as the storage's ``Invalid``: this module is below the storage)."""


def check(version: str) -> None:
    """Refuse (:class:`BadVersion`) a string Vagrant would not read as a box version."""
    if not version:
        raise BadVersion("version must not be empty; use a version such as 1.0.0")
    if len(version) > MAX_LENGTH:
        raise BadVersion(f"version is longer than {MAX_LENGTH} characters")
    if not _VALID.fullmatch(version):
        shown = version if version.isprintable() else ascii(version)
        raise BadVersion(
            f"version {shown!r} is not a version Vagrant accepts: use numbers separated by "
            "dots, optionally followed by letters (1.2.0, 2026.12.07, 1.0.0.rc1)"
        )


def segments(version: str) -> list[Segment]:
    """The numbers and words of a valid ``version``, in order (``-`` reads as ``.pre.``)."""
    text = version.replace("-", ".pre.")
    return [int(p) if p.isdigit() else p for p in _PIECE.findall(text)]


def canonical(version: str) -> list[Segment]:
    """The segments that decide the order: trailing zeros of the numeric part and of the
    rest dropped (``1.0.0`` and ``1`` give ``[1]``)."""
    parts = segments(version)
    first_word = next((i for i, s in enumerate(parts) if isinstance(s, str)), len(parts))
    numeric, rest = parts[:first_word], parts[first_word:]
    while numeric and numeric[-1] == 0:
        numeric.pop()
    while rest and rest[-1] == 0:
        rest.pop()
    return numeric + rest


def compare(left: str, right: str) -> int:
    """-1, 0 or 1 as ``left`` is older than, the same as or newer than ``right``."""
    a, b = canonical(left), canonical(right)
    for index in range(max(len(a), len(b))):
        x = a[index] if index < len(a) else 0
        y = b[index] if index < len(b) else 0
        if x == y:
            continue
        if isinstance(x, str) and isinstance(y, str):
            return -1 if x < y else 1
        if isinstance(x, int) and isinstance(y, int):
            return -1 if x < y else 1
        return -1 if isinstance(x, str) else 1  # a word is older than any number
    return 0


def newest_first(versions: list[str]) -> list[str]:
    """``versions`` sorted newest first (by :func:`compare`)."""
    return sorted(versions, key=functools.cmp_to_key(compare), reverse=True)


def sort_key(version: str) -> bytes:
    """Bytes that sort as :func:`compare` orders versions; equal for equal versions.

    A run of ``k`` zeros and the segment after it make one token (the canonical form never
    ends in a zero): ``01 k word 00`` for a word, ``03 255-k len digits`` for a number, and
    ``02`` ends the key. Past its last segment a version counts as zeros forever, which is
    older than zeros then a number and newer than zeros then a word: ``02`` sits between.
    Among words, more zeros before one is newer; among numbers, fewer zeros before one.
    """
    check(version)
    key = bytearray()
    zeros = 0
    for segment in canonical(version):
        if segment == 0:
            zeros += 1
            continue
        if isinstance(segment, str):
            key += _WORD + bytes([zeros]) + segment.encode("ascii") + b"\x00"
        else:
            digits = str(segment).encode("ascii")
            key += _NUMBER + bytes([255 - zeros, len(digits)]) + digits
        zeros = 0
    return bytes(key + _END)
