"""The JSON shapes of the Atlas v1 API as the registry speaks them (docs/atlas-wire.md).

Request bodies and search queries in, response objects out; pure functions, no I/O. A body that
breaks the contract raises :class:`BadRequest` with a message meant for the client.
"""

from __future__ import annotations

import dataclasses
import re
import urllib.parse
from typing import Literal

from atlas_ci.registry.model import (
    INT64_MAX,
    INT64_MIN,
    Artifact,
    MetadataFilter,
    Search,
    Selector,
    Version,
)

MAX_IDEMPOTENCY_KEY = 255
_IDEMPOTENCY_KEY = re.compile(r"[\x20-\x7e]+")
_SURROGATE = re.compile("[\ud800-\udfff]")
_INTEGER = re.compile(r"-?[0-9]{1,19}")


class BadRequest(Exception):
    """The client sent something the API does not accept; ``status`` is 400 or 422."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


@dataclasses.dataclass(frozen=True)
class NewArtifact:
    """Body of ``POST /api/v1/artifacts``."""

    username: str
    name: str


@dataclasses.dataclass(frozen=True)
class NewVersion:
    """Body of ``POST /api/v1/artifacts/{user}/{name}/{type}``."""

    build_id: int = 0
    compile_id: int = 0
    file: bool = False
    id: str = ""
    metadata: dict[str, str] | None = None


def check_text(body: object) -> None:
    """Refuse a JSON document with a lone UTF-16 surrogate (``"\\ud800"``) or a NUL
    (``"\\u0000"``) in any string, key or value.

    JSON's escapes can spell one; it is no Unicode character, and nothing can store it as
    UTF-8. Walked without recursion: the parser already bounded the depth, not the stack.
    """
    stack = [body]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and _SURROGATE.search(item):
            raise BadRequest(
                "a string in the body holds a lone UTF-16 surrogate escape (such as \\ud800); "
                "send valid Unicode"
            )
        elif isinstance(item, str) and "\x00" in item:
            # PostgreSQL cannot store a NUL in text; refused here, on every backend alike.
            raise BadRequest("a string in the body holds a NUL character (\\u0000); remove it")


def parse_idempotency_key(raw: str | None) -> str | None:
    """The ``Idempotency-Key`` header of a version POST (None when absent); 400 if malformed."""
    if raw is None:
        return None
    key = raw.strip()
    if not key or len(key) > MAX_IDEMPOTENCY_KEY or not _IDEMPOTENCY_KEY.fullmatch(key):
        raise BadRequest(
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters",
            400,
        )
    return key


def _object(value: object, where: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise BadRequest(f"{where} must be a JSON object")
    return value


def parse_new_artifact(body: object) -> NewArtifact:
    """``{"artifact": {"username": "..", "name": ".."}}``."""
    artifact = _object(_object(body, "the body").get("artifact"), '"artifact"')
    fields = {}
    for key in ("username", "name"):
        value = artifact.get(key)
        if not isinstance(value, str):
            raise BadRequest(f"artifact.{key} must be a string")
        fields[key] = value
    return NewArtifact(**fields)


def _integer(version: dict[str, object], key: str) -> int:
    value = version.get(key, 0)
    if value is None:
        return 0
    # bool is an int subclass in Python; JSON true is not an id.
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"artifact_version.{key} must be an integer")
    return value


def parse_new_version(body: object) -> NewVersion:
    """``{"artifact_version": {build_id, compile_id, file, id, metadata}}``; missing keys take
    Packer's zero values, unknown keys are ignored."""
    version = _object(_object(body, "the body").get("artifact_version"), '"artifact_version"')
    file = version.get("file", False)
    if not isinstance(file, bool):
        raise BadRequest("artifact_version.file must be true or false")
    artifact_id = version.get("id", "")
    if artifact_id is None:
        artifact_id = ""
    if not isinstance(artifact_id, str):
        raise BadRequest("artifact_version.id must be a string")
    metadata = version.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise BadRequest("artifact_version.metadata must be an object or null")
        for key, value in metadata.items():
            if not isinstance(value, str):
                raise BadRequest(
                    f"artifact_version.metadata must map strings to strings; "
                    f"the value of {key!r} is not a string"
                )
    # PostgreSQL cannot store a NUL (a version POST with one was its 500) where SQLite would:
    # refused alike on both. (Names have their own check, with every control character.)
    texts = [artifact_id, *(metadata or {}).keys(), *(metadata or {}).values()]
    if any("\x00" in text for text in texts):
        raise BadRequest("artifact_version.id and metadata must not hold a NUL (\\u0000)")
    return NewVersion(
        build_id=_integer(version, "build_id"),
        compile_id=_integer(version, "compile_id"),
        file=file,
        id=artifact_id,
        metadata=metadata,
    )


_METADATA_PARAM = re.compile(r"metadata\.([0-9]+)\.(key|value)")


def _selector(name: str, raw: str | None, default: Literal["latest", "any"]) -> Selector:
    if raw is None or raw == "":
        return default
    if raw in ("latest", "any"):
        return "latest" if raw == "latest" else "any"
    # int() alone would take "+1", " 1", "1_0" and other scripts' digits, and numbers SQLite
    # cannot hold.
    if _INTEGER.fullmatch(raw) and INT64_MIN <= int(raw) <= INT64_MAX:
        return int(raw)
    shown = raw if len(raw) <= 40 else raw[:40] + "..."
    raise BadRequest(
        f"{name} must be latest, any or an integer of at most 64 bits, not {shown!r}", 400
    )


def parse_search(query: str) -> Search:
    """Terraform's ``atlas_artifact`` query: ``version``, ``build``, ``metadata.N.key/value``."""
    params: dict[str, str] = {}
    keys: dict[int, str] = {}
    values: dict[int, str] = {}
    try:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise BadRequest("the query string is not valid UTF-8", 400) from None
    if any("\x00" in name or "\x00" in value for name, value in pairs):
        raise BadRequest("the query string holds a NUL character (%00)", 400)
    for name, value in pairs:
        match = _METADATA_PARAM.fullmatch(name)
        if match and len(match[1]) > 18:  # int() refuses past 4300 digits; none needs 19
            raise BadRequest("metadata.N: N must be a number of at most 18 digits", 400)
        if match:
            (keys if match[2] == "key" else values)[int(match[1])] = value
        else:
            params[name] = value
    orphans = sorted(values.keys() - keys.keys())
    if orphans:
        raise BadRequest(f"metadata.{orphans[0]}.value has no metadata.{orphans[0]}.key", 400)
    filters = tuple(MetadataFilter(keys[i], values.get(i)) for i in sorted(keys))
    pending = params.get("include_pending", "")
    if pending not in ("", "0", "1", "true", "false"):
        raise BadRequest(f"include_pending must be 1 or 0, not {pending!r}", 400)
    return Search(
        version=_selector("version", params.get("version"), "latest"),
        build=_selector("build", params.get("build"), "any"),
        metadata=filters,
        include_pending=pending in ("1", "true"),
    )


def artifact_json(artifact: Artifact) -> dict[str, object]:
    """``{"artifact": {...}}`` as ``GET /api/v1/artifacts/{user}/{name}`` answers."""
    return {
        "artifact": {
            "username": artifact.user,
            "name": artifact.name,
            "tag": artifact.tag,
            "created_at": artifact.created,
        }
    }


def version_json(version: Version, upload_path: str | None = None) -> dict[str, object]:
    """The flat version object; ``upload_path`` only in the answer that created it (and in a
    search with ``include_pending``, for a version still waiting for its file).

    The keys are atlas-go's ``ArtifactVersion`` (``username``, ``name``, ``tag``,
    ``artifact_type``, ``id``, ``version``, ``metadata``, ``file``, ``slug``, ``upload_path``;
    Go matches them case-insensitively) plus the registry's own extras.
    """
    obj: dict[str, object] = {
        "username": version.user,
        "name": version.name,
        # atlas-go reads Tag (user/name); Terraform's atlas_artifact built its id from it.
        "tag": f"{version.user}/{version.name}",
        "artifact_type": version.type,
        "id": version.id,
        "version": version.version,
        "metadata": version.metadata,
        "file": version.file,
        "slug": version.slug,
        "build_id": version.build_id,
        "compile_id": version.compile_id,
        "created_at": version.created,
        "size": version.size,
        "sha256": version.sha256,
    }
    if upload_path is not None:
        obj["upload_path"] = upload_path
    return obj
