"""``atlas-ci registry``: administer a registry's data directory (users, organizations,
tokens, artifact visibility), also while ``atlas-ci serve`` runs on it, and its database
(``migrate``, ``export``, ``import``: :mod:`.database_admin`).

Each account command is one function ``(accounts, args, out) -> None`` registered on its own
subparser; :func:`open_accounts` is the one place their database is opened.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TextIO

from atlas_ci.errors import ExitCode
from atlas_ci.registry import database_admin
from atlas_ci.registry.accounts import ROLES, Accounts
from atlas_ci.registry.database import DatabaseConfigError, DatabaseError, open_database
from atlas_ci.registry.model import Conflict, Invalid, NotFound, StorageError
from atlas_ci.registry.schema import SchemaError
from atlas_ci.registry.serve import data_dir
from atlas_ci.registry.storage import Storage

Command = Callable[[Accounts, argparse.Namespace, TextIO], None]

_LIFETIME = re.compile(r"([0-9]{1,9})([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
LONGEST_LIFETIME = datetime.timedelta(days=36500)
"""An expiry further out would pass the calendar's end (year 9999) for the largest numbers."""
_DATA_HELP = (
    "the registry's data directory (env ATLAS_REGISTRY_DATA; default "
    "$XDG_DATA_HOME/atlas-ci/registry, as for atlas-ci serve)"
)
_DATABASE_HELP = (
    "sqlite:///PATH or postgresql://USER@HOST:PORT/DB, as for atlas-ci serve (env "
    "ATLAS_REGISTRY_DATABASE; default: registry.sqlite3 in --data)"
)


class UsageError(Exception):
    """An argument is unusable; the message names it as the user wrote it."""


def lifetime(raw: str) -> datetime.timedelta:
    """``--expires``: a positive number with a unit, ``90s``, ``15m``, ``12h``, ``30d``."""
    match = _LIFETIME.fullmatch(raw.strip())
    if not match or int(match[1]) == 0:
        raise argparse.ArgumentTypeError(
            f"{raw!r} is not a lifetime; write a positive number and a unit: 90s, 15m, 12h, 30d"
        )
    chosen = datetime.timedelta(**{_UNITS[match[2]]: int(match[1])})
    if chosen > LONGEST_LIFETIME:
        raise argparse.ArgumentTypeError(
            f"{raw!r} is longer than {LONGEST_LIFETIME.days}d; leave --expires out for a token "
            "that does not expire"
        )
    return chosen


def _slug(raw: str) -> tuple[str, str]:
    user, sep, name = raw.partition("/")
    if not sep or not user or not name or "/" in name:
        raise argparse.ArgumentTypeError(f"{raw!r} is not an artifact; write USER/NAME")
    return user, name


# -- the commands ------------------------------------------------------------------------------


def _user_create(accounts: Accounts, args: argparse.Namespace, out: TextIO) -> None:
    accounts.create("user", args.name)
    print(f"created user {args.name}", file=sys.stderr)


def _org_create(accounts: Accounts, args: argparse.Namespace, out: TextIO) -> None:
    accounts.create("organization", args.name)
    print(f"created organization {args.name}", file=sys.stderr)


def _listing(kind: str) -> Command:
    def run(accounts: Accounts, args: argparse.Namespace, out: TextIO) -> None:
        rows = accounts.names("user" if kind == "user" else "organization")
        if args.json:
            print(json.dumps([{"name": n, "created": c} for n, c in rows]), file=out)
        else:
            for name, created in rows:
                print(f"{name}\t{created}", file=out)

    return run


def _org_add_member(accounts: Accounts, args: argparse.Namespace, out: TextIO) -> None:
    accounts.set_member(args.org, args.user, args.role)
    print(f"{args.user} is a member of {args.org} with role {args.role}", file=sys.stderr)


def _org_remove_member(accounts: Accounts, args: argparse.Namespace, out: TextIO) -> None:
    accounts.remove_member(args.org, args.user)
    print(f"{args.user} is no longer a member of {args.org}", file=sys.stderr)


def _org_members(accounts: Accounts, args: argparse.Namespace, out: TextIO) -> None:
    members = accounts.members(args.org)
    if args.json:
        print(json.dumps([{"user": u, "role": r} for u, r in members]), file=out)
    else:
        for user, role in members:
            print(f"{user}\t{role}", file=out)


def _token_create(accounts: Accounts, args: argparse.Namespace, out: TextIO) -> None:
    token, info = accounts.create_token(args.user, read_only=args.read_only, lifetime=args.expires)
    # The one time the secret exists outside the client: stdout, nothing else on it.
    print(token, file=out, flush=True)
    scope = "read-only" if info.read_only else "read-write"
    expires = f"expires {info.expires}" if info.expires else "does not expire"
    print(
        f"created token {info.id} for user {info.user} ({scope}, {expires}); "
        "it is shown once and cannot be recovered",
        file=sys.stderr,
    )


def _token_list(accounts: Accounts, args: argparse.Namespace, out: TextIO) -> None:
    tokens = accounts.tokens(args.user)
    if args.json:
        print(json.dumps([t.to_json() for t in tokens]), file=out)
        return
    print("ID\tUSER\tSCOPE\tCREATED\tEXPIRES\tLAST_USED", file=out)
    for t in tokens:
        scope = "read-only" if t.read_only else "read-write"
        print(
            f"{t.id}\t{t.user}\t{scope}\t{t.created}\t{t.expires or '-'}\t{t.last_used or '-'}",
            file=out,
        )


def _token_revoke(accounts: Accounts, args: argparse.Namespace, out: TextIO) -> None:
    accounts.revoke(args.id)
    print(f"revoked token {args.id}", file=sys.stderr)


def _set_visibility(accounts: Accounts, args: argparse.Namespace, out: TextIO) -> None:
    user, name = args.artifact
    accounts.set_visibility(user, name, args.visibility)
    print(f"artifact {user}/{name} is {args.visibility}", file=sys.stderr)


# -- parsing -----------------------------------------------------------------------------------


def _command(
    group: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    run: Command,
    help_text: str,
) -> argparse.ArgumentParser:
    parser = group.add_parser(name, help=help_text, description=help_text)
    parser.set_defaults(run=run)
    _location_flags(parser)
    return parser


def _location_flags(parser: argparse.ArgumentParser) -> None:
    # Also after the command (``user create alice --data DIR``); given before, it is kept.
    parser.add_argument("--data", type=Path, default=argparse.SUPPRESS, help=_DATA_HELP)
    parser.add_argument("--database", metavar="URL", default=argparse.SUPPRESS, help=_DATABASE_HELP)


def _group(
    parent: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_text: str
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    parser = parent.add_parser(name, help=help_text, description=help_text)
    sub = parser.add_subparsers(metavar="COMMAND", required=True)
    return sub


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="atlas-ci registry",
        description="Administer the data directory of atlas-ci serve: users, organizations, "
        "tokens and artifact visibility. Safe while the server runs; changes apply to its "
        "next request.",
        epilog="exit codes: 0 done; 2 usage (a bad argument, an unknown user, organization, "
        "token or artifact; a bad database URL, a missing driver, a schema to migrate, a "
        "non-empty import target); 5 conflict (the name already exists); 6 the database "
        "failed or could not be reached",
    )
    parser.add_argument("--data", type=Path, default=None, help=_DATA_HELP)
    parser.add_argument("--database", metavar="URL", default=None, help=_DATABASE_HELP)
    top = parser.add_subparsers(metavar="COMMAND", required=True)

    _database_commands(top)
    _user_commands(top)
    _org_commands(top)
    _token_commands(top)
    _artifact_commands(top)
    return parser


def _database_commands(top: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """migrate, export, import: the database as a whole."""
    for name, help_text, flag in (
        ("migrate", "create or upgrade the database schema (one instance; safe twice)", None),
        ("export", "copy every row into another, empty database", "--to"),
        ("import", "copy every row of another database into this, empty one", "--from"),
    ):
        p = top.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(database_command=name)
        _location_flags(p)
        if flag:
            p.add_argument(flag, required=True, metavar="URL", dest="other")


def _user_commands(top: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    users = _group(top, "user", "create and list users (a token belongs to a user)")
    p = _command(users, "create", _user_create, "create a user; its name is its namespace")
    p.add_argument("name")
    p = _command(users, "list", _listing("user"), "list users")
    p.add_argument("--json", action="store_true", help="one JSON array on stdout")


def _org_commands(top: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    orgs = _group(top, "org", "create organizations and manage their members")
    p = _command(orgs, "create", _org_create, "create an organization (a namespace)")
    p.add_argument("name")
    p = _command(orgs, "list", _listing("organization"), "list organizations")
    p.add_argument("--json", action="store_true", help="one JSON array on stdout")
    p = _command(
        orgs, "add-member", _org_add_member, "add a user to an organization, or change its role"
    )
    p.add_argument("org")
    p.add_argument("user")
    p.add_argument(
        "--role",
        required=True,
        choices=ROLES,
        help="read: read private artifacts; write: also create artifacts and versions",
    )
    p = _command(orgs, "remove-member", _org_remove_member, "remove a user from an organization")
    p.add_argument("org")
    p.add_argument("user")
    p = _command(orgs, "members", _org_members, "list an organization's members and roles")
    p.add_argument("org")
    p.add_argument("--json", action="store_true", help="one JSON array on stdout")


def _token_commands(top: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tokens = _group(top, "token", "create, list and revoke tokens")
    p = _command(
        tokens, "create", _token_create, "create a token; prints only the token, once, on stdout"
    )
    p.add_argument("--user", required=True, help="the user the token acts as")
    p.add_argument(
        "--read-only", action="store_true", help="refused on every write (deploy machines)"
    )
    p.add_argument(
        "--expires",
        type=lifetime,
        metavar="N{s,m,h,d}",
        help="lifetime, e.g. 30d or 12h (default: no expiry)",
    )
    p = _command(tokens, "list", _token_list, "list tokens (never their secrets)")
    p.add_argument("--user", help="only this user's tokens")
    p.add_argument(
        "--json",
        action="store_true",
        help="one JSON array of {id, user, read_only, created, expires, last_used}",
    )
    p = _command(tokens, "revoke", _token_revoke, "revoke a token: refused from the next request")
    p.add_argument("id", help="the token's id, as token list shows it")


def _artifact_commands(top: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    artifacts = _group(top, "artifact", "artifact settings")
    p = _command(
        artifacts,
        "set-visibility",
        _set_visibility,
        "public: readable with no token (lookup, search, downloads, box catalog); "
        "private (the default): only for its namespace's members",
    )
    p.add_argument("artifact", type=_slug, metavar="USER/NAME")
    p.add_argument("visibility", choices=("public", "private"))


def open_accounts(data: Path, database: str | None = None) -> Accounts:
    """The accounts of the registry in ``data``, which must exist (a typo makes no registry),
    with its rows in ``database`` (None: the SQLite file in ``data``)."""
    if not data.is_dir():
        raise UsageError(
            f"--data {data}: no such directory; pass the directory atlas-ci serve uses"
        )
    return Accounts(Storage(data, open_database(database, data), remove_stale_uploads=False))


_EXIT_CODES: tuple[tuple[type[Exception], ExitCode], ...] = (
    (UsageError, ExitCode.CONFIG),
    (DatabaseConfigError, ExitCode.CONFIG),
    (SchemaError, ExitCode.CONFIG),
    (NotFound, ExitCode.CONFIG),
    (Invalid, ExitCode.CONFIG),
    (Conflict, ExitCode.REFUSED),
    (DatabaseError, ExitCode.UNAVAILABLE),
)
"""The exit code of each failure a command reports as a one-line error."""
_FAILURES = tuple(kind for kind, _ in _EXIT_CODES)


def _failed(exc: Exception, urls: tuple[str | None, ...], data: Path) -> int:
    """Print ``exc`` as the one-line error, without the password of any of ``urls``; its exit
    code from :data:`_EXIT_CODES`."""
    print(f"error: {database_admin.scrub(str(exc), urls, data)}", file=sys.stderr)
    return next(code for kind, code in _EXIT_CODES if isinstance(exc, kind))


def main(argv: list[str], env: Mapping[str, str] | None = None, out: TextIO | None = None) -> int:
    """Parse ``argv``, run the command, return the exit code."""
    env = os.environ if env is None else env
    out = sys.stdout if out is None else out
    args = build_parser().parse_args(argv)  # exits 2 on a usage error, 0 for --help
    data = data_dir(args.data, env)
    database = args.database or env.get("ATLAS_REGISTRY_DATABASE") or None
    if getattr(args, "database_command", None):
        return database_admin.run(
            args.database_command, database, getattr(args, "other", None), data
        )
    urls = (database,)
    try:
        accounts = open_accounts(data, database)
    except (UsageError, DatabaseConfigError, SchemaError, DatabaseError) as exc:
        return _failed(exc, urls, data)
    except (OSError, StorageError) as exc:
        print(f"error: cannot use data directory {data}: {exc}", file=sys.stderr)
        return ExitCode.CONFIG
    try:
        args.run(accounts, args, out)
    except _FAILURES as exc:
        return _failed(exc, urls, data)
    finally:
        accounts.storage.close()
    return ExitCode.OK
