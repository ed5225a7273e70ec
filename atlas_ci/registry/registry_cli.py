"""``atlas-ci registry``: administer a registry's database (the parser; work in :mod:`.migrate`).

    atlas-ci registry [--database URL] [--data DIR] migrate
    atlas-ci registry [--database URL] [--data DIR] export --to URL
    atlas-ci registry [--database URL] [--data DIR] import --from URL

Exit codes: 0 done; 2 a flag, URL, missing driver, schema or non-empty target refused;
6 the database failed or could not be reached.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator, Mapping
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
from atlas_ci.registry.serve import default_data_dir


def build_parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="atlas-ci registry", description="Administer the registry's database."
    )
    parser.add_argument(
        "--database",
        default=env.get("ATLAS_REGISTRY_DATABASE") or None,
        metavar="URL",
        help="sqlite:///PATH or postgresql://USER@HOST:PORT/DB (env ATLAS_REGISTRY_DATABASE; "
        "default: registry.sqlite3 in --data)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="the registry's data directory (env ATLAS_REGISTRY_DATA; "
        "default $XDG_DATA_HOME/atlas-ci/registry)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    sub.add_parser(
        "migrate",
        help="create or upgrade the schema (run by one instance; safe to run twice)",
    )
    ex = sub.add_parser("export", help="copy every row into another, empty database")
    ex.add_argument("--to", required=True, metavar="URL", dest="other")
    im = sub.add_parser("import", help="copy every row of another database into this, empty one")
    im.add_argument("--from", required=True, metavar="URL", dest="other")
    return parser


@contextlib.contextmanager
def _opened(url: str | None, data: Path) -> Iterator[Database]:
    db = open_database(url, data)
    try:
        yield db
    finally:
        db.close()


def run(ns: argparse.Namespace, env: Mapping[str, str]) -> int:
    data: Path = (
        ns.data
        or (Path(env["ATLAS_REGISTRY_DATA"]) if env.get("ATLAS_REGISTRY_DATA") else None)
        or default_data_dir(env)
    )
    try:
        if ns.command == "migrate":
            with _opened(ns.database, data) as db:
                before, after = migrate(db)
            if before == after:
                print(f"{db.url}: schema already at version {after}")
            else:
                print(f"{db.url}: schema upgraded from version {before} to {after}")
            return ExitCode.OK
        source_url, target_url = (
            (ns.database, ns.other) if ns.command == "export" else (ns.other, ns.database)
        )
        with _opened(source_url, data) as source, _opened(target_url, data) as target:
            counts = copy(source, target)
            summary = ", ".join(f"{n} {table}" for table, n in counts.items())
            print(f"copied {source.url} to {target.url}: {summary}")
        return ExitCode.OK
    except (DatabaseConfigError, SchemaError, CopyError) as exc:
        print(f"error: {_scrub(str(exc), ns, data)}", file=sys.stderr)
        return ExitCode.CONFIG
    except DatabaseError as exc:
        print(f"error: {_scrub(str(exc), ns, data)}", file=sys.stderr)
        return ExitCode.UNAVAILABLE
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.CONFIG


def _scrub(text: str, ns: argparse.Namespace, data: Path) -> str:
    for raw in (ns.database, getattr(ns, "other", None)):
        with contextlib.suppress(DatabaseConfigError):
            text = parse_url(raw, data).scrub(text)
    return text


def main(argv: list[str], env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    ns = build_parser(env).parse_args(argv)
    return run(ns, env)
