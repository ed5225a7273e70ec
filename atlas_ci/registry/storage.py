"""Registry state: artifacts and versions in a database, uploaded files as blobs on disk.

The rows live in SQLite (default) or PostgreSQL, reached through :mod:`.database`; every
statement here is written once for both. Layout of a data directory::

    registry.sqlite3        artifacts and versions, unless --database names another place
                            (WAL mode, so also -wal and -shm)
    upload.key              seals pending uploads' secrets; shared by every server on it
    files/<row id>          the file of one version, written once
    tmp/upload-<pk>-<x>     uploads in flight, each locked (flock) by its server while it
                            lasts; unlocked ones are removed when a storage is opened

Several servers may share one data directory when they share one PostgreSQL database.

Nothing here knows about HTTP; the front doors (:mod:`.atlas_door`, :mod:`.files_door`) map
requests onto these calls. The records it hands out are :mod:`.model`'s; beside it live the parts
of a write that are no SQL of this module: :mod:`.sealing` (upload secrets at rest),
:mod:`.uploads` (a file arriving), :mod:`.idempotency` (keys of version requests) and
:mod:`.rows` (a ``versions`` row read back).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from atlas_ci.registry import account_tables, box_tables, idempotency, metadata_index, schema
from atlas_ci.registry.database import (
    Connection,
    Database,
    DatabaseBusy,
    DatabaseError,
    DatabaseFull,
    IntegrityError,
    open_database,
)
from atlas_ci.registry.model import (
    INT64_MAX,
    INT64_MIN,
    Artifact,
    Busy,
    Conflict,
    Invalid,
    NotFound,
    OutOfSpace,
    Search,
    StorageError,
    Version,
    validate_name,
)
from atlas_ci.registry.rows import SELECT_INDEXED, SELECT_VERSIONS, now, version_from_row
from atlas_ci.registry.sealing import hash_secret, load_key, seal_secret, unseal_secret
from atlas_ci.registry.uploads import UPLOAD_TEMP, Upload, fsync_dir, remove_if_unlocked

_SCHEMA = """
CREATE TABLE IF NOT EXISTS artifacts (
    "user"  TEXT NOT NULL,
    name    TEXT NOT NULL,
    created TEXT NOT NULL,
    PRIMARY KEY ("user", name)
);
CREATE TABLE IF NOT EXISTS versions (
    pk            INTEGER PRIMARY KEY,
    "user"        TEXT NOT NULL,
    name          TEXT NOT NULL,
    type          TEXT NOT NULL,
    version       INTEGER NOT NULL,
    id            TEXT NOT NULL,
    build_id      INTEGER NOT NULL,
    compile_id    INTEGER NOT NULL,
    metadata      TEXT,
    file          INTEGER NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('pending', 'ready')),
    size          INTEGER,
    sha256        TEXT,
    upload_secret TEXT UNIQUE,
    created       TEXT NOT NULL,
    UNIQUE ("user", name, type, version),
    FOREIGN KEY ("user", name) REFERENCES artifacts ("user", name)
);
CREATE TABLE IF NOT EXISTS pending_uploads (
    pk     INTEGER PRIMARY KEY REFERENCES versions (pk),
    sealed BLOB NOT NULL
);
"""

_SCHEMA_IDEMPOTENCY_KEYS = """
CREATE TABLE IF NOT EXISTS idempotency_keys (
    owner          TEXT NOT NULL,
    artifact       TEXT NOT NULL,
    artifact_type  TEXT NOT NULL,
    key_sha256     TEXT NOT NULL,
    request_sha256 TEXT NOT NULL,
    version_pk     INTEGER NOT NULL REFERENCES versions (pk),
    created        TEXT NOT NULL,
    PRIMARY KEY (owner, artifact, artifact_type, key_sha256)
);
CREATE INDEX IF NOT EXISTS idempotency_keys_created ON idempotency_keys (created);
"""

_SCHEMA_UPLOAD_GRANTS = """
CREATE TABLE IF NOT EXISTS upload_grants (
    pk      INTEGER PRIMARY KEY REFERENCES versions (pk),
    grantee TEXT NOT NULL
);
"""


STEPS: schema.Steps = (
    (1, "artifacts, versions and pending uploads", _SCHEMA),
    # Steps 2 to 5 say IF NOT EXISTS: a data directory made before the steps were counted
    # (user_version 1) may hold their tables already; step 3 fills its index only once.
    (2, "idempotency keys of version requests", _SCHEMA_IDEMPOTENCY_KEYS),
    (3, "the metadata index", metadata_index.ensure),
    (4, "users, organizations, memberships, tokens, public artifacts", account_tables.SCHEMA),
    (5, "who each pending upload URL was handed to", _SCHEMA_UPLOAD_GRANTS),
    (6, "boxes: named versions, providers, upload secrets", box_tables.ensure),
    (7, "the web pages' sign-in sessions", account_tables.SESSIONS),
)
"""The schema's upgrade steps (see :mod:`.schema`): append one, never edit one that shipped."""
SCHEMA_VERSION = STEPS[-1][0]
TABLES = (
    "artifacts",
    "versions",
    "pending_uploads",
    "idempotency_keys",
    "metadata_index",
    "namespaces",
    "memberships",
    "tokens",
    "sessions",
    "public_artifacts",
    "upload_grants",
    *box_tables.TABLES,
)
"""Every table of rows, each after those it refers to: the order export and import copy them
in (``schema_version`` and ``schema_features`` say what the schema is, and are not copied)."""


def _translated(exc: DatabaseError) -> StorageError | None:
    """The :class:`StorageError` a database error means for a client, if it is one."""
    if isinstance(exc, DatabaseFull):
        return OutOfSpace("the registry is out of disk space")
    if isinstance(exc, DatabaseBusy):
        return Busy("the registry's database is busy; retry in a moment")
    return None


@contextlib.contextmanager
def _translating() -> Iterator[None]:
    try:
        yield
    except DatabaseError as exc:
        translated = _translated(exc)
        if translated is None:
            raise
        raise translated from exc


def _check_int64(field: str, value: int) -> None:
    if not INT64_MIN <= value <= INT64_MAX:
        raise Invalid(f"{field} does not fit a 64-bit integer")


class Storage:
    """Artifacts, versions and blobs under one data directory; safe to share between threads.

    ``database`` holds the rows (None: ``registry.sqlite3`` in ``data_dir``). ``migrate``
    brings the schema up to date first; None means only for SQLite (the embedded default
    needs no setup step), while a PostgreSQL schema is upgraded by
    ``atlas-ci registry migrate`` and only checked here.
    """

    def __init__(
        self,
        data_dir: Path,
        database: Database | None = None,
        *,
        migrate: bool | None = None,
        remove_stale_uploads: bool = True,
    ) -> None:
        """Open (or create) the data directory. ``remove_stale_uploads=False`` leaves ``tmp/``
        alone: the administration command opens a directory a running server may be using."""
        self.data_dir = data_dir
        self.files_dir = data_dir / "files"
        self.tmp_dir = data_dir / "tmp"
        for directory in (data_dir, self.files_dir, self.tmp_dir):
            # Owner-only when created here: the files are whatever the builds uploaded.
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.db = database if database is not None else open_database(None, data_dir)
        try:
            with _translating():
                if migrate if migrate is not None else self.db.dialect == "sqlite":
                    schema.migrate(self.db, STEPS)
                else:
                    schema.check(self.db, STEPS)
        except BaseException:
            self.db.close()
            raise
        # Pending versions' upload secrets are kept sealed with this key, so the token holder
        # can be handed an unfinished upload_path again; the database alone reveals none.
        self._key = load_key(data_dir / "upload.key")
        if remove_stale_uploads:
            self._remove_stale_uploads()

    # -- connections -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Connection]:
        """A connection in autocommit mode, used by one thread at a time.

        A full disk or a database locked too long is raised as :class:`OutOfSpace` or
        :class:`Busy`, which a client can be told about; other database errors as they are.
        """
        with _translating(), self.db.connection() as conn:
            yield conn

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """A write transaction (SQLite: BEGIN IMMEDIATE); committed unless the block raises."""
        with _translating(), self.db.transaction() as conn:
            yield conn

    def connection(self) -> contextlib.AbstractContextManager[Connection]:
        """A pooled connection for the modules that keep their own tables (accounts)."""
        return self._connection()

    def transaction(self) -> contextlib.AbstractContextManager[Connection]:
        """A write transaction, as every write (SQLite: ``BEGIN IMMEDIATE``); rolled back on an
        exception."""
        return self._transaction()

    def close(self) -> None:
        """Close every connection; the storage must not be used afterwards."""
        self.db.close()

    def _remove_stale_uploads(self) -> None:
        """Remove temp files of uploads that no server is receiving any more.

        Such a file belongs to an upload cut by a crash; its version is pending and the
        client can PUT again. Only files named as :class:`Upload` names them and not locked
        are removed: an upload in flight holds its lock, whichever server on this directory
        receives it, and anything else in ``tmp/`` is not ours.
        """
        with os.scandir(self.tmp_dir) as entries:
            for entry in entries:
                if UPLOAD_TEMP.fullmatch(entry.name):
                    with contextlib.suppress(OSError):
                        remove_if_unlocked(entry.path)

    # -- artifacts -----------------------------------------------------------------------------

    def get_artifact(self, user: str, name: str) -> Artifact | None:
        with self._connection() as conn:
            row = conn.execute(
                'SELECT "user", name, created FROM artifacts WHERE "user" = ? AND name = ?',
                (user, name),
            ).fetchone()
        return None if row is None else Artifact(*row)

    def create_artifact(self, user: str, name: str) -> Artifact:
        """Create ``user/name``; :class:`Conflict` if it exists."""
        validate_name("username", user)
        validate_name("name", name)
        created = now()
        with self._transaction() as conn:
            try:
                conn.execute(
                    'INSERT INTO artifacts ("user", name, created) VALUES (?, ?, ?)',
                    (user, name, created),
                )
            except IntegrityError:
                raise Conflict(f"artifact {user}/{name} already exists") from None
        return Artifact(user, name, created)

    # -- versions ------------------------------------------------------------------------------

    def create_version(
        self,
        user: str,
        name: str,
        artifact_type: str,
        *,
        artifact_id: str,
        build_id: int,
        compile_id: int,
        metadata: dict[str, str] | None,
        file: bool,
        upload_secret: str | None,
        idempotency_key: str | None = None,
        grantee: str | None = None,
        landing: Callable[[Connection, Version], None] | None = None,
    ) -> Version:
        """Allocate the next version number of ``user/name/artifact_type`` and store it.

        A version with a file is pending until :meth:`finish_upload`; one without is ready.
        An ``idempotency_key`` ``grantee`` used here before creates nothing (the key is that
        grantee's alone; see :meth:`upload_grantee`): the version it created is returned as it
        is now, its upload secret the first request's, or :class:`KeyReused` if the fields
        differ. ``landing`` runs in the transaction once a new version is stored (a box
        version's provider, :mod:`.boxes`); if it raises, nothing is stored.
        """
        _check_version_request(artifact_type, build_id, compile_id, file, upload_secret)
        request = idempotency.request_digest(artifact_id, build_id, compile_id, metadata, file)
        key = None if idempotency_key is None else idempotency.key_digest(idempotency_key, grantee)
        created = now()
        with self._transaction() as conn:
            earlier = _lock_then_replay(conn, user, name, artifact_type, key, request)
            if earlier is not None:
                return earlier
            version = _insert_version(
                conn,
                Version(
                    pk=0,  # the row's, set by _insert_version
                    user=user,
                    name=name,
                    type=artifact_type,
                    version=_next_number(conn, user, name, artifact_type),
                    id=artifact_id,
                    build_id=build_id,
                    compile_id=compile_id,
                    metadata=None if metadata is None else dict(metadata),
                    file=file,
                    state="pending" if file else "ready",
                    size=None,
                    sha256=None,
                    created=created,
                ),
                upload_secret,
            )
            if upload_secret is not None:
                self._hold_upload_secret(conn, version.pk, upload_secret, grantee)
            if key is not None:
                idempotency.remember_key(conn, user, name, artifact_type, key, request, version.pk)
            if landing is not None:
                landing(conn, version)
        return version

    def _hold_upload_secret(
        self, conn: Connection, pk: int, upload_secret: str, grantee: str | None
    ) -> None:
        """Keep a pending version's upload secret sealed (to hand the same URL to a replayed
        request) and who it was granted to, until its file is there."""
        conn.execute(
            "INSERT INTO pending_uploads (pk, sealed) VALUES (?, ?)",
            (pk, seal_secret(self._key, pk, upload_secret)),
        )
        if grantee is not None:
            conn.execute("INSERT INTO upload_grants (pk, grantee) VALUES (?, ?)", (pk, grantee))

    _version = staticmethod(version_from_row)

    def _select_versions(self, where: str, params: Sequence[object]) -> list[Version]:
        # ``where`` is always a literal of this module; every value goes through ``params``.
        with self._connection() as conn:
            rows = conn.execute(SELECT_VERSIONS + where, params).fetchall()
        return [self._version(row) for row in rows]

    def get_version(self, user: str, name: str, artifact_type: str, number: int) -> Version | None:
        """One version, pending or ready."""
        rows = self._select_versions(
            '"user" = ? AND name = ? AND type = ? AND version = ?',
            (user, name, artifact_type, number),
        )
        return rows[0] if rows else None

    def search(self, user: str, name: str, artifact_type: str, search: Search) -> list[Version]:
        """Ready versions matching ``search``, newest first (one at most for ``latest``);
        pending ones too with ``search.include_pending``.

        Rows are read newest first and only as far as needed: ``latest`` stops at the first
        match. With a metadata filter, the rows read are those the first filter's entry in
        :mod:`.metadata_index` names, not every version; each is then checked exactly.
        """
        conditions = ['"user" = ?', "name = ?", "type = ?"]
        params: list[object] = [user, name, artifact_type]
        if not search.include_pending:
            conditions.append("state = 'ready'")
        if isinstance(search.version, int):
            conditions.append("version = ?")
            params.append(search.version)
        if isinstance(search.build, int):
            conditions.append("build_id = ?")
            params.append(search.build)
        if search.metadata:
            first = search.metadata[0]
            query = SELECT_INDEXED + " AND ".join(f"v.{c}" for c in conditions)
            query += " ORDER BY m.version DESC"
            params.insert(
                0, metadata_index.digest(user, name, artifact_type, first.key, first.value)
            )
        else:
            order = " ORDER BY version DESC"
            if search.version == "latest" and search.build == "latest":
                order = " ORDER BY build_id DESC, version DESC"
            query = SELECT_VERSIONS + " AND ".join(conditions) + order
            if search.version == "latest":
                # The database stops at the one row wanted (psycopg reads a whole result).
                query += " LIMIT 1"
        stop_at_first = search.version == "latest" and search.build != "latest"
        found: list[Version] = []
        seen: set[int] = set()  # an index row per colliding digest could repeat a version
        with self._connection() as conn:
            cursor = conn.execute(query, params)
            # ``latest`` usually stops at the first row: do not decode 256 to get there.
            while rows := cursor.fetchmany(16 if stop_at_first else 256):
                for row in rows:
                    version = self._version(row)
                    if version.pk in seen:
                        continue
                    seen.add(version.pk)
                    if all(f.matches(version.metadata) for f in search.metadata):
                        found.append(version)
                if stop_at_first and found:
                    break
            cursor.close()
        if search.build == "latest" and found:
            newest_build = max(v.build_id for v in found)
            found = [v for v in found if v.build_id == newest_build]
        if search.version == "latest":
            found = found[:1]
        return found

    def newest_versions(
        self, user: str, name: str, artifact_type: str, limit: int
    ) -> list[Version]:
        """The newest ``limit`` ready versions of one type, newest first."""
        return self._select_versions(
            "\"user\" = ? AND name = ? AND type = ? AND state = 'ready' "
            "ORDER BY version DESC LIMIT ?",
            (user, name, artifact_type, limit),
        )

    def artifact_types(self, user: str, name: str) -> list[tuple[str, int]]:
        """Each type ``user/name`` has ready versions of, and how many, by type."""
        with self._connection() as conn:
            rows = conn.execute(
                'SELECT type, COUNT(*) FROM versions WHERE "user" = ? AND name = ? '
                "AND state = 'ready' GROUP BY type ORDER BY type",
                (user, name),
            ).fetchall()
        return [(str(kind), int(count)) for kind, count in rows]

    def latest_with_file(self, user: str, name: str, artifact_type: str) -> Version | None:
        """The highest ready version that has a file."""
        rows = self._select_versions(
            "\"user\" = ? AND name = ? AND type = ? AND state = 'ready' AND file = 1 "
            "ORDER BY version DESC LIMIT 1",
            (user, name, artifact_type),
        )
        return rows[0] if rows else None

    def pending_upload_secret(self, version: Version) -> str | None:
        """The upload secret of a pending version (None once its file is there)."""
        if version.state != "pending":
            return None
        with self._connection() as conn:
            row = conn.execute(
                "SELECT sealed FROM pending_uploads WHERE pk = ?", (version.pk,)
            ).fetchone()
        if row is None:
            return None
        return unseal_secret(self._key, version.pk, bytes(row[0]))

    def upload_grantee(self, version: Version) -> str | None:
        """Who a pending version's upload URL was handed to, as ``create_version`` was told
        (None for a version created without, or before the registry recorded it)."""
        with self._connection() as conn:
            row = conn.execute(
                "SELECT grantee FROM upload_grants WHERE pk = ?", (version.pk,)
            ).fetchone()
        return None if row is None else str(row[0])

    # -- files ---------------------------------------------------------------------------------

    def blob_path(self, version: Version) -> Path:
        """Where the file of ``version`` lives (named by row id: names need no escaping)."""
        return self.files_dir / str(version.pk)

    def version_for_secret(self, secret: str) -> Version:
        """The version an upload secret belongs to: :class:`NotFound`, or :class:`Conflict`
        when its file is already there."""
        rows = self._select_versions("upload_secret = ?", (hash_secret(secret),))
        if not rows:
            raise NotFound("unknown upload URL")
        version = rows[0]
        if version.state == "ready":
            raise Conflict(f"the file of {version.slug} was already uploaded")
        return version

    def begin_upload(self, secret: str) -> Upload:
        """Start receiving the file of the pending version behind ``secret``."""
        return Upload(self.version_for_secret(secret), self.tmp_dir)

    def finish_upload(self, upload: Upload) -> Version:
        """Make a whole upload the version's file and mark the version ready.

        When two uploads for one version race, the first to finish wins; the other gets
        :class:`Conflict` and its temp file is removed.
        """
        upload.seal()
        try:
            with self._transaction() as conn:
                # Two servers may finish the same upload: one at a time past this line.
                conn.lock("upload", upload.version.pk)
                (state,) = conn.execute(
                    "SELECT state FROM versions WHERE pk = ?", (upload.version.pk,)
                ).fetchone()
                if state == "ready":
                    raise Conflict(f"the file of {upload.version.slug} was already uploaded")
                target = self.blob_path(upload.version)
                os.replace(upload.path, target)
                fsync_dir(self.files_dir)
                conn.execute(
                    "UPDATE versions SET state = 'ready', size = ?, sha256 = ? WHERE pk = ?",
                    (upload.size, upload.sha256, upload.version.pk),
                )
                conn.execute("DELETE FROM pending_uploads WHERE pk = ?", (upload.version.pk,))
                conn.execute("DELETE FROM upload_grants WHERE pk = ?", (upload.version.pk,))
        finally:
            upload.abort()  # a no-op once the file was renamed
        return dataclasses.replace(
            upload.version, state="ready", size=upload.size, sha256=upload.sha256
        )


# -- the steps of create_version: a check first, then the rest in its transaction and lock ----


def _check_version_request(
    artifact_type: str, build_id: int, compile_id: int, file: bool, upload_secret: str | None
) -> None:
    validate_name("artifact type", artifact_type)
    _check_int64("build_id", build_id)
    _check_int64("compile_id", compile_id)
    if file != (upload_secret is not None):
        raise ValueError("an upload secret goes with file=True and only then")


def _lock_then_replay(
    conn: Connection,
    user: str,
    name: str,
    artifact_type: str,
    key_sha256: str | None,
    request: str,
) -> Version | None:
    """Take the type's version lock, then: :class:`NotFound` if the artifact is not there,
    else the version ``key_sha256`` created before, if any.

    Numbers are allocated one writer at a time per artifact type, across servers. The key is
    looked up after the lock, in the transaction that allocates the number: of two requests
    with one key, the second waits for the first's lock (PostgreSQL) or write lock (SQLite)
    and then finds its key.
    """
    conn.lock("version", user, name, artifact_type)
    if not conn.execute(
        'SELECT 1 FROM artifacts WHERE "user" = ? AND name = ?', (user, name)
    ).fetchone():
        raise NotFound(f"artifact {user}/{name} does not exist")
    if key_sha256 is None:
        return None
    return idempotency.replay(conn, user, name, artifact_type, key_sha256, request)


def _next_number(conn: Connection, user: str, name: str, artifact_type: str) -> int:
    """The next version number of the type; only under the type's lock."""
    # ORDER BY ... LIMIT 1 rather than MAX(): PostgreSQL's planner may aggregate every
    # version of the type for MAX() when its statistics are stale (after a bulk import);
    # this form is one step down the (user, name, type, version) index on both.
    newest = conn.execute(
        'SELECT version FROM versions WHERE "user" = ? AND name = ? AND type = ? '
        "ORDER BY version DESC LIMIT 1",
        (user, name, artifact_type),
    ).fetchone()
    return 1 if newest is None else int(newest[0]) + 1


def _insert_version(conn: Connection, version: Version, upload_secret: str | None) -> Version:
    """Insert ``version`` and its metadata index; the version with its row's ``pk``."""
    v = version
    (pk,) = conn.execute(
        'INSERT INTO versions ("user", name, type, version, id, build_id, compile_id, '
        "metadata, file, state, upload_secret, created) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING pk",
        (
            v.user,
            v.name,
            v.type,
            v.version,
            v.id,
            v.build_id,
            v.compile_id,
            None if v.metadata is None else json.dumps(v.metadata, sort_keys=True),
            int(v.file),
            v.state,
            None if upload_secret is None else hash_secret(upload_secret),
            v.created,
        ),
    ).fetchone()
    metadata_index.add(conn, v.user, v.name, v.type, v.version, v.metadata)
    return dataclasses.replace(v, pk=pk)
