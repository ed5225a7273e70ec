"""Readable pytest ids for parameters that are long or binary (a 100 KB id helps nobody)."""

from __future__ import annotations

MAX_ID_CHARS = 40


def short_id(value: object) -> str:
    """The value's repr cut to :data:`MAX_ID_CHARS`, with its length when it was cut."""
    text = repr(value)
    if len(text) <= MAX_ID_CHARS:
        return text
    size = len(value) if isinstance(value, (str, bytes)) else len(text)
    return f"{text[: MAX_ID_CHARS - 3]}...({size} long)"
