"""The box model's tables and their SQL: box fields, named versions, providers, upload secrets.

Written once for SQLite and PostgreSQL (``?`` placeholders, DDL as :mod:`.database` translates
it); every function runs on a connection the caller holds (:mod:`.boxes` opens the
transactions and takes the locks). The tables (:mod:`.box_tables`):

- ``box_details(user, name, short_description, description, downloads, updated)``: the box's
  own fields; an artifact without a row is a box with empty descriptions and no downloads;
- ``box_versions(pk, user, name, version, sort_key, status, description, created, updated)``:
  ``version`` as the publisher wrote it, ``sort_key`` its :func:`.box_version.sort_key`
  (unique per box: two names Vagrant reads as one version are one version);
- ``box_providers(pk, version_pk, name, url, checksum, checksum_type, atlas_pk, file_state,
  size, sha256, created, updated)``: one per name and version; ``atlas_pk`` names the Atlas
  version whose file (``files/<atlas_pk>``) it serves, whose state, size and sha256 are then
  the provider's; otherwise a hosted file is ``files/box-<pk>``;
- ``box_uploads(provider_pk, secret_sha256, sealed, callback_sha256, grantee, received)``:
  a provider's upload secret (hashed, and sealed with the data directory's key under the
  domain ``-pk`` so no row shares a keystream with an Atlas version's), the callback id's
  hash, whom it was handed to, and whether a file arrived through it.
"""

from __future__ import annotations

from collections.abc import Sequence

from atlas_ci.registry import box_version
from atlas_ci.registry.box_model import Box, BoxProvider, BoxVersion, FileState, Status
from atlas_ci.registry.database import Connection
from atlas_ci.registry.model import NotFound
from atlas_ci.registry.rows import now

_BOX_COLUMNS = (
    "a.\"user\", a.name, pa.namespace, COALESCE(d.short_description, ''), "
    "COALESCE(d.description, ''), COALESCE(d.downloads, 0), a.created, "
    "COALESCE(d.updated, a.created) "
    'FROM artifacts a LEFT JOIN box_details d ON d."user" = a."user" AND d.name = a.name '
    'LEFT JOIN public_artifacts pa ON pa.namespace = a."user" AND pa.name = a.name '
)
_VERSION_COLUMNS = (
    'SELECT pk, "user", name, version, status, description, created, updated FROM box_versions '
)
_PROVIDER_COLUMNS = (
    "SELECT p.pk, p.version_pk, p.name, p.url, p.checksum, p.checksum_type, p.file_state, "
    "p.size, p.sha256, p.created, p.updated, v.version, v.state, v.size, v.sha256 "
    "FROM box_providers p LEFT JOIN versions v ON v.pk = p.atlas_pk "
)
INSTALLABLE = (
    "EXISTS (SELECT 1 FROM box_providers p LEFT JOIN versions v ON v.pk = p.atlas_pk "
    "WHERE p.version_pk = bv.pk AND (p.url IS NOT NULL OR (p.atlas_pk IS NULL AND "
    "p.file_state = 'ready') OR v.state = 'ready'))"
)
"""SQL: box version ``bv`` has a provider Vagrant can install (a ready file or a url)."""
HAS_ACTIVE_PROVIDER = (
    "EXISTS (SELECT 1 FROM box_versions bv JOIN box_providers p ON p.version_pk = bv.pk "
    'WHERE bv."user" = a."user" AND bv.name = a.name AND bv.status = \'active\' '
    "AND p.name = ?)"
)
"""SQL: box ``a`` has an active version with the provider named by the placeholder."""


# -- boxes -------------------------------------------------------------------------------------


def _box(row: Sequence[object]) -> Box:
    user, name, public, short, long, downloads, created, updated = row
    return Box(
        user=str(user),
        name=str(name),
        private=public is None,
        short_description=str(short),
        description=str(long),
        downloads=int(str(downloads)),
        created=str(created),
        updated=str(updated),
    )


def get_box(conn: Connection, user: str, name: str) -> Box | None:
    row = conn.execute(
        "SELECT " + _BOX_COLUMNS + 'WHERE a."user" = ? AND a.name = ?', (user, name)
    ).fetchone()
    return None if row is None else _box(row)


def select_boxes(
    conn: Connection, where: str, params: Sequence[object], order: str, limit: int, offset: int
) -> list[Box]:
    """Boxes matching ``where`` (a literal of :mod:`.boxes`; values in ``params``)."""
    sql = "SELECT " + _BOX_COLUMNS + "WHERE " + where + " ORDER BY " + order + " LIMIT ? OFFSET ?"
    rows = conn.execute(sql, (*params, limit, offset)).fetchall()
    return [_box(row) for row in rows]


def touch_box(
    conn: Connection,
    user: str,
    name: str,
    stamp: str,
    short_description: str | None = None,
    description: str | None = None,
) -> None:
    """Set the fields given and ``updated`` (making the box's row when it has none)."""
    fresh = (user, name, short_description or "", description or "", stamp)
    conn.execute(
        'INSERT INTO box_details ("user", name, short_description, description, downloads, '
        'updated) VALUES (?, ?, ?, ?, 0, ?) ON CONFLICT ("user", name) DO UPDATE SET '
        "short_description = COALESCE(?, box_details.short_description), "
        "description = COALESCE(?, box_details.description), updated = ?",
        (*fresh, short_description, description, stamp),
    )


def count_download(conn: Connection, user: str, name: str) -> None:
    conn.execute(
        'INSERT INTO box_details ("user", name, short_description, description, downloads, '
        "updated) SELECT \"user\", name, '', '', 1, created FROM artifacts "
        'WHERE "user" = ? AND name = ? '
        'ON CONFLICT ("user", name) DO UPDATE SET downloads = box_details.downloads + 1',
        (user, name),
    )


def atlas_version_count(conn: Connection, user: str, name: str) -> int:
    (count,) = conn.execute(
        'SELECT COUNT(*) FROM versions WHERE "user" = ? AND name = ?', (user, name)
    ).fetchone()
    return int(count)


def delete_box(conn: Connection, user: str, name: str) -> list[str]:
    """Delete the box's versions, providers and fields, and its artifact when it holds no
    Atlas version; the blob names only the deleted providers used."""
    blobs: list[str] = []
    for (pk,) in conn.execute(
        'SELECT pk FROM box_versions WHERE "user" = ? AND name = ?', (user, name)
    ).fetchall():
        blobs += delete_version(conn, int(pk))
    conn.execute('DELETE FROM box_details WHERE "user" = ? AND name = ?', (user, name))
    if not atlas_version_count(conn, user, name):
        conn.execute("DELETE FROM public_artifacts WHERE namespace = ? AND name = ?", (user, name))
        conn.execute('DELETE FROM artifacts WHERE "user" = ? AND name = ?', (user, name))
    return blobs


# -- versions ----------------------------------------------------------------------------------


def _status(value: object) -> Status:
    return "active" if value == "active" else "revoked" if value == "revoked" else "unreleased"


def _file_state(value: object) -> FileState:
    return "ready" if value == "ready" else "pending" if value == "pending" else "none"


def _provider(row: Sequence[object]) -> BoxProvider:
    (pk, _, name, url, checksum, ctype, state, size, sha, created, updated) = row[:11]
    atlas_number, atlas_state, atlas_size, atlas_sha = row[11:]
    linked = atlas_number is not None
    return BoxProvider(
        pk=int(str(pk)),
        name=str(name),
        url=None if url is None else str(url),
        checksum=None if checksum is None else str(checksum),
        checksum_type=None if ctype is None else str(ctype),
        file_state=("ready" if atlas_state == "ready" else "pending")
        if linked
        else _file_state(state),
        size=_int_or_none(atlas_size if linked else size),
        sha256=_str_or_none(atlas_sha if linked else sha),
        atlas_version=_int_or_none(atlas_number),
        created=str(created),
        updated=str(updated),
    )


def _int_or_none(value: object) -> int | None:
    return None if value is None else int(str(value))


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def _providers_of(conn: Connection, version_pks: list[int]) -> dict[int, list[BoxProvider]]:
    found: dict[int, list[BoxProvider]] = {pk: [] for pk in version_pks}
    for start in range(0, len(version_pks), 500):
        chunk = version_pks[start : start + 500]
        marks = ", ".join("?" for _ in chunk)
        rows = conn.execute(
            _PROVIDER_COLUMNS + f"WHERE p.version_pk IN ({marks}) ORDER BY p.name", chunk
        ).fetchall()
        for row in rows:
            found[int(row[1])].append(_provider(row))
    return found


def select_versions(
    conn: Connection, user: str, name: str, condition: str = "", limit: int = -1
) -> list[BoxVersion]:
    """The box's versions newest first (Vagrant's order), each with its providers by name;
    ``condition`` (SQL on ``bv``, a literal of :mod:`.boxes`) narrows them."""
    sql = _VERSION_COLUMNS + 'bv WHERE "user" = ? AND name = ?'
    if condition:
        sql += " AND " + condition
    sql += " ORDER BY sort_key DESC"
    params: list[object] = [user, name]
    if limit >= 0:
        sql += " LIMIT ?"
        params.append(limit)
    rows = conn.execute(sql, params).fetchall()
    providers = _providers_of(conn, [int(row[0]) for row in rows])
    return [_version(row, providers[int(row[0])]) for row in rows]


def _version(row: Sequence[object], providers: list[BoxProvider]) -> BoxVersion:
    pk, user, name, version, status, description, created, updated = row
    return BoxVersion(
        pk=int(str(pk)),
        user=str(user),
        name=str(name),
        version=str(version),
        status=_status(status),
        description=str(description),
        created=str(created),
        updated=str(updated),
        providers=tuple(providers),
    )


def get_version(conn: Connection, user: str, name: str, version: str) -> BoxVersion | None:
    """The version ``version`` names, or one Vagrant reads as the same (``1.0`` for ``1.0.0``)."""
    row = conn.execute(
        _VERSION_COLUMNS + 'WHERE "user" = ? AND name = ? AND sort_key = ?',
        (user, name, box_version.sort_key(version)),
    ).fetchone()
    if row is None:
        return None
    return _version(row, _providers_of(conn, [int(row[0])])[int(row[0])])


def insert_version(
    conn: Connection, user: str, name: str, version: str, status: Status, description: str
) -> int:
    stamp = now()
    (pk,) = conn.execute(
        'INSERT INTO box_versions ("user", name, version, sort_key, status, description, '
        "created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING pk",
        (user, name, version, box_version.sort_key(version), status, description, stamp, stamp),
    ).fetchone()
    touch_box(conn, user, name, stamp)
    return int(pk)


def update_version(
    conn: Connection,
    found: BoxVersion,
    *,
    version: str | None = None,
    status: Status | None = None,
    description: str | None = None,
) -> None:
    stamp = now()
    new = found.version if version is None else version
    conn.execute(
        "UPDATE box_versions SET version = ?, sort_key = ?, status = ?, description = ?, "
        "updated = ? WHERE pk = ?",
        (
            new,
            box_version.sort_key(new),
            found.status if status is None else status,
            found.description if description is None else description,
            stamp,
            found.pk,
        ),
    )
    touch_box(conn, found.user, found.name, stamp)


def delete_version(conn: Connection, pk: int) -> list[str]:
    """Delete a version and its providers; the blob names the deleted providers used."""
    blobs: list[str] = []
    for (provider_pk,) in conn.execute(
        "SELECT pk FROM box_providers WHERE version_pk = ?", (pk,)
    ).fetchall():
        blobs += delete_provider(conn, int(provider_pk))
    conn.execute("DELETE FROM box_versions WHERE pk = ?", (pk,))
    return blobs


# -- providers ---------------------------------------------------------------------------------


def own_blob(provider_pk: int) -> str:
    """The name under ``files/`` of a provider's own file (not an Atlas version's)."""
    return f"box-{provider_pk}"


def get_provider(conn: Connection, pk: int) -> BoxProvider:
    return _provider(conn.execute(_PROVIDER_COLUMNS + "WHERE p.pk = ?", (pk,)).fetchone())


def insert_provider(
    conn: Connection,
    version_pk: int,
    name: str,
    *,
    url: str | None = None,
    checksum: str | None = None,
    checksum_type: str | None = None,
    atlas_pk: int | None = None,
) -> int:
    stamp = now()
    (pk,) = conn.execute(
        "INSERT INTO box_providers (version_pk, name, url, checksum, checksum_type, atlas_pk, "
        "file_state, created, updated) VALUES (?, ?, ?, ?, ?, ?, 'none', ?, ?) RETURNING pk",
        (version_pk, name, url, checksum, checksum_type, atlas_pk, stamp, stamp),
    ).fetchone()
    return int(pk)


def update_provider(conn: Connection, pk: int, **fields: object) -> None:
    """Set ``fields`` (column names of this module's callers, never a client's) and
    ``updated``."""
    columns = sorted(fields)
    allowed = {"name", "url", "checksum", "checksum_type", "atlas_pk", "file_state", "size"}
    if not set(columns) <= allowed | {"sha256"}:
        raise ValueError(f"not a provider column: {sorted(set(columns) - allowed)}")
    assignments = ", ".join(f"{column} = ?" for column in columns)
    conn.execute(
        f"UPDATE box_providers SET {assignments}, updated = ? WHERE pk = ?",  # noqa: S608
        [fields[column] for column in columns] + [now(), pk],
    )


def provider_blob(conn: Connection, pk: int) -> str | None:
    """The blob name a provider's file is kept under, if it has one."""
    row = conn.execute(
        "SELECT atlas_pk, file_state FROM box_providers WHERE pk = ?", (pk,)
    ).fetchone()
    if row is None:
        return None
    if row[0] is not None:
        return str(row[0])
    return own_blob(pk) if row[1] == "ready" else None


def delete_provider(conn: Connection, pk: int) -> list[str]:
    """Delete a provider and its upload secret; the blob name it used, if any."""
    blob = provider_blob(conn, pk)
    conn.execute("DELETE FROM box_uploads WHERE provider_pk = ?", (pk,))
    conn.execute("DELETE FROM box_providers WHERE pk = ?", (pk,))
    return [] if blob is None else [blob]


def blob_in_use(conn: Connection, blob: str) -> bool:
    """Whether any record still uses the blob ``blob``: an Atlas version's file (``<pk>``,
    which the Atlas API keeps) or a provider's own (``box-<pk>``)."""
    if blob.isdigit():
        row = conn.execute("SELECT 1 FROM versions WHERE pk = ?", (int(blob),)).fetchone()
        linked = conn.execute(
            "SELECT 1 FROM box_providers WHERE atlas_pk = ?", (int(blob),)
        ).fetchone()
        return row is not None or linked is not None
    pk = blob.removeprefix("box-")
    if not pk.isdigit():
        return True  # not a name of ours: never removed
    row = conn.execute(
        "SELECT 1 FROM box_providers WHERE pk = ? AND atlas_pk IS NULL AND file_state = 'ready'",
        (int(pk),),
    ).fetchone()
    return row is not None


# -- the Atlas side ----------------------------------------------------------------------------


def land(
    conn: Connection, user: str, name: str, version: str, provider: str, atlas_pk: int
) -> bool:
    """Make Atlas version row ``atlas_pk`` provider ``provider`` of box version ``version``
    (made active when missing, released when unreleased); False, changing nothing, when
    that version has the provider already."""
    found = get_version(conn, user, name, version)
    if found is None:
        version_pk = insert_version(conn, user, name, version, "active", "")
    elif found.provider(provider) is not None:
        return False
    else:
        version_pk = found.pk
        if found.status == "unreleased":
            update_version(conn, found, status="active")
    insert_provider(conn, version_pk, provider, atlas_pk=atlas_pk)
    return True


def artifact_count(conn: Connection, user: str) -> int:
    """How many artifacts (boxes) namespace ``user`` holds."""
    (count,) = conn.execute('SELECT COUNT(*) FROM artifacts WHERE "user" = ?', (user,)).fetchone()
    return int(count)


def provider_box(conn: Connection, provider_pk: int) -> tuple[str, str]:
    """``(user, name)`` of the box a provider belongs to."""
    row = conn.execute(
        'SELECT bv."user", bv.name FROM box_providers p JOIN box_versions bv '
        "ON bv.pk = p.version_pk WHERE p.pk = ?",
        (provider_pk,),
    ).fetchone()
    if row is None:
        raise NotFound("the provider of this upload URL was deleted")
    return str(row[0]), str(row[1])


def provider_version_status(conn: Connection, provider_pk: int) -> Status:
    row = conn.execute(
        "SELECT bv.status FROM box_providers p JOIN box_versions bv ON bv.pk = p.version_pk "
        "WHERE p.pk = ?",
        (provider_pk,),
    ).fetchone()
    return _status(None if row is None else row[0])
