"""The box model's tables (schema step 6 of :data:`.storage.STEPS`), and their first filling.

Apart from :mod:`.box_store` (their SQL) so the schema steps of :mod:`.storage` can name them
without importing the box model, which imports the storage. What the tables hold is written
in :mod:`.box_store`.
"""

from __future__ import annotations

import json
import re

from atlas_ci.registry import box_version
from atlas_ci.registry.database import Connection

BOX_TYPE = "vagrant.box"
TABLES = ("box_details", "box_versions", "box_providers", "box_uploads")
"""The tables, each after those it refers to (the order export and import copy them in)."""
MAX_PROVIDER = 64
_PROVIDER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")

SCHEMA = """
CREATE TABLE IF NOT EXISTS box_details (
    "user"            TEXT NOT NULL,
    name              TEXT NOT NULL,
    short_description TEXT NOT NULL,
    description       TEXT NOT NULL,
    downloads         INTEGER NOT NULL,
    updated           TEXT NOT NULL,
    PRIMARY KEY ("user", name),
    FOREIGN KEY ("user", name) REFERENCES artifacts ("user", name)
);
CREATE TABLE IF NOT EXISTS box_versions (
    pk          INTEGER PRIMARY KEY,
    "user"      TEXT NOT NULL,
    name        TEXT NOT NULL,
    version     TEXT NOT NULL,
    sort_key    BLOB NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('unreleased', 'active', 'revoked')),
    description TEXT NOT NULL,
    created     TEXT NOT NULL,
    updated     TEXT NOT NULL,
    UNIQUE ("user", name, sort_key),
    FOREIGN KEY ("user", name) REFERENCES artifacts ("user", name)
);
CREATE TABLE IF NOT EXISTS box_providers (
    pk            INTEGER PRIMARY KEY,
    version_pk    INTEGER NOT NULL REFERENCES box_versions (pk),
    name          TEXT NOT NULL,
    url           TEXT,
    checksum      TEXT,
    checksum_type TEXT,
    atlas_pk      INTEGER REFERENCES versions (pk),
    file_state    TEXT NOT NULL CHECK (file_state IN ('none', 'pending', 'ready')),
    size          INTEGER,
    sha256        TEXT,
    created       TEXT NOT NULL,
    updated       TEXT NOT NULL,
    UNIQUE (version_pk, name)
);
CREATE INDEX IF NOT EXISTS box_providers_by_atlas ON box_providers (atlas_pk);
CREATE TABLE IF NOT EXISTS box_uploads (
    provider_pk     INTEGER PRIMARY KEY REFERENCES box_providers (pk),
    secret_sha256   TEXT NOT NULL UNIQUE,
    sealed          BLOB NOT NULL,
    callback_sha256 TEXT NOT NULL,
    grantee         TEXT,
    received        INTEGER NOT NULL CHECK (received IN (0, 1))
)
"""


def provider_problem(name: str) -> str | None:
    """Why ``name`` cannot be a provider name (``virtualbox``, ``vmware_desktop``), or None."""
    if not name:
        return "provider name must not be empty; use e.g. virtualbox or libvirt"
    if len(name) > MAX_PROVIDER:
        return f"provider name is longer than {MAX_PROVIDER} characters"
    if not _PROVIDER.fullmatch(name):
        shown = name if name.isprintable() else ascii(name)
        return (
            f"provider name {shown[:80]!r} is not a provider name: use letters, digits, "
            "'_', '.' and '-' (e.g. virtualbox, vmware_desktop)"
        )
    return None


def ensure(conn: Connection) -> None:
    """Make the tables, then land every Atlas ``vagrant.box`` version that has a file and a
    ``provider`` as provider of an active box version ``"<N>"``, its Atlas number: what the
    catalog called it until now (numbers are unique per artifact: no two land together)."""
    for statement in SCHEMA.split(";"):
        if statement.strip():
            conn.ddl(statement)
    rows = conn.execute(
        'SELECT "user", name, version, pk, metadata, created FROM versions '
        "WHERE type = ? AND file = 1 AND metadata IS NOT NULL ORDER BY pk",
        (BOX_TYPE,),
    ).fetchall()
    for user, name, number, pk, metadata, created in rows:
        provider = json.loads(str(metadata)).get("provider")
        if not isinstance(provider, str) or provider_problem(provider) is not None:
            continue
        (version_pk,) = conn.execute(
            'INSERT INTO box_versions ("user", name, version, sort_key, status, description, '
            "created, updated) VALUES (?, ?, ?, ?, 'active', '', ?, ?) RETURNING pk",
            (user, name, str(number), box_version.sort_key(str(number)), created, created),
        ).fetchone()
        conn.execute(
            "INSERT INTO box_providers (version_pk, name, atlas_pk, file_state, created, "
            "updated) VALUES (?, ?, ?, 'none', ?, ?)",
            (version_pk, provider, pk, created, created),
        )
