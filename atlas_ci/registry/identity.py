"""Who is asking: the token of a request (``X-Atlas-Token`` or ``Authorization: Bearer``)
resolved to an administrator, a user with its roles, or nobody.

Administrator tokens are the server's ``--token`` / ``ATLAS_REGISTRY_TOKENS`` (and the one it
generates when none is given): they reach every namespace. User tokens live in the database
(:mod:`.accounts`), so ``atlas-ci registry token ...`` takes effect on the next request.
"""

from __future__ import annotations

import dataclasses
import hmac
from collections.abc import Mapping, Sequence

from atlas_ci.registry.accounts import ADMIN_NAME, Accounts, Expired, Role, TokenOwner

ADMIN_GRANTEE = "admin"
TOKEN_GRANTEE = "token:"  # noqa: S105 (a prefix, not a secret)


class Unauthenticated(Exception):
    """A token was sent but is not valid; the message is safe to show (it never quotes it)."""


@dataclasses.dataclass(frozen=True)
class Identity:
    """The asker. ``user`` is None for an administrator and for the anonymous."""

    user: str | None = None
    admin: bool = False
    read_only: bool = False
    roles: Mapping[str, Role] = dataclasses.field(default_factory=dict)
    token_id: str | None = None

    @property
    def anonymous(self) -> bool:
        return not self.admin and self.user is None

    @property
    def grantee(self) -> str | None:
        """Who this identity is to the storage, which remembers it with what it hands out (an
        upload URL, an idempotency key): ``admin``, or ``token:<id>``; None when anonymous."""
        if self.admin:
            return ADMIN_GRANTEE
        return None if self.token_id is None else f"{TOKEN_GRANTEE}{self.token_id}"

    @property
    def name(self) -> str:
        """How the identity is named to clients and in messages."""
        if self.admin:
            return ADMIN_NAME
        return self.user or "anonymous"


ANONYMOUS = Identity()
ADMIN = Identity(admin=True)


def presented_token(x_atlas_token: str | None, authorization: str | None) -> str | None:
    """``X-Atlas-Token`` (what Packer and Terraform send), else a ``Bearer`` token (Vagrant's
    ``VAGRANT_CLOUD_TOKEN``); None when neither carries one. Other schemes are not tokens."""
    if x_atlas_token:
        return x_atlas_token
    scheme, _, value = (authorization or "").strip().partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def identify(token: str | None, admin_tokens: Sequence[str], accounts: Accounts) -> Identity:
    """The identity behind ``token``; :class:`Unauthenticated` for an unknown or expired one."""
    if token is None:
        return ANONYMOUS
    given = token.encode("latin-1", "replace")
    matched = False
    for admin_token in admin_tokens:
        # No early exit: the time taken does not tell which token came close.
        matched |= hmac.compare_digest(given, admin_token.encode("utf-8"))
    if matched:
        return ADMIN
    try:
        owner = accounts.owner(token)
    except Expired:
        raise Unauthenticated("the token has expired; create a new one") from None
    if owner is None:
        raise Unauthenticated("invalid token")
    return _of(owner)


def _of(owner: TokenOwner) -> Identity:
    """The identity of a token's owner."""
    return Identity(
        user=owner.user, read_only=owner.read_only, roles=owner.roles, token_id=owner.token_id
    )


def grant_holder(grantee: str | None, accounts: Accounts) -> Identity:
    """The identity an upload URL was handed to, as it stands now (see :attr:`Identity.grantee`).

    :class:`Unauthenticated` when its token was revoked or has expired. A version created
    before the registry recorded grantees has None: its URL keeps the authority it always had.
    """
    if grantee is None or grantee == ADMIN_GRANTEE:
        return ADMIN
    token_id = grantee.removeprefix(TOKEN_GRANTEE)
    try:
        owner = accounts.owner_by_id(token_id)
    except Expired:
        raise Unauthenticated("the token it was created with has expired") from None
    if owner is None or not grantee.startswith(TOKEN_GRANTEE):
        raise Unauthenticated("the token it was created with was revoked")
    return _of(owner)
