"""Idempotency keys of version requests: which version a key created, and whether a request
sent again with it is the same one. Used inside ``Storage.create_version``'s transaction, under
its lock."""

from __future__ import annotations

import datetime
import hashlib
import json

from atlas_ci.registry.database import Connection
from atlas_ci.registry.model import KeyReused, Version
from atlas_ci.registry.rows import SELECT_VERSIONS, now, version_from_row

IDEMPOTENCY_KEY_HOURS = 24
"""An idempotency key is honoured for at least this long after the version it created."""


def request_digest(
    artifact_id: str, build_id: int, compile_id: int, metadata: dict[str, str] | None, file: bool
) -> str:
    """What identifies a version request: the same fields give the same digest."""
    fields = [artifact_id, build_id, compile_id, metadata, file]
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode("utf-8")).hexdigest()


def key_digest(key: str, grantee: str | None) -> str:
    # Stored hashed like upload secrets: a client may have made its key from a secret. The
    # grantee is part of it: one principal's key never names another's version.
    scoped = key if grantee is None else f"{grantee}\n{key}"
    return hashlib.sha256(scoped.encode("utf-8")).hexdigest()


def _version_for_key(
    conn: Connection, user: str, name: str, artifact_type: str, key_sha256: str
) -> tuple[str, Version] | None:
    """The request digest and version of an idempotency key seen before on this type."""
    row = conn.execute(
        "SELECT request_sha256, version_pk FROM idempotency_keys "
        "WHERE owner = ? AND artifact = ? AND artifact_type = ? AND key_sha256 = ?",
        (user, name, artifact_type, key_sha256),
    ).fetchone()
    if row is None:
        return None
    version = conn.execute(SELECT_VERSIONS + "pk = ?", (row[1],)).fetchone()
    return str(row[0]), version_from_row(version)


def replay(
    conn: Connection, user: str, name: str, artifact_type: str, key_sha256: str, request: str
) -> Version | None:
    """The version an idempotency key created before, if it did; :class:`KeyReused` if it
    was for a different request."""
    earlier = _version_for_key(conn, user, name, artifact_type, key_sha256)
    if earlier is None:
        return None
    if earlier[0] != request:
        raise KeyReused(
            f"this Idempotency-Key already created {user}/{name}/{artifact_type}/"
            f"{earlier[1].version} from a different request; send a new key for a new version"
        )
    return earlier[1]


def remember_key(
    conn: Connection,
    user: str,
    name: str,
    artifact_type: str,
    key_sha256: str,
    request: str,
    pk: int,
) -> None:
    """Record a key (its :func:`key_digest`) for version ``pk``, and forget keys older than
    the time they are kept."""
    expired = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(
        hours=IDEMPOTENCY_KEY_HOURS
    )
    conn.execute(
        "DELETE FROM idempotency_keys WHERE created < ?",
        (expired.strftime("%Y-%m-%dT%H:%M:%S.000Z"),),
    )
    conn.execute(
        "INSERT INTO idempotency_keys (owner, artifact, artifact_type, key_sha256, "
        "request_sha256, version_pk, created) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (user, name, artifact_type, key_sha256, request, pk, now()),
    )
