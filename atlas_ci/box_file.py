"""What a build's ``.box`` says of itself: the provider in its ``metadata.json``.

Packer's ``vagrant-cloud`` post-processor reads it for a box that came through ``artifice``.
The archive is read as a stream, member by member, never extracted: memory stays bounded
whatever the box holds, and only ``metadata.json`` (at most :data:`MAX_METADATA` bytes) is
read into memory.
"""

from __future__ import annotations

import json
import tarfile
import zlib
from pathlib import Path

from atlas_ci.errors import InputFileError
from atlas_ci.textfile import quoted

MAX_METADATA = 64 << 10
"""A box's metadata.json holds a few keys; anything larger is not one."""


def provider_from_box(path: Path) -> str:
    """The ``provider`` of the box's ``metadata.json`` (a gzip'd or plain tar)."""
    shown = quoted(str(path))
    hint = "pass a Vagrant box (a tar, usually gzip'd, with metadata.json naming its provider)"
    try:
        with tarfile.open(path, mode="r|*") as tar:
            for member in tar:
                if member.name.lstrip("./") != "metadata.json":
                    continue
                if not member.isfile() or member.size > MAX_METADATA:
                    raise InputFileError(
                        f"the metadata.json of box {shown} is not a small file", hint, str(path)
                    )
                handle = tar.extractfile(member)
                data = handle.read(MAX_METADATA + 1) if handle is not None else b""
                return _provider_of(data, shown, hint, path)
    except (tarfile.TarError, zlib.error, EOFError, OSError) as exc:
        reason = getattr(exc, "strerror", None) or "not a readable tar archive"
        raise InputFileError(
            f"cannot read the metadata.json of box {shown}: {reason}", hint, str(path)
        ) from None
    raise InputFileError(f"box {shown} holds no metadata.json", hint, str(path))


def _provider_of(data: bytes, shown: str, hint: str, path: Path) -> str:
    try:
        metadata = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InputFileError(
            f"the metadata.json of box {shown} is not JSON", hint, str(path)
        ) from None
    provider = metadata.get("provider") if isinstance(metadata, dict) else None
    if not isinstance(provider, str) or not provider.strip():
        raise InputFileError(f"the metadata.json of box {shown} names no provider", hint, str(path))
    return provider.strip()
