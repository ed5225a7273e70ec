"""Metadata as the user gives it: ``KEY=VALUE`` flags, a YAML or JSON file or input text.

Metadata values keep the text the user wrote. Packer decoded config metadata weakly, so
``true`` became ``"1"`` and ``1.10`` became ``"1.1"``; a registry search for the value the
user typed then found nothing. Here YAML and JSON scalars are taken as their source text:
``5`` -> ``"5"``, ``1.10`` -> ``"1.10"``, ``0x10`` -> ``"0x10"``, ``yes`` -> ``"yes"``, and
JSON ``true`` -> ``"true"``. A null (``~``, ``null``, or nothing after the colon) is refused:
it is most often an unset variable, and ``""`` says "empty" without doubt.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from atlas_ci import jsontext
from atlas_ci.errors import ConfigError
from atlas_ci.jsontext import kind
from atlas_ci.textfile import MiB, quoted, read_text

MAX_ENTRIES = 256
MAX_KEY_CHARS = 256
MAX_VALUE_CHARS = 4096
MAX_METADATA_FILE_BYTES = 4 * MiB

_FORBIDDEN_CHARS = ("\n", "\r", "\0")


def metadata_from_mapping(value: object, source: str) -> dict[str, str]:
    """Check a parsed metadata mapping and return it as ``str -> str``.

    Scalars only; ``bool`` becomes ``"true"``/``"false"``; ``None`` is refused. Raises
    :class:`ConfigError` naming ``source`` and the offending key.
    """
    if not isinstance(value, Mapping):
        what = "empty" if value is None else f"a {kind(value)}"
        raise ConfigError(
            f"metadata in {source} is {what}, not a mapping",
            "write one KEY: VALUE per line (YAML) or a JSON object",
        )
    if len(value) > MAX_ENTRIES:
        raise ConfigError(
            f"metadata in {source} has {len(value)} entries, more than {MAX_ENTRIES}",
            "keep only the entries the registry needs",
        )
    result: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise ConfigError(
                f"metadata in {source} has a {kind(key)} key",
                "keys must be plain text",
            )
        _check_key(key, source)
        result[key] = _value_text(key, item, source)
    return result


def _check_key(key: str, source: str) -> None:
    if not key:
        raise ConfigError(f"metadata in {source} has an empty key", "give every entry a name")
    if len(key) > MAX_KEY_CHARS:
        raise ConfigError(
            f"metadata key {quoted(key, 40)} in {source} is {len(key)} characters, "
            f"more than {MAX_KEY_CHARS}",
            "use a shorter key",
        )
    _check_text(key, f"metadata key {quoted(key, 60)} in {source}")


def _value_text(key: str, value: object, source: str) -> str:
    where = f"metadata {quoted(key, 60)} in {source}"
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = str(value)  # a str subclass (a marked JSON number) becomes plain text
    elif value is None:
        raise ConfigError(
            f"{where} has no value (null)",
            'give it a value, or write "" for an empty string',
        )
    elif isinstance(value, (int, float)):
        text = str(value)
    else:
        raise ConfigError(
            f"{where} is a {kind(value)}; metadata values must be scalars",
            "flatten it into separate keys, or quote it as one string",
        )
    if len(text) > MAX_VALUE_CHARS:
        raise ConfigError(
            f"{where} is {len(text)} characters, more than {MAX_VALUE_CHARS}",
            "store large data in the artifact, not in metadata",
        )
    _check_text(text, where)
    return text


def _check_text(text: str, where: str) -> None:
    if any(char in text for char in _FORBIDDEN_CHARS):
        raise ConfigError(
            f"{where} contains a newline or NUL character",
            "keep keys and values on one line (a YAML '|' block adds a newline)",
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(
            f"{where} is not valid Unicode text (lone surrogate)",
            "check the \\u escapes in the text",
        ) from None


def parse_metadata_pairs(pairs: Sequence[str]) -> dict[str, str]:
    """Metadata from ``KEY=VALUE`` strings (split at the first ``=``; ``KEY=`` is an empty value).

    A repeated key is an error rather than "last one wins": it is almost always a mistake.
    """
    if isinstance(pairs, str):
        pairs = (pairs,)
    result: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ConfigError(
                f"metadata entry {quoted(pair, 60)} is not KEY=VALUE",
                "write it as KEY=VALUE",
            )
        source = f"metadata entry {quoted(pair, 60)}"
        _check_key(key, source)
        if key in result:
            raise ConfigError(
                f"metadata key {quoted(key, 60)} is given more than once",
                "give each key once",
            )
        if len(result) >= MAX_ENTRIES:
            raise ConfigError(
                f"more than {MAX_ENTRIES} metadata entries",
                "keep only the entries the registry needs",
            )
        result[key] = _value_text(key, value, source)
    return result


def parse_metadata_text(text: str, source: str) -> dict[str, str]:
    """Metadata from YAML or JSON mapping text; scalars keep their source text.

    JSON is tried first (numbers keep their literal text, ``true`` -> ``"true"``), then YAML
    with every scalar built as the text written. ``source`` names the text in messages.
    """
    try:
        parsed = jsontext.loads(text, unique_keys=True)
    except jsontext.DuplicateKeyError as exc:
        raise ConfigError(f"metadata in {source} has a {exc}", "give each key once") from None
    except ValueError:
        parsed = _load_yaml(text, source)
    except RecursionError:
        raise ConfigError(
            f"metadata in {source} is nested too deeply", "write a flat mapping"
        ) from None
    return metadata_from_mapping(parsed, source)


def _load_yaml(text: str, source: str) -> object:
    # PyYAML is slow to import: only when the metadata is not JSON.
    from atlas_ci.yamltext import load

    return load(text, source)


def load_metadata_file(path: str) -> dict[str, str]:
    """Metadata from a YAML or JSON file: unreadable -> InputFileError, bad text -> ConfigError."""
    text = read_text(path, what="metadata file", limit=MAX_METADATA_FILE_BYTES)
    return parse_metadata_text(text, f"metadata file {quoted(path)}")
