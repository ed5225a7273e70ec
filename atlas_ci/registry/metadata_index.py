"""An index of version metadata, so a metadata search finds its versions without reading the
ones that do not match.

One row per (version, metadata key) and one per (version, key, value): ``digest`` is the
first 64 bits of the SHA-256 of the artifact, type, key (and value), as a signed integer;
``version`` is the version number. Searching
``metadata.1.key=commit&metadata.1.value=abc`` on ``acme/web/amazon.ami`` reads the index
rows of that one digest, newest version first, and stops at the first version that matches
exactly (:class:`~atlas_ci.registry.storage.MetadataFilter` still decides, so a digest shared
by two keys costs a row read, never a wrong answer; the index is not unique, so such a pair
cannot make an insert fail either). Digests keep the index small (about
40 bytes a row with its B-tree) whatever the length of a key or value, which PostgreSQL's
B-tree entries could not hold past about 2.7 kB.

The SQL is portable; the table is filled for existing versions once, when a data directory
made before it is first opened (``schema_features`` remembers that it was).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Mapping

SCHEMA = """
CREATE TABLE IF NOT EXISTS metadata_index (
    digest  INTEGER NOT NULL,
    version INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS metadata_index_lookup ON metadata_index (digest, version);
CREATE TABLE IF NOT EXISTS schema_features (
    name TEXT PRIMARY KEY
)
"""
FEATURE = "metadata_index"


def digest(user: str, name: str, artifact_type: str, key: str, value: str | None) -> int:
    """The index key of ``key`` (any value, when ``value`` is None) or of ``key``=``value``."""
    parts = [user, name, artifact_type, key] + ([] if value is None else [value])
    raw = hashlib.sha256(json.dumps(parts).encode("utf-8")).digest()
    return int.from_bytes(raw[:8], "big", signed=True)  # fits a 64-bit integer column


def _entries(
    user: str, name: str, artifact_type: str, version: int, metadata: Mapping[str, str]
) -> set[tuple[int, int]]:
    # A set: two keys of one version that share a digest share its row.
    entries = set()
    for key, value in metadata.items():
        entries.add((digest(user, name, artifact_type, key, None), version))
        entries.add((digest(user, name, artifact_type, key, value), version))
    return entries


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
            sorted(_entries(user, name, artifact_type, version, metadata)),
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
