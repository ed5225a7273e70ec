"""May this identity do this to this namespace? One pure function, :func:`decide`.

- An administrator may do everything.
- Reading (artifact lookup, search, downloads, the box catalog) a **public** artifact needs
  nothing; a private one needs a ``read`` or ``write`` role in its namespace (a user's own
  name counts as ``write``). Without any token it is 401; a token that cannot read it gets
  404, as if it did not exist, so a private artifact's existence does not leak.
- Writing (creating an artifact or a version, which hands out the upload URL) needs a token
  that is not read-only and a ``write`` role in the namespace; otherwise 403 with the reason.
  The reason names the namespace's kind (organization, user) only to a token whose user has
  a role in it; to any other it says "namespace X" whether X is an organization, a user or
  unused, so a 403 lists nobody.
  An upload URL carries the write access of the token it was handed to, as it is now: the
  file PUT is a ``write`` decided for that token (:func:`~.identity.grant_holder`).
- Resuming (being handed a pending version's upload URL again, by a search with
  ``include_pending``) needs write access and to be the token the URL was handed to: one
  writer never gets another's URL (the administrator, who may do everything, excepted).

The gate calls it for every routed request, before the front door runs (:mod:`.gate`);
front doors never decide access.

It fails closed: a visibility other than ``public`` is private, and a read or resume asked
without the artifact's namespace is a programming error (:class:`PolicyMisuse`), never an
answer.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from atlas_ci.registry.accounts import Kind, Visibility
from atlas_ci.registry.identity import Identity

Operation = Literal["read", "write", "resume"]


@dataclasses.dataclass(frozen=True)
class Namespace:
    """The first path segment of an artifact, and whether a user or an organization owns it."""

    name: str
    kind: Kind | None = None

    def described(self) -> str:
        if self.kind == "organization":
            return f"organization {self.name}"
        if self.kind == "user":
            return f"user {self.name}'s namespace"
        return f"namespace {self.name}"


@dataclasses.dataclass(frozen=True)
class Decision:
    """``status`` 0 allows; otherwise the HTTP status and the reason to send."""

    status: int = 0
    reason: str = ""

    @property
    def allowed(self) -> bool:
        return self.status == 0


ALLOW = Decision()


class PolicyMisuse(ValueError):
    """:func:`decide` was asked a question that has no answer (a read or resume without the
    artifact's namespace). A bug in the caller: the server answers it 500, allowing nothing."""


def decide(
    identity: Identity,
    operation: Operation,
    namespace: Namespace | None,
    visibility: Visibility = "private",
    grantee: str | None = None,
) -> Decision:
    """The decision for ``operation`` on an artifact of ``namespace`` with ``visibility``;
    for ``resume``, of a pending upload handed to ``grantee`` (:attr:`Identity.grantee`;
    None for one created before the registry recorded it).

    ``namespace`` None asks only what does not depend on it (before a request body naming
    the namespace was read): may this identity write anywhere at all? Only a write may ask
    that; a read or resume without the namespace raises :class:`PolicyMisuse`.
    """
    if namespace is None and operation != "write":
        # There is no "may read anywhere" to decide, and a refusal would pass for an ordinary
        # 404 (an allowance, for the administrator's token most tests use): raise, so that
        # the mistake shows as an error wherever the call is made, whoever asks.
        raise PolicyMisuse(f"a {operation} is decided for one artifact's namespace, not None")
    if identity.admin:
        return ALLOW
    if operation == "resume":
        may_write = decide(identity, "write", namespace)
        if may_write.allowed and grantee not in (None, identity.grantee):
            return Decision(403, "this pending upload was handed to another token")
        return may_write
    if operation == "read":
        if visibility == "public":
            return ALLOW
        if identity.anonymous:
            return Decision(401, "authentication required: pass a token (X-Atlas-Token)")
        if namespace is not None and namespace.name in identity.roles:
            return ALLOW
        return Decision(404, "not found")
    if identity.anonymous:
        return Decision(401, "authentication required: pass a token (X-Atlas-Token)")
    if identity.read_only:
        return Decision(403, f"the token of user {identity.name} is read-only")
    if namespace is None or identity.roles.get(namespace.name) == "write":
        return ALLOW
    # Only a member learns what the namespace is: to anyone else an organization, a user and
    # an unused name read the same, so a token cannot list who and what exists.
    shown = (
        namespace.described() if namespace.name in identity.roles else f"namespace {namespace.name}"
    )
    return Decision(403, f"user {identity.name} has no write access to {shown}")
