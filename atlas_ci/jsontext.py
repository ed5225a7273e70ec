"""JSON read with its number literals kept as the text the user wrote (``1.10`` stays ``1.10``).

Packer decoded numbers weakly, so ``1.10`` became ``"1.1"`` and a registry search for the
value the user typed found nothing. Here a number literal becomes a :class:`Number`, a ``str``
marked so that a caller can still tell it from a JSON string (``"id": 5`` is not a string).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from atlas_ci.textfile import quoted


class Number(str):
    """A JSON number kept as its literal text, marked so it is not taken for a JSON string."""


class DuplicateKeyError(ValueError):
    """A JSON object names the same key twice."""

    def __init__(self, key: str) -> None:
        super().__init__(f"duplicate key {quoted(key)}")
        self.key = key


def _unique_pairs(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result: dict[str, object] = {}
    for key, value in pairs:
        if key in result:
            raise DuplicateKeyError(key)
        result[key] = value
    return result


def loads(text: str, *, unique_keys: bool = False) -> object:
    """Parse JSON with every number (and ``NaN``/``Infinity``) as a :class:`Number`.

    What it returns is untrusted: callers narrow it with ``isinstance`` before use.

    ``unique_keys`` refuses a repeated key (:class:`DuplicateKeyError`) instead of keeping
    the last. Malformed text raises :class:`ValueError`, deep nesting :class:`RecursionError`.
    """
    return json.loads(
        text,
        parse_int=Number,
        parse_float=Number,
        parse_constant=Number,
        object_pairs_hook=_unique_pairs if unique_keys else None,
    )


def is_text(value: object) -> bool:
    """A JSON string (not a number kept as text)."""
    return isinstance(value, str) and not isinstance(value, Number)


def kind(value: object) -> str:
    """What a parsed JSON or YAML value is, in the words of an error message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (Number, int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, (set, frozenset)):
        return "set"
    if isinstance(value, Mapping):
        return "mapping"
    return type(value).__name__
