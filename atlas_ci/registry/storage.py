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

Nothing here knows about HTTP; :mod:`atlas_ci.registry.server` maps requests onto these calls.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import errno
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import stat
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Literal

from atlas_ci.registry import account_tables, box_tables, metadata_index, schema
from atlas_ci.registry.database import (
    Connection,
    Database,
    DatabaseBusy,
    DatabaseError,
    DatabaseFull,
    IntegrityError,
    open_database,
)
from atlas_ci.registry.ingest import Ingest, ReadInto, reserve

MAX_NAME_LENGTH = 255
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
IDEMPOTENCY_KEY_HOURS = 24
"""An idempotency key is honoured for at least this long after the version it created."""

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
    "public_artifacts",
    "upload_grants",
    *box_tables.TABLES,
)
"""Every table of rows, each after those it refers to: the order export and import copy them
in (``schema_version`` and ``schema_features`` say what the schema is, and are not copied)."""

_SELECT_VERSIONS = (
    'SELECT pk, "user", name, type, version, id, build_id, compile_id, metadata, file, state, '
    "size, sha256, created FROM versions WHERE "
)

# The same columns, of the versions one metadata_index digest names (its placeholder first).
_SELECT_INDEXED = (
    'SELECT v.pk, v."user", v.name, v.type, v.version, v.id, v.build_id, v.compile_id, '
    "v.metadata, v.file, v.state, v.size, v.sha256, v.created "
    "FROM metadata_index m JOIN versions v ON v.version = m.version WHERE m.digest = ? AND "
)

State = Literal["pending", "ready"]
Selector = int | Literal["latest", "any"]
"""A ``version`` or ``build`` choice in a search: a number, the newest, or any."""


class StorageError(Exception):
    """A storage rule was broken; the message is safe to show to a client."""


class NotFound(StorageError):
    """The artifact, version or upload does not exist."""


class Conflict(StorageError):
    """The request clashes with what is stored (artifact exists, file already uploaded)."""


class Invalid(StorageError):
    """A value cannot be stored (bad name, out-of-range integer, bad metadata)."""


class KeyReused(Invalid):
    """An idempotency key came back with a different request than the one it was first sent
    with."""


class OutOfSpace(StorageError):
    """The disk (or the database) is full; nothing was changed."""


class Busy(StorageError):
    """The database stayed locked by another writer for longer than the wait allows."""


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


@dataclasses.dataclass(frozen=True)
class Artifact:
    """One ``user/name`` artifact."""

    user: str
    name: str
    created: str

    @property
    def tag(self) -> str:
        return f"{self.user}/{self.name}"


@dataclasses.dataclass(frozen=True)
class Version:
    """One version of an artifact type, as stored."""

    pk: int
    user: str
    name: str
    type: str
    version: int
    id: str
    build_id: int
    compile_id: int
    metadata: dict[str, str] | None
    file: bool
    state: State
    size: int | None
    sha256: str | None
    created: str

    @property
    def slug(self) -> str:
        return f"{self.user}/{self.name}/{self.type}/{self.version}"


@dataclasses.dataclass(frozen=True)
class MetadataFilter:
    """``metadata.N.key`` with an optional ``metadata.N.value`` (None: any value)."""

    key: str
    value: str | None = None

    def matches(self, metadata: dict[str, str] | None) -> bool:
        if metadata is None or self.key not in metadata:
            return False
        return self.value is None or metadata[self.key] == self.value


@dataclasses.dataclass(frozen=True)
class Search:
    """A version search: ``version`` and ``build`` are ``"latest"``, ``"any"`` or a number."""

    version: Selector = "latest"
    build: Selector = "any"
    metadata: tuple[MetadataFilter, ...] = ()
    include_pending: bool = False
    """Also pending versions (``latest`` is then the highest of either state)."""


def validate_name(kind: str, value: str) -> None:
    """Refuse names that cannot be one path segment: empty, ``/``, control characters, dots."""
    if not value:
        raise Invalid(f"{kind} must not be empty")
    if len(value) > MAX_NAME_LENGTH:
        raise Invalid(f"{kind} is longer than {MAX_NAME_LENGTH} characters")
    if "/" in value or value in (".", ".."):
        raise Invalid(f"{kind} {value!r} cannot be a path segment")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise Invalid(f"{kind} must not contain control characters")


def _check_int64(field: str, value: int) -> None:
    if not INT64_MIN <= value <= INT64_MAX:
        raise Invalid(f"{field} does not fit a 64-bit integer")


def _now() -> str:
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


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


def _load_key(path: Path) -> bytes:
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


class Upload:
    """A file arriving for one pending version: a temp file, its size and SHA-256 once received.

    The caller :meth:`receive` s the body, then hands the upload to
    :meth:`Storage.finish_upload` or :meth:`abort` s it; either way the temp file does not
    outlive the upload.
    """

    def __init__(self, version: Version, tmp_dir: Path) -> None:
        self.version = version
        self._fd, self.path = _locked_temp_file(tmp_dir, f"upload-{version.pk}-")
        self._open = True
        self.sha256 = hashlib.sha256(b"").hexdigest()
        self.size = 0

    def reserve(self, length: int) -> None:
        """Claim the disk space for ``length`` bytes now: a full disk raises ENOSPC here."""
        reserve(self._fd, length)

    def receive(self, read_into: ReadInto, length: int) -> None:
        """Take up to ``length`` bytes from ``read_into`` (see :mod:`.ingest`); sets :attr:`size`.

        A short body leaves :attr:`size` below ``length``; a disk error is raised.
        """
        ingest = Ingest(self._fd, length)
        try:
            self.size = ingest.run(read_into)
        finally:
            self.sha256 = ingest.hash.hexdigest()
        if self.size < length:
            os.ftruncate(self._fd, self.size)  # the file holds what came, not the reservation

    def seal(self) -> None:
        """Flush the bytes to disk before the file becomes visible.

        The file stays open, and so locked, until :meth:`abort`: a server starting on the
        same directory meanwhile must not take it for a leftover.
        """
        if self._open:
            os.fsync(self._fd)

    def _close(self) -> None:
        if self._open:
            self._open = False
            os.close(self._fd)

    def abort(self) -> None:
        """Drop the partial file; the version stays pending and its secret stays valid."""
        self._close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


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
        self._key = _load_key(data_dir / "upload.key")
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
                if _UPLOAD_TEMP.fullmatch(entry.name):
                    with contextlib.suppress(OSError):
                        _remove_if_unlocked(entry.path)

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
        created = _now()
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
        request = _request_digest(artifact_id, build_id, compile_id, metadata, file)
        key = None if idempotency_key is None else _key_digest(idempotency_key, grantee)
        created = _now()
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
                _remember_key(conn, user, name, artifact_type, key, request, version.pk)
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

    @staticmethod
    def _version(row: Sequence[object]) -> Version:
        (pk, user, name, type_, number, id_, build, compile_, meta, file, state, size, sha, ts) = (
            row
        )
        return Version(
            pk=int(str(pk)),
            user=str(user),
            name=str(name),
            type=str(type_),
            version=int(str(number)),
            id=str(id_),
            build_id=int(str(build)),
            compile_id=int(str(compile_)),
            metadata=None if meta is None else json.loads(str(meta)),
            file=bool(file),
            state="ready" if state == "ready" else "pending",
            size=None if size is None else int(str(size)),
            sha256=None if sha is None else str(sha),
            created=str(ts),
        )

    def _select_versions(self, where: str, params: Sequence[object]) -> list[Version]:
        # ``where`` is always a literal of this module; every value goes through ``params``.
        with self._connection() as conn:
            rows = conn.execute(_SELECT_VERSIONS + where, params).fetchall()
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
            query = _SELECT_INDEXED + " AND ".join(f"v.{c}" for c in conditions)
            query += " ORDER BY m.version DESC"
            params.insert(
                0, metadata_index.digest(user, name, artifact_type, first.key, first.value)
            )
        else:
            order = " ORDER BY version DESC"
            if search.version == "latest" and search.build == "latest":
                order = " ORDER BY build_id DESC, version DESC"
            query = _SELECT_VERSIONS + " AND ".join(conditions) + order
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
                _fsync_dir(self.files_dir)
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
    return _replay(conn, user, name, artifact_type, key_sha256, request)


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


# -- idempotency keys: which version a key created; used inside create_version's transaction --


def _request_digest(
    artifact_id: str, build_id: int, compile_id: int, metadata: dict[str, str] | None, file: bool
) -> str:
    """What identifies a version request: the same fields give the same digest."""
    fields = [artifact_id, build_id, compile_id, metadata, file]
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode("utf-8")).hexdigest()


def _key_digest(key: str, grantee: str | None) -> str:
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
    version = conn.execute(_SELECT_VERSIONS + "pk = ?", (row[1],)).fetchone()
    return str(row[0]), Storage._version(version)


def _replay(
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


def _remember_key(
    conn: Connection,
    user: str,
    name: str,
    artifact_type: str,
    key_sha256: str,
    request: str,
    pk: int,
) -> None:
    """Record a key (its :func:`_key_digest`) for version ``pk``, and forget keys older than
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
        (user, name, artifact_type, key_sha256, request, pk, _now()),
    )


_UPLOAD_TEMP = re.compile(r"upload-[0-9]+-[A-Za-z0-9_]+")


def _locked_temp_file(directory: Path, prefix: str) -> tuple[int, Path]:
    """A new temp file, open and locked (``flock``), still under its name once locked.

    A server starting on the same directory may lock and remove an unlocked file between
    its creation and our lock; then the name no longer leads to our file, and we make
    another. On a file system without locks the file stays unlocked; no cleanup removes
    it then either (:func:`_remove_if_unlocked` cannot lock it).
    """
    for _ in range(8):
        fd, name = tempfile.mkstemp(dir=directory, prefix=prefix)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)  # a cleanup holds it and is removing it
            continue
        except OSError:
            return fd, Path(name)
        try:
            mine = os.fstat(fd)
            now = os.stat(name, follow_symlinks=False)
            if (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino):
                return fd, Path(name)
        except FileNotFoundError:
            pass
        os.close(fd)
    raise OSError(errno.EAGAIN, f"could not create and lock a temp file in {directory}")


def _remove_if_unlocked(path: str) -> None:
    """Unlink ``path`` if it is a regular file that nobody holds a lock on."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mine = os.fstat(fd)
        if not stat.S_ISREG(mine.st_mode):
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # an upload in flight
        now = os.stat(path, follow_symlinks=False)
        if (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino):
            os.unlink(path)  # while holding the lock: its creator sees the name gone
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
