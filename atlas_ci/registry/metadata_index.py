"""An index of version metadata, so a metadata search finds its versions without reading the
ones that do not match.

One row per (version, metadata key) and one per (version, key, value): ``digest`` is the
SHA-256 of the artifact, type, key (and value), ``version`` the version number. Searching
``metadata.1.key=commit&metadata.1.value=abc`` on ``acme/web/amazon.ami`` reads the index
rows of that one digest, newest version first, and stops at the first version that matches
exactly (:class:`~atlas_ci.registry.storage.MetadataFilter` still decides). Digests keep the
index entries short whatever the length of a key or value (PostgreSQL's B-tree entries are
limited to about 2.7 kB).

The SQL is portable; the table is filled for existing versions once, when a data directory
made before it is first opened (``schema_features`` remembers that it was).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Mapping

SCHEMA = """
CREATE TABLE IF NOT EXISTS metadata_index (
    digest  TEXT NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (digest, version)
);
CREATE TABLE IF NOT EXISTS schema_features (
    name TEXT PRIMARY KEY
)
"""
FEATURE = "metadata_index"


def digest(user: str, name: str, artifact_type: str, key: str, value: str | None) -> str:
    """The index key of ``key`` (any value, when ``value`` is None) or of ``key``=``value``."""
    parts = [user, name, artifact_type, key] + ([] if value is None else [value])
    return hashlib.sha256(json.dumps(parts).encode("utf-8")).hexdigest()


def _entries(
    user: str, name: str, artifact_type: str, version: int, metadata: Mapping[str, str]
) -> Iterable[tuple[str, int]]:
    for key, value in metadata.items():
        yield digest(user, name, artifact_type, key, None), version
        yield digest(user, name, artifact_type, key, value), version


def add(
    conn: sqlite3.Connection,
    user: str,
    name: str,
    artifact_type: str,
    version: int,
    metadata: Mapping[str, str] | None,
) -> None:
    """Index a new version's metadata (inside the transaction that stores the version)."""
    if metadata:
        conn.executemany(
            "INSERT INTO metadata_index (digest, version) VALUES (?, ?)",
            list(_entries(user, name, artifact_type, version, metadata)),
        )


def ensure(conn: sqlite3.Connection) -> None:
    """Create the index, and fill it from the stored versions the first time."""
    for statement in SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    if conn.execute("SELECT 1 FROM schema_features WHERE name = ?", (FEATURE,)).fetchone():
        return
    cursor = conn.execute(
        "SELECT user, name, type, version, metadata FROM versions WHERE metadata IS NOT NULL"
    )
    while rows := cursor.fetchmany(1000):
        entries = [
            entry
            for user, name, type_, version, metadata in rows
            for entry in _entries(user, name, type_, int(version), json.loads(metadata))
        ]
        conn.executemany("INSERT INTO metadata_index (digest, version) VALUES (?, ?)", entries)
    conn.execute("INSERT INTO schema_features (name) VALUES (?)", (FEATURE,))
