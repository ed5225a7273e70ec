"""Upload secrets at rest: stored hashed for lookup, and sealed with the data directory's key
while the version waits for its file (so the same ``upload_path`` can be handed out again)."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import tempfile
from pathlib import Path

from atlas_ci.registry.model import StorageError


def hash_secret(secret: str) -> str:
    """What is stored for an upload secret: its SHA-256, so a leaked database leaks no URL."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _keystream(key: bytes, pk: int, size: int) -> bytes:
    blocks = (size + 31) // 32
    return b"".join(
        hmac.new(key, f"upload-secret:{pk}:{i}".encode(), hashlib.sha256).digest()
        for i in range(blocks)
    )[:size]


def seal_secret(key: bytes, pk: int, secret: str) -> bytes:
    """The upload secret of row ``pk`` encrypted with ``key`` (a one-use keystream per row)."""
    raw = secret.encode("utf-8")
    return bytes(a ^ b for a, b in zip(raw, _keystream(key, pk, len(raw)), strict=True))


def unseal_secret(key: bytes, pk: int, sealed: bytes) -> str:
    return bytes(
        a ^ b for a, b in zip(sealed, _keystream(key, pk, len(sealed)), strict=True)
    ).decode("utf-8")


def load_key(path: Path) -> bytes:
    """The data directory's sealing key, made once (0600) and shared by every server on it."""
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-key-")
        try:
            os.write(fd, secrets.token_bytes(32))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # atomic; a second server racing us keeps the first key
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
        key = path.read_bytes()
    if len(key) != 32:
        raise StorageError(f"{path} is not a 32-byte key; remove it only if no upload is pending")
    return key
