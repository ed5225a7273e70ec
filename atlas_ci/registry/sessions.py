"""The web pages' sign-in sessions: a token typed into the sign-in page becomes a random cookie.

The database keeps the sha256 of the cookie (a stolen database signs nobody in) and which token
signed in: a user token's id, or the sha256 of an administrator token. Every request with the
cookie looks that token up again (:meth:`Sessions.identity`), so a session has exactly the
access of its token as it is now: a revoked token (its row deleted, which deletes its sessions
too), an expired one or an administrator token no longer in the server's flags ends the session.
A session also ends by itself after :data:`LIFETIME`, and when its browser signs out.

The token itself is never stored, logged or sent back: only the cookie travels after sign-in.
"""

from __future__ import annotations

import datetime
import hmac
import re
import secrets
from collections.abc import Sequence

from atlas_ci.registry.accounts import Accounts, token_hash
from atlas_ci.registry.identity import (
    ADMIN,
    TOKEN_GRANTEE,
    Identity,
    Unauthenticated,
    grant_holder,
    identify,
)
from atlas_ci.registry.sealing import hash_secret
from atlas_ci.registry.storage import Storage

COOKIE = "atlas_session"
LIFETIME = datetime.timedelta(hours=12)
_COOKIE_VALUE = re.compile(r"[A-Za-z0-9_-]{43}")
"""What :meth:`Sessions.start` makes (32 random bytes, URL-safe base64); nothing else is looked
up."""
_STAMP = "%Y-%m-%dT%H:%M:%SZ"


def cookie_value(header: str | None) -> str | None:
    """The session cookie's value in a ``Cookie`` header, if it holds one."""
    for pair in (header or "").split(";")[:64]:
        name, sep, value = pair.strip().partition("=")
        if sep and name == COOKIE:
            return value.strip()
    return None


def _stamp(moment: datetime.datetime) -> str:
    return moment.strftime(_STAMP)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class Sessions:
    """The sessions of one server: its storage, accounts and administrator tokens."""

    def __init__(self, storage: Storage, accounts: Accounts, admin_tokens: Sequence[str]) -> None:
        self.storage = storage
        self.accounts = accounts
        self.admin_tokens = tuple(admin_tokens)

    def start(self, token: str) -> tuple[str, Identity]:
        """A new session for ``token``: the cookie value and who it signs in.
        :class:`Unauthenticated` (a message that never quotes the token) if it is not valid."""
        if not token:
            raise Unauthenticated("enter a token")
        identity = identify(token, self.admin_tokens, self.accounts)
        cookie = secrets.token_urlsafe(32)
        now = _now()
        if identity.admin:
            token_id, admin_hash = None, token_hash(token)
        else:
            token_id, admin_hash = identity.token_id, None
        with self.storage.transaction() as conn:
            # Ended sessions are removed as new ones begin: the table stays as small as the
            # sessions that are live.
            conn.execute("DELETE FROM sessions WHERE expires <= ?", (_stamp(now),))
            conn.execute(
                "INSERT INTO sessions (hash, token_id, admin_hash, created, expires) "
                "VALUES (?, ?, ?, ?, ?)",
                (hash_secret(cookie), token_id, admin_hash, _stamp(now), _stamp(now + LIFETIME)),
            )
        return cookie, identity

    def identity(self, cookie: str) -> Identity | None:
        """Who the session of ``cookie`` signs in, as its token stands now; None when there is
        no such session or it has ended (an ended one is deleted)."""
        if not _COOKIE_VALUE.fullmatch(cookie):
            return None
        key = hash_secret(cookie)
        with self.storage.connection() as conn:
            row = conn.execute(
                "SELECT token_id, admin_hash, expires FROM sessions WHERE hash = ?", (key,)
            ).fetchone()
        if row is None:
            return None
        token_id, admin_hash, expires = row
        found = None
        if (
            datetime.datetime.strptime(str(expires), _STAMP).replace(tzinfo=datetime.timezone.utc)
            > _now()
        ):
            found = self._holder(token_id, admin_hash)
        if found is None:
            self._delete(key)
        return found

    def _holder(self, token_id: object, admin_hash: object) -> Identity | None:
        if token_id is not None:
            try:
                return grant_holder(f"{TOKEN_GRANTEE}{token_id}", self.accounts)
            except Unauthenticated:  # revoked or expired
                return None
        matched = False
        for admin_token in self.admin_tokens:
            # No early exit: the time taken does not tell which token came close.
            matched |= hmac.compare_digest(str(admin_hash), token_hash(admin_token))
        return ADMIN if matched else None

    def end(self, cookie: str) -> None:
        """Sign out: the session of ``cookie`` is deleted (nothing happens without one)."""
        if _COOKIE_VALUE.fullmatch(cookie):
            self._delete(hash_secret(cookie))

    def _delete(self, key: str) -> None:
        with self.storage.transaction() as conn:
            conn.execute("DELETE FROM sessions WHERE hash = ?", (key,))
