"""Schema upgrades: numbered steps (kept in :mod:`.storage`), applied once, in order.

``schema_version`` records each step applied. :func:`migrate` runs the missing steps in one
transaction under a lock, so two instances (or two operators) running it at once apply each step
once; the second finds nothing left to do. A server calls :func:`check` and refuses a schema
newer than the steps it knows: rows written by a newer atlas-ci may mean what it cannot read.

To change the schema, append a step to ``storage.STEPS``; never edit one that has shipped. DDL
is written for SQLite and translated for PostgreSQL (:func:`.database.pg_ddl`); name new tables
in ``storage.TABLES`` too, so export and import carry them.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable

from atlas_ci.registry.database import Connection, Database

Step = str | Callable[[Connection], None]
"""DDL statements separated by ``;``, or a function that changes the schema (and may fill
what it made) inside the migration's transaction."""
Steps = tuple[tuple[int, str, Step], ...]
"""(number, what it does, step) in order; the numbers are 1, 2, 3, ..."""


def run_ddl(conn: Connection, ddl: str) -> None:
    """Each ``;``-separated statement of ``ddl`` (written for SQLite), translated for ``conn``."""
    for statement in ddl.split(";"):
        if statement.strip():
            conn.ddl(statement)


_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER NOT NULL UNIQUE,
    applied TEXT NOT NULL
)
"""
_LOCK_KEY = "atlas-ci schema migration"


class SchemaError(Exception):
    """The database's schema is not the one this atlas-ci serves; the message says what to do."""


def _legacy_version(conn: Connection) -> int:
    """What a data directory from before ``schema_version`` says (SQLite's user_version)."""
    if conn.dialect != "sqlite":
        return 0
    (number,) = conn.execute("PRAGMA user_version").fetchone()
    return int(number)


def current_version(conn: Connection) -> int:
    """The highest step applied to this database (0: none, an empty database)."""
    recorded = 0
    if conn.table_exists("schema_version"):
        (top,) = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
        recorded = int(top or 0)
    return max(recorded, _legacy_version(conn))


def _too_new(db: Database, found: int, latest: int) -> SchemaError:
    return SchemaError(
        f"the database {db.url} has schema version {found}, newer than this atlas-ci knows "
        f"({latest}); run a newer atlas-ci"
    )


def check(db: Database, steps: Steps) -> None:
    """Refuse a database whose schema is not exactly the last of ``steps``."""
    latest = steps[-1][0]
    with db.connection() as conn:
        found = current_version(conn)
    if found > latest:
        raise _too_new(db, found, latest)
    if found < latest:
        raise SchemaError(
            f"the database {db.url} has schema version {found}, this atlas-ci needs "
            f"{latest}; run: atlas-ci registry --database URL migrate"
        )


def migrate(db: Database, steps: Steps) -> tuple[int, int]:
    """Apply the missing ``steps``; returns (version before, after). Safe to run twice."""
    latest = steps[-1][0]
    with db.transaction() as conn:
        # Taken before anything is read: a second migrate waits here, then finds no work.
        conn.lock(_LOCK_KEY)
        conn.ddl(_VERSION_TABLE)
        before = current_version(conn)
        if before > latest:
            raise _too_new(db, before, latest)
        legacy = _legacy_version(conn)
        recorded = conn.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0]
        now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        if legacy and not recorded:
            # Tables made by an atlas-ci that counted in user_version only: already there.
            for number, _, _ in steps[:legacy]:
                conn.execute(
                    "INSERT INTO schema_version (version, applied) VALUES (?, ?)", (number, now)
                )
        for number, _, step in steps:
            if number <= before:
                continue
            if isinstance(step, str):
                run_ddl(conn, step)
            else:
                step(conn)
            conn.execute(
                "INSERT INTO schema_version (version, applied) VALUES (?, ?)", (number, now)
            )
        if conn.dialect == "sqlite":
            # Also where an older atlas-ci looks, so it refuses a schema it does not know.
            conn.execute(f"PRAGMA user_version = {int(latest)}")
    return before, latest
