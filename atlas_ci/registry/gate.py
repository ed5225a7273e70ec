"""Who is asking and whether they may: a request's token (or a web page session, see
:mod:`.sessions`) made an :class:`~.identity.Identity`, and :func:`.policy.decide` asked before
any front door runs.

The server asks :meth:`Gate.admit` for every routed request (the route table says which access
each endpoint needs, :data:`.routes.Access`); a door whose namespace is in its body, or that
hands out upload URLs, asks :meth:`Gate.authorize_write` and :meth:`Gate.resumable` through its
request. Refusals are raised as :class:`~.http.HTTPError` with the policy's status and reason.
"""

from __future__ import annotations

from collections.abc import Sequence

from atlas_ci.registry import policy
from atlas_ci.registry.accounts import Accounts
from atlas_ci.registry.http import HTTPError
from atlas_ci.registry.identity import Identity, Unauthenticated, grant_holder, identify
from atlas_ci.registry.model import Conflict, NotFound, Version
from atlas_ci.registry.routes import Route
from atlas_ci.registry.sessions import Sessions
from atlas_ci.registry.storage import Storage

AUTH_REQUIRED = "authentication required: pass a token (X-Atlas-Token or Authorization: Bearer)"


class Gate:
    """Identity and access for one server: its administrator tokens, accounts and storage."""

    def __init__(self, admin_tokens: Sequence[str], accounts: Accounts, storage: Storage) -> None:
        self.admin_tokens = admin_tokens
        self.accounts = accounts
        self.storage = storage
        self.sessions = Sessions(storage, accounts, admin_tokens)

    def identify(self, token: str | None) -> Identity:
        """The holder of ``token`` (None: anonymous); 401 for a token nobody holds."""
        try:
            return identify(token, self.admin_tokens, self.accounts)
        except Unauthenticated as exc:
            raise HTTPError(401, str(exc)) from None

    def session_identity(self, cookie: str) -> Identity | None:
        """Who a web page session signs in (see :mod:`.sessions`); None: nobody, or ended."""
        return self.sessions.identity(cookie)

    def _decide(
        self, identity: Identity, operation: policy.Operation, user: str, name: str | None
    ) -> policy.Decision:
        if identity.admin:
            return policy.ALLOW  # no lookups for the administrator
        accounts = self.accounts
        visibility = (
            accounts.visibility(user, name)
            if operation == "read" and name is not None
            else "private"
        )
        # The kind only shows in a refusal to a member (policy.decide): no lookup otherwise.
        kind = accounts.kind(user) if operation == "write" and user in identity.roles else None
        return policy.decide(identity, operation, policy.Namespace(user, kind), visibility)

    def authorize(self, identity: Identity, route: Route) -> None:
        """Raise the policy's refusal of ``route`` (before any of its work is done)."""
        if route.access == "token" and identity.anonymous:
            raise HTTPError(401, AUTH_REQUIRED)
        operation = route.operation
        if operation is None:
            return
        user, name = route.params.get("user"), route.params.get("name")
        if user is None:  # create_artifact: the namespace is in the body, see authorize_write
            decision = policy.decide(identity, operation, None)
        else:
            decision = self._decide(identity, operation, user, name)
        _refuse_unless(decision, f"artifact {user}/{name} not found")

    def upload_holder(self, secret: str) -> Identity:
        """Who may PUT to the upload URL of ``secret``: the write access of the token it was
        handed to, as that access is now (revoking the token, or the membership, ends the URL
        too); 404, 409 or 403 otherwise."""
        try:
            version = self.storage.version_for_secret(secret)
        except NotFound as exc:
            raise HTTPError(404, str(exc)) from None
        except Conflict as exc:
            raise HTTPError(409, str(exc)) from None
        refused = "this upload URL no longer carries write access: "
        try:
            identity = grant_holder(self.storage.upload_grantee(version), self.accounts)
        except Unauthenticated as exc:
            raise HTTPError(403, refused + str(exc)) from None
        decision = self._decide(identity, "write", version.user, None)
        if not decision.allowed:
            raise HTTPError(403, refused + decision.reason)
        return identity

    def resumable(self, identity: Identity, found: list[Version]) -> list[Version]:
        """The pending versions of ``found`` (one search's: all in one namespace) whose upload
        URL ``identity`` may be handed (see :func:`policy.decide`); the namespace is looked up
        once, not once a version."""
        pending = [v for v in found if v.state == "pending"]
        if identity.admin or not pending:
            return pending  # no lookups for the administrator
        user = pending[0].user
        namespace = policy.Namespace(user, self.accounts.kind(user))
        storage = self.storage
        return [
            v
            for v in pending
            if policy.decide(
                identity, "resume", namespace, grantee=storage.upload_grantee(v)
            ).allowed
        ]

    def authorize_write(self, identity: Identity, user: str) -> None:
        """For a route whose namespace is in its body: may ``identity`` write into ``user``?"""
        _refuse_unless(self._decide(identity, "write", user, None), "")


def _refuse_unless(decision: policy.Decision, not_found: str) -> None:
    if not decision.allowed:
        reason = not_found if decision.status == 404 and not_found else decision.reason
        raise HTTPError(decision.status, reason)
