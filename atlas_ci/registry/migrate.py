"""``atlas-ci registry`` database operations: upgrade the schema, copy between databases.

The same storage schema and :mod:`.database` layer the server uses; nothing here touches the
files directory, which moves with the data directory as it is (``files/`` and ``upload.key``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from atlas_ci.registry import schema
from atlas_ci.registry.database import Connection, Database
from atlas_ci.registry.storage import STEPS, TABLES

BATCH = 1000


class CopyError(Exception):
    """A copy cannot start: the target holds rows, or the source has tables unknown here."""


def _ident(name: str) -> str:
    """``name`` quoted as an identifier; only the plain names a schema of ours can have."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        raise CopyError(f"unexpected table or column name {name!r}")
    return f'"{name}"'


def migrate(db: Database) -> tuple[int, int]:
    """Bring ``db`` to this atlas-ci's schema; (version before, version after)."""
    return schema.migrate(db, STEPS)


def copy(source: Database, target: Database) -> dict[str, int]:
    """Copy every row of ``source`` into the empty ``target``; rows per table.

    The source is read in one snapshot and the target written in one transaction: a failure
    leaves the target as empty as it was.
    """
    if source.url.shown == target.url.shown:
        raise CopyError(f"{source.url} is both the source and the target")
    schema.check(source, STEPS)
    schema.migrate(target, STEPS)
    counts: dict[str, int] = {}
    with source.snapshot() as src, target.transaction() as dst:
        dst.lock("atlas-ci import")
        bookkeeping = {"schema_version", "schema_features"}  # what the schema is, not rows
        unknown = sorted(set(src.tables()) - set(TABLES) - bookkeeping)
        if unknown:
            raise CopyError(
                f"{source.url} has tables this atlas-ci does not know ({', '.join(unknown)}); "
                "copy with the atlas-ci that made them"
            )
        for table in TABLES:
            probe = f"SELECT 1 FROM {_ident(table)} LIMIT 1"  # noqa: S608
            if dst.execute(probe).fetchone() is not None:
                raise CopyError(
                    f"{target.url} already holds rows in {table}; copy into an empty database"
                )
        for table in TABLES:
            counts[table] = _copy_table(src, dst, table)
        if dst.dialect == "postgresql":
            _advance_identities(dst)
            dst.execute("ANALYZE")  # the planner's statistics: the tables were empty a moment ago
    return counts


def _copy_table(src: Connection, dst: Connection, table: str) -> int:
    # Names come from TABLES and the source's catalogue (checked by _ident), never a user.
    rows = src.execute(f"SELECT * FROM {_ident(table)}")  # noqa: S608
    columns = ", ".join(_ident(d[0]) for d in rows.description)
    marks = ", ".join("?" for _ in rows.description)
    insert = f"INSERT INTO {_ident(table)} ({columns}) VALUES ({marks})"  # noqa: S608
    names = [d[0] for d in rows.description]
    count = 0
    while batch := rows.fetchmany(BATCH):
        for row in batch:
            if dst.dialect == "postgresql":
                _check_nul(table, names, row)
            dst.execute(insert, tuple(row))
        count += len(batch)
    return count


def _check_nul(table: str, names: list[str], row: Sequence[object]) -> None:
    """PostgreSQL cannot store a NUL in text; an SQLite database from before the registry
    refused one may hold it. Name the row, so it can be fixed, instead of "the database
    failed" (the copy's transaction then leaves the target empty)."""
    for column, value in zip(names, row, strict=True):
        if isinstance(value, str) and "\x00" in value:
            shown = dict(zip(names, row, strict=True))
            where = f"{table} row {names[0]}={_printable(shown[names[0]])}"
            if table == "versions":
                slug = "/".join(_printable(shown[k]) for k in ("user", "name", "type"))
                where += f" ({slug} version {shown['version']})"
            raise CopyError(
                f"{where}: column {column} holds a NUL character, which PostgreSQL cannot "
                "store; change it in the source database, then export again"
            )


def _printable(value: object) -> str:
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in str(value))


def _advance_identities(dst: Connection) -> None:
    """Identity columns continue after the copied ids (SQLite's row ids came as they were)."""
    found = dst.execute(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND is_identity = 'YES'"
    ).fetchall()
    for table, column in found:
        sql = f"SELECT MAX({_ident(column)}) FROM {_ident(table)}"  # noqa: S608
        (top,) = dst.execute(sql).fetchone()
        if top is not None:
            dst.execute("SELECT setval(pg_get_serial_sequence(?, ?), ?)", (table, column, int(top)))
