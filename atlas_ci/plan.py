"""What the version will carry: metadata from the builder and the config, the artifact type.

Metadata values keep the text the user wrote. Packer decoded config metadata weakly, so
``true`` became ``"1"`` and ``1.10`` became ``"1.1"``; a registry search for the value the
user typed then found nothing. Here YAML and JSON scalars are taken as their source text:
``5`` -> ``"5"``, ``1.10`` -> ``"1.10"``, ``0x10`` -> ``"0x10"``, ``yes`` -> ``"yes"``, and
JSON ``true`` -> ``"true"``. A null (``~``, ``null``, or nothing after the colon) is refused:
it is most often an unset variable, and ``""`` says "empty" without doubt.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from atlas_ci.errors import ConfigError
from atlas_ci.textfile import MiB, quoted, read_text

if TYPE_CHECKING:
    from atlas_ci.manifest import Artifact

MAX_ENTRIES = 256
MAX_KEY_CHARS = 256
MAX_VALUE_CHARS = 4096
MAX_METADATA_FILE_BYTES = 4 * MiB

_FORBIDDEN_CHARS = ("\n", "\r", "\0")


class DuplicateKeyError(ValueError):
    """A JSON object names the same key twice."""

    def __init__(self, key: str) -> None:
        super().__init__(f"duplicate key {quoted(key)}")
        self.key = key


def _json_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise DuplicateKeyError(key)
        result[key] = value
    return result


def loads_json_text(text: str) -> Any:
    """Parse JSON keeping number literals as text (``1.10`` stays ``"1.10"``).

    Malformed text raises :class:`ValueError`, a repeated key :class:`DuplicateKeyError`
    (a subclass), deep nesting :class:`RecursionError`.
    """
    return json.loads(
        text,
        parse_int=str,
        parse_float=str,
        parse_constant=str,
        object_pairs_hook=_json_pairs,
    )


def metadata_from_mapping(value: object, source: str) -> dict[str, str]:
    """Check a parsed metadata mapping and return it as ``str -> str``.

    Scalars only; ``bool`` becomes ``"true"``/``"false"``; ``None`` is refused. Raises
    :class:`ConfigError` naming ``source`` and the offending key.
    """
    if not isinstance(value, Mapping):
        kind = "empty" if value is None else f"a {_kind(value)}"
        raise ConfigError(
            f"metadata in {source} is {kind}, not a mapping",
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
                f"metadata in {source} has a {_kind(key)} key",
                "keys must be plain text",
            )
        _check_key(key, source)
        result[key] = _value_text(key, item, source)
    return result


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "mapping"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, (set, frozenset)):
        return "set"
    if isinstance(value, str):
        return "string"
    return type(value).__name__


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
            f"{where} is a {_kind(value)}; metadata values must be scalars",
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
        parsed: Any = loads_json_text(text)
    except DuplicateKeyError as exc:
        raise ConfigError(f"metadata in {source} has a {exc}", "give each key once") from None
    except ValueError:
        parsed = _load_yaml(text, source)
    except RecursionError:
        raise ConfigError(
            f"metadata in {source} is nested too deeply", "write a flat mapping"
        ) from None
    return metadata_from_mapping(parsed, source)


def _load_yaml(text: str, source: str) -> Any:
    # PyYAML costs ~20 ms to import: only when the metadata is not JSON.
    from atlas_ci.yamltext import load

    return load(text, source)


def load_metadata_file(path: str) -> dict[str, str]:
    """Metadata from a YAML or JSON file: unreadable -> InputFileError, bad text -> ConfigError."""
    text = read_text(path, what="metadata file", limit=MAX_METADATA_FILE_BYTES)
    return parse_metadata_text(text, f"metadata file {quoted(path)}")


_AMAZON_PIECE = re.compile(r"([A-Za-z0-9-]+):([^\s:,]+)")


def _amazon_regions(artifact_id: str) -> dict[str, str] | None:
    """``us-east-1:ami-1,us-west-2:ami-2`` -> region map; None if the id has another shape."""
    regions: dict[str, str] = {}
    for piece in artifact_id.split(","):
        piece = piece.strip()
        if not piece:
            continue
        match = _AMAZON_PIECE.fullmatch(piece)
        if match is None:
            return None
        regions[f"region.{match.group(1)}"] = match.group(2)
    return regions


def builder_metadata(artifact: Artifact) -> dict[str, str] | None:
    """Metadata the builder provides: the artifact's own, else amazon's ``region.<r>`` -> AMI.

    Amazon metadata is derived only for a file-less artifact whose id has the
    ``region:ami[,region:ami...]`` shape, so a vagrant box built from an AMI (id ``aws``,
    one ``.box`` file) gets none.
    """
    if artifact.metadata is not None:
        return dict(artifact.metadata)
    if artifact.builder_type.startswith("amazon-") and not artifact.files:
        return _amazon_regions(artifact.id)
    return None


def infer_artifact_type(artifact: Artifact) -> str | None:
    """The Atlas artifact type the artifact most likely is, or None when it cannot be told.

    A single ``.box`` file wins over the builder type: a vagrant post-processor keeps the
    builder's type in the manifest.
    """
    if len(artifact.files) == 1 and artifact.files[0].name.lower().endswith(".box"):
        return "vagrant.box"
    builder = artifact.builder_type
    if builder.startswith("amazon-"):
        return "amazon.ami"
    if builder == "docker":
        return "docker.image"
    if builder == "googlecompute":
        return "googlecompute.image"
    return None


VAGRANT_PROVIDERS = frozenset(
    {
        "aws",
        "azure",
        "digitalocean",
        "docker",
        "google",
        "hyperv",
        "libvirt",
        "lxc",
        "parallels",
        "qemu",
        "scaleway",
        "virtualbox",
        "vmware",
        "vmware_desktop",
        "vmware_fusion",
        "vmware_workstation",
    }
)

_PROVIDER_BY_BUILDER_PREFIX = (
    ("virtualbox-", "virtualbox"),
    ("vmware-", "vmware_desktop"),
    ("parallels-", "parallels"),
    ("hyperv-", "hyperv"),
)


def vagrant_provider(artifact: Artifact) -> tuple[str, str] | None:
    """``(provider, reason)`` for a vagrant box: from the artifact id, else the builder type.

    The vagrant post-processor's artifact id is the provider name, so it is trusted first.
    """
    artifact_id = artifact.id.strip()
    if artifact_id.lower() in VAGRANT_PROVIDERS:
        provider = artifact_id.lower()
        return provider, f"from the artifact id {quoted(artifact.id)}"
    builder = artifact.builder_type
    reason = f"from the builder type {quoted(builder)}"
    if builder == "qemu":
        return "libvirt", reason
    for prefix, provider in _PROVIDER_BY_BUILDER_PREFIX:
        if builder.startswith(prefix):
            return provider, reason
    return None


def merge_metadata(
    builder: dict[str, str] | None, config: dict[str, str] | None
) -> dict[str, str] | None:
    """Builder metadata with the config laid over it (config wins).

    None only when neither gave any (sent as JSON ``null``); ``{}`` when one gave an empty map.
    """
    if builder is None and config is None:
        return None
    return {**(builder or {}), **(config or {})}
