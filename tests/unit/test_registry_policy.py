"""The access policy as a table: (identity, operation, namespace, visibility) -> status."""

from __future__ import annotations

import dataclasses

import pytest
import requests

from atlas_ci.registry import routes
from atlas_ci.registry.identity import ADMIN, ANONYMOUS, Identity, presented_token
from atlas_ci.registry.policy import Namespace, PolicyMisuse, decide
from atlas_ci.registry.server import RegistryServer

ALICE = Identity(
    user="alice",
    roles={"alice": "write", "hashicorp": "write", "acme": "read"},
    token_id="a1",
)
ALICE_RO = Identity(user="alice", read_only=True, roles=ALICE.roles, token_id="a2")
ALICE_2 = Identity(user="alice", roles=ALICE.roles, token_id="a3")
HASHICORP = Namespace("hashicorp", "organization")
ACME = Namespace("acme", "organization")
OTHER = Namespace("other", "organization")
OWN = Namespace("alice", "user")
BOB = Namespace("bob", "user")

TABLE = [
    # who, operation, namespace, visibility, status (0 = allowed)
    (ALICE, "write", OWN, "private", 0),
    (ALICE, "write", HASHICORP, "private", 0),
    (ALICE, "write", ACME, "private", 403),
    (ALICE, "write", OTHER, "private", 403),
    (ALICE, "write", BOB, "public", 403),
    (ALICE, "read", OWN, "private", 0),
    (ALICE, "read", ACME, "private", 0),
    (ALICE, "read", OTHER, "private", 404),
    (ALICE, "read", OTHER, "public", 0),
    (ALICE_RO, "read", HASHICORP, "private", 0),
    (ALICE_RO, "write", OWN, "private", 403),
    (ALICE_RO, "write", HASHICORP, "private", 403),
    (ANONYMOUS, "read", OTHER, "public", 0),
    (ANONYMOUS, "read", OTHER, "private", 401),
    (ANONYMOUS, "write", OTHER, "public", 401),
    (ADMIN, "write", OTHER, "private", 0),
    (ADMIN, "read", Namespace("nobody"), "private", 0),
    # Before the namespace is known (a body names it): only what the identity alone decides.
    (ALICE, "write", None, "private", 0),
    (ALICE_RO, "write", None, "private", 403),
    (ANONYMOUS, "write", None, "private", 401),
    # Fail closed: a visibility that is not exactly "public" (a lookup gone wrong) is private.
    (ALICE, "read", OTHER, None, 404),
    (ALICE, "read", OTHER, "Public", 404),
    (ANONYMOUS, "read", OTHER, None, 401),
]

# Questions without an answer: a read or resume needs the artifact's namespace. Asking
# without it is a bug in the caller, for every identity (the administrator's too).
MISUSE = [
    (ALICE, "read", "public"),
    (ALICE, "read", "private"),
    (ANONYMOUS, "read", "private"),
    (ADMIN, "read", "private"),
    (ALICE, "resume", "private"),
    (ADMIN, "resume", "private"),
]

# Resuming a pending upload (its URL handed back): who it was handed to, who asks now.
RESUME = [
    (ALICE, HASHICORP, "token:a1", 0),
    (ALICE, HASHICORP, None, 0),  # recorded before grantees were: any writer, as before
    (ALICE_2, HASHICORP, "token:a1", 403),  # the same user's other token
    (ALICE, HASHICORP, "admin", 403),
    (ALICE_RO, HASHICORP, "token:a2", 403),
    (ALICE, ACME, "token:a1", 403),  # a reader now
    (ANONYMOUS, HASHICORP, None, 401),
    (ADMIN, HASHICORP, "token:a1", 0),
]


@pytest.mark.parametrize(("who", "namespace", "grantee", "status"), RESUME)
def test_resume_table(
    who: Identity, namespace: Namespace, grantee: str | None, status: int
) -> None:
    assert decide(who, "resume", namespace, grantee=grantee).status == status


@pytest.mark.parametrize(("who", "operation", "namespace", "visibility", "status"), TABLE)
def test_policy_table(
    who: Identity, operation: str, namespace: Namespace | None, visibility: str, status: int
) -> None:
    decision = decide(who, operation, namespace, visibility)  # type: ignore[arg-type]
    assert decision.status == status
    assert decision.allowed == (status == 0)
    assert bool(decision.reason) == (status != 0)


@pytest.mark.parametrize(("who", "operation", "visibility"), MISUSE)
def test_a_read_without_a_namespace_is_a_programming_error(
    who: Identity, operation: str, visibility: str
) -> None:
    with pytest.raises(PolicyMisuse, match=f"a {operation} is decided for one artifact's"):
        decide(who, operation, None, visibility)  # type: ignore[arg-type]


def test_refusals_say_why() -> None:
    assert (
        decide(ALICE, "write", ACME).reason == "user alice has no write access to organization acme"
    )
    assert decide(ALICE, "write", BOB).reason == "user alice has no write access to namespace bob"
    # Only a member (alice reads acme) learns the kind; other organizations stay "namespace".
    assert (
        decide(ALICE, "write", OTHER).reason == "user alice has no write access to namespace other"
    )
    assert decide(ALICE, "write", Namespace("nobody")).reason == (
        "user alice has no write access to namespace nobody"
    )
    assert "read-only" in decide(ALICE_RO, "write", OWN).reason


def test_token_headers() -> None:
    assert presented_token("a", "Bearer b") == "a"
    assert presented_token(None, "Bearer b") == "b"
    assert presented_token("", "bearer  b ") == "b"
    assert presented_token(None, "Basic Zm9vOmJhcg==") is None
    assert presented_token(None, "Bearer ") is None
    assert presented_token(None, None) is None


@pytest.mark.parametrize("database_url", [None])
def test_the_server_answers_a_misused_policy_500_and_does_nothing(
    server: RegistryServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A later route that reads without a namespace in its path (here: artifact creation made
    # a read by mistake) must not be let through: 500, and nothing created.
    methods = dict(routes.ROUTES)[("api", "v1", "artifacts")]
    misused = dataclasses.replace(methods["POST"], access="read")
    monkeypatch.setitem(methods, "POST", misused)
    response = requests.post(
        server.url + "/api/v1/artifacts",
        json={"artifact": {"username": "u", "name": "n"}},
        headers={"X-Atlas-Token": "tok"},
        timeout=10,
    )
    assert response.status_code == 500, response.text
    assert server.storage.get_artifact("u", "n") is None
