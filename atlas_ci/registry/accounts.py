"""Users, organizations, memberships, tokens and artifact visibility, in the registry database.

Users and organizations share one namespace table: a name is either, never both, and it is
the first segment of the artifacts it owns. A token belongs to a user; only the SHA-256 of
the token is stored, with its id (what ``token list`` shows and ``token revoke`` takes),
whether it is read-only, when it was made, when it expires and when it was last used. An
artifact is private unless listed in ``public_artifacts``.

The SQL is portable to PostgreSQL (``?`` placeholders, no SQLite-only statements, BOOLEAN as
INTEGER 0/1, times as ISO-8601 text) and runs inside :meth:`Storage.transaction`, so the
administration command and a running server see each other's changes at once.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import re
import secrets
import unicodedata
from collections.abc import Mapping
from typing import Literal

from atlas_ci.registry.account_tables import SCHEMA as SCHEMA
from atlas_ci.registry.database import Connection
from atlas_ci.registry.model import Conflict, Invalid, NotFound, validate_name
from atlas_ci.registry.storage import Storage

Kind = Literal["user", "organization"]
Role = Literal["read", "write"]
Visibility = Literal["public", "private"]
ROLES: tuple[Role, ...] = ("read", "write")
TOKEN_PREFIX = "atlas_"  # noqa: S105 (a prefix, not a secret)
"""Every generated token starts so, which lets a secret scanner or a reader recognise one."""
LAST_USED_STEP = datetime.timedelta(seconds=60)
"""``last_used`` is written at most once a minute per token: a read stays a read."""
RESERVED = frozenset({"api", "binstore", "-"})
"""First path segments the server routes itself; no namespace may take them."""
ADMIN_NAME = "atlas-ci"
"""The user name an administrator token authenticates as (what the registry always said); no
user may take it, so a name in an answer or a message is never ambiguous."""

_SELECT_TOKEN = {
    "hash": "SELECT id, username, read_only, expires, last_used FROM tokens WHERE hash = ?",
    "id": "SELECT id, username, read_only, expires, last_used FROM tokens WHERE id = ?",
}


@dataclasses.dataclass(frozen=True)
class TokenInfo:
    """What is known about a token besides its secret."""

    id: str
    user: str
    read_only: bool
    created: str
    expires: str | None
    last_used: str | None

    def to_json(self) -> dict[str, object]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class TokenOwner:
    """A valid token's user, scope and the user's roles (its own namespace is ``write``)."""

    token_id: str
    user: str
    read_only: bool
    roles: Mapping[str, Role]


class Expired(Exception):
    """The token was valid once; its ``expires`` time has passed."""


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _stamp(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_stamp(text: str) -> datetime.datetime:
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc
    )


def _article(kind: Kind) -> str:
    return "a user" if kind == "user" else "an organization"


def token_hash(token: str) -> str:
    """What is stored for a token. A token is 32 random bytes, so a fast hash is enough."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


TOKEN_ID = re.compile(r"[0-9a-f]{12}")
"""What ``token create`` makes an id of; anything else given as one is not repeated in an
error, since it may be a token itself."""
_INVISIBLE = frozenset({"Cc", "Cf", "Co", "Cn", "Cs", "Zl", "Zp", "Zs"})
"""Unicode categories a reader does not see (spaces, zero-width and unassigned characters)."""


def folded(name: str) -> str:
    """How a name reads: ``Acme``, ``ACME`` and ``Acme`` in fullwidth letters read alike."""
    return unicodedata.normalize("NFKC", name).casefold()


def validate_namespace(kind: str, name: str) -> None:
    validate_name(f"{kind} name", name)
    if any(unicodedata.category(c) in _INVISIBLE for c in name):
        raise Invalid(
            f"{kind} name {name!a} holds a space or an invisible character; "
            "a namespace name must read as what it is"
        )
    if folded(name) in RESERVED:
        raise Invalid(f"{kind} name {name!r} is reserved (the server routes /{name}/ itself)")
    if folded(name) == ADMIN_NAME:
        raise Invalid(f"{kind} name {name!r} is reserved: it names the administrator tokens")


class Accounts:
    """The account tables of one :class:`Storage`'s database."""

    def __init__(self, storage: Storage) -> None:
        # The tables are schema step 4 (storage.STEPS): there when the storage opened.
        self.storage = storage

    # -- namespaces ----------------------------------------------------------------------------

    def _kind(self, conn: Connection, name: str) -> Kind | None:
        row = conn.execute("SELECT kind FROM namespaces WHERE name = ?", (name,)).fetchone()
        if row is None:
            return None
        return "user" if row[0] == "user" else "organization"

    def kind(self, name: str) -> Kind | None:
        """``user``, ``organization`` or None when nobody owns ``name``."""
        with self.storage.connection() as conn:
            return self._kind(conn, name)

    def create(self, kind: Kind, name: str) -> None:
        """A new user or organization; :class:`Conflict` when the name is taken by either."""
        validate_namespace(kind, name)
        with self.storage.transaction() as conn:
            # PostgreSQL: two servers creating names that read alike queue here.
            conn.lock("namespace", folded(name))
            taken = self._kind(conn, name)
            if taken is not None:
                raise Conflict(f"{name!r} already exists as {_article(taken)}")
            # One reader's namespace is one namespace: no second name that reads the same
            # (every name is compared; namespaces are few and created rarely).
            reading = folded(name)
            for other, other_kind in conn.execute("SELECT name, kind FROM namespaces"):
                if folded(str(other)) == reading:
                    existing = "user" if other_kind == "user" else "organization"
                    raise Conflict(
                        f"{name!r} reads as the existing {existing} {str(other)!r} (the names "
                        "differ only in case or width); pick another name"
                    )
            conn.execute(
                "INSERT INTO namespaces (name, kind, created) VALUES (?, ?, ?)",
                (name, kind, _stamp(_now())),
            )

    def names(self, kind: Kind) -> list[tuple[str, str]]:
        """``(name, created)`` of every user or organization, by name."""
        with self.storage.connection() as conn:
            rows = conn.execute(
                "SELECT name, created FROM namespaces WHERE kind = ? ORDER BY name", (kind,)
            ).fetchall()
        return [(str(n), str(c)) for n, c in rows]

    def _require(self, conn: Connection, kind: Kind, name: str) -> None:
        found = self._kind(conn, name)
        if found != kind:
            other = "" if found is None else f" ({name!r} is {_article(found)})"
            raise NotFound(f"no {kind} named {name!r}{other}")

    # -- memberships ---------------------------------------------------------------------------

    def set_member(self, organization: str, user: str, role: str) -> None:
        """Add ``user`` to ``organization`` with ``role``, or change the role it has."""
        if role not in ROLES:
            raise Invalid(f"role must be read or write, not {role!r}")
        with self.storage.transaction() as conn:
            conn.lock("membership", organization, user)  # an UPDATE-or-INSERT, one at a time
            self._require(conn, "organization", organization)
            self._require(conn, "user", user)
            updated = conn.execute(
                "UPDATE memberships SET role = ? WHERE organization = ? AND username = ?",
                (role, organization, user),
            ).rowcount
            if not updated:
                conn.execute(
                    "INSERT INTO memberships (organization, username, role) VALUES (?, ?, ?)",
                    (organization, user, role),
                )

    def remove_member(self, organization: str, user: str) -> None:
        with self.storage.transaction() as conn:
            self._require(conn, "organization", organization)
            removed = conn.execute(
                "DELETE FROM memberships WHERE organization = ? AND username = ?",
                (organization, user),
            ).rowcount
            if not removed:
                raise NotFound(f"{user!r} is not a member of {organization!r}")

    def members(self, organization: str) -> list[tuple[str, Role]]:
        with self.storage.connection() as conn:
            self._require(conn, "organization", organization)
            rows = conn.execute(
                "SELECT username, role FROM memberships WHERE organization = ? ORDER BY username",
                (organization,),
            ).fetchall()
        return [(str(u), "write" if r == "write" else "read") for u, r in rows]

    # -- tokens --------------------------------------------------------------------------------

    def create_token(
        self, user: str, *, read_only: bool, lifetime: datetime.timedelta | None
    ) -> tuple[str, TokenInfo]:
        """A new token for ``user``: the secret (shown once, never stored) and its record."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = _now()
        info = TokenInfo(
            id=secrets.token_hex(6),
            user=user,
            read_only=read_only,
            created=_stamp(now),
            expires=None if lifetime is None else _stamp(now + lifetime),
            last_used=None,
        )
        with self.storage.transaction() as conn:
            self._require(conn, "user", user)
            conn.execute(
                "INSERT INTO tokens (id, username, hash, read_only, created, expires, last_used) "
                "VALUES (?, ?, ?, ?, ?, ?, NULL)",
                (info.id, user, token_hash(token), int(read_only), info.created, info.expires),
            )
        return token, info

    def tokens(self, user: str | None = None) -> list[TokenInfo]:
        """Every token (of ``user``), oldest first; never a secret, never a hash."""
        select = "SELECT id, username, read_only, created, expires, last_used FROM tokens"
        with self.storage.connection() as conn:
            if user is None:
                rows = conn.execute(select + " ORDER BY created, id").fetchall()
            else:
                self._require(conn, "user", user)
                rows = conn.execute(
                    select + " WHERE username = ? ORDER BY created, id", (user,)
                ).fetchall()
        return [
            TokenInfo(str(i), str(u), bool(r), str(c), e and str(e), lu and str(lu))
            for i, u, r, c, e, lu in rows
        ]

    def revoke(self, token_id: str) -> None:
        """Delete the token: the next request with it is 401, and its web page sessions end
        (their rows go with it, see :mod:`.sessions`)."""
        with self.storage.transaction() as conn:
            if conn.execute("DELETE FROM tokens WHERE id = ?", (token_id,)).rowcount:
                return
            given = conn.execute(
                "SELECT id FROM tokens WHERE hash = ?", (token_hash(token_id),)
            ).fetchone()
        if given is not None:
            # A token given where its id belongs: say which id, never the token.
            raise Invalid(
                f"that is a token (not repeated here), not a token id; to revoke it: "
                f"token revoke {given[0]}"
            )
        if not TOKEN_ID.fullmatch(token_id):
            raise NotFound(
                "no token with that id (not repeated: it may be a secret); see token list"
            )
        raise NotFound(f"no token with id {token_id!r}; see token list")

    def owner(self, token: str) -> TokenOwner | None:
        """The user behind ``token`` and its roles; None if unknown, :class:`Expired` if old."""
        owner, last_used = self._owner("hash", token_hash(token))
        if owner is None:
            return None
        now = _now()
        if last_used is None or _parse_stamp(last_used) + LAST_USED_STEP <= now:
            with self.storage.transaction() as conn:
                conn.execute(
                    "UPDATE tokens SET last_used = ? WHERE id = ?", (_stamp(now), owner.token_id)
                )
        return owner

    def owner_by_id(self, token_id: str) -> TokenOwner | None:
        """As :meth:`owner`, for the token with id ``token_id``, which is not being used now
        (``last_used`` stays): whose authority an upload URL it was handed still carries."""
        return self._owner("id", token_id)[0]

    def _owner(
        self, column: Literal["hash", "id"], value: str
    ) -> tuple[TokenOwner | None, str | None]:
        """The owner of the token whose ``column`` is ``value``, and its ``last_used``."""
        now = _now()
        with self.storage.connection() as conn:
            row = conn.execute(_SELECT_TOKEN[column], (value,)).fetchone()
            if row is None:
                return None, None
            token_id, user, read_only, expires, last_used = row
            if expires is not None and _parse_stamp(str(expires)) <= now:
                raise Expired
            roles: dict[str, Role] = {
                str(org): "write" if role == "write" else "read"
                for org, role in conn.execute(
                    "SELECT organization, role FROM memberships WHERE username = ?", (user,)
                )
            }
        roles[str(user)] = "write"
        owner = TokenOwner(str(token_id), str(user), bool(read_only), roles)
        return owner, None if last_used is None else str(last_used)

    # -- visibility ----------------------------------------------------------------------------

    def visibility(self, namespace: str, name: str) -> Visibility:
        with self.storage.connection() as conn:
            row = conn.execute(
                "SELECT 1 FROM public_artifacts WHERE namespace = ? AND name = ?",
                (namespace, name),
            ).fetchone()
        return "private" if row is None else "public"

    def set_visibility(self, namespace: str, name: str, visibility: str) -> None:
        """Make an existing artifact ``public`` or ``private``."""
        if visibility not in ("public", "private"):
            raise Invalid(f"visibility must be public or private, not {visibility!r}")
        if self.storage.get_artifact(namespace, name) is None:
            raise NotFound(f"artifact {namespace}/{name} does not exist")
        with self.storage.transaction() as conn:
            conn.lock("visibility", namespace, name)  # a DELETE-and-INSERT, one at a time
            conn.execute(
                "DELETE FROM public_artifacts WHERE namespace = ? AND name = ?", (namespace, name)
            )
            if visibility == "public":
                conn.execute(
                    "INSERT INTO public_artifacts (namespace, name, since) VALUES (?, ?, ?)",
                    (namespace, name, _stamp(_now())),
                )
