"""``atlas-ci registry migrate``, ``export --to URL`` and ``import --from URL``: the commands
of :mod:`.admin` that work on the database itself (the work is in :mod:`.migrate`).

They open the database, not a :class:`~atlas_ci.registry.storage.Storage`: a PostgreSQL
database must be migratable before a storage would accept its schema.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

from atlas_ci.errors import ExitCode
from atlas_ci.registry.database import (
    Database,
    DatabaseConfigError,
    DatabaseError,
    open_database,
    parse_url,
)
from atlas_ci.registry.migrate import CopyError, copy, migrate
from atlas_ci.registry.schema import SchemaError

COMMANDS = ("migrate", "export", "import")


@contextlib.contextmanager
def _opened(url: str | None, data: Path) -> Iterator[Database]:
    db = open_database(url, data)
    try:
        yield db
    finally:
        db.close()


def run(command: str, database: str | None, other: str | None, data: Path) -> int:
    """Run ``command`` on ``database`` (None: the SQLite file in ``data``); the exit code.

    0 done; 2 a bad URL, a missing driver, a schema this atlas-ci does not know or a target
    that already holds rows; 6 the database failed or could not be reached.
    """
    try:
        if command == "migrate":
            with _opened(database, data) as db:
                before, after = migrate(db)
            if before == after:
                print(f"{db.url}: schema already at version {after}")
            else:
                print(f"{db.url}: schema upgraded from version {before} to {after}")
            return ExitCode.OK
        source_url, target_url = (database, other) if command == "export" else (other, database)
        with _opened(source_url, data) as source, _opened(target_url, data) as target:
            counts = copy(source, target)
            summary = ", ".join(f"{n} {table}" for table, n in counts.items())
            print(f"copied {source.url} to {target.url}: {summary}")
        return ExitCode.OK
    except (DatabaseConfigError, SchemaError, CopyError, DatabaseError) as exc:
        print(f"error: {scrub(str(exc), (database, other), data)}", file=sys.stderr)
        return ExitCode.UNAVAILABLE if isinstance(exc, DatabaseError) else ExitCode.CONFIG
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.CONFIG


def scrub(text: str, urls: tuple[str | None, ...], data: Path) -> str:
    """``text`` without the password of any of ``urls``."""
    for raw in urls:
        with contextlib.suppress(DatabaseConfigError):
            text = parse_url(raw, data).scrub(text)
    return text
