"""The web pages' sessions on both backends: stored hashed, ended by sign-out, by their token's
revocation or expiry, by an administrator token leaving the flags, and by their own age."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from pathlib import Path

import pytest

from atlas_ci.registry import sessions as sessions_module
from atlas_ci.registry.accounts import Accounts
from atlas_ci.registry.identity import Unauthenticated
from atlas_ci.registry.sealing import hash_secret
from atlas_ci.registry.sessions import Sessions, cookie_value
from atlas_ci.registry.storage import Storage


@pytest.fixture
def made(tmp_path: Path, open_storage: Callable[[Path], Storage]) -> tuple[Storage, Accounts]:
    storage = open_storage(tmp_path / "data")
    accounts = Accounts(storage)
    accounts.create("user", "alice")
    return storage, accounts


def _rows(storage: Storage) -> list[tuple[object, ...]]:
    with storage.connection() as conn:
        return [tuple(r) for r in conn.execute("SELECT hash, token_id, admin_hash FROM sessions")]


def test_a_session_is_its_tokens_access_and_is_stored_hashed(
    made: tuple[Storage, Accounts],
) -> None:
    storage, accounts = made
    token, info = accounts.create_token("alice", read_only=True, lifetime=None)
    sessions = Sessions(storage, accounts, ["admin-token"])
    cookie, identity = sessions.start(token)
    assert identity.user == "alice" and identity.read_only
    assert _rows(storage) == [(hash_secret(cookie), info.id, None)]
    assert all(token not in str(v) and cookie not in str(v) for v in _rows(storage)[0])
    again = sessions.identity(cookie)
    assert again is not None and again.user == "alice"
    assert sessions.identity(cookie[:-1] + ("A" if cookie[-1] != "A" else "B")) is None
    sessions.end(cookie)
    assert sessions.identity(cookie) is None
    assert _rows(storage) == []


def test_revoking_the_token_ends_its_sessions(made: tuple[Storage, Accounts]) -> None:
    storage, accounts = made
    token, info = accounts.create_token("alice", read_only=False, lifetime=None)
    sessions = Sessions(storage, accounts, [])
    cookie, _ = sessions.start(token)
    accounts.revoke(info.id)
    assert _rows(storage) == []  # the rows go with the token
    assert sessions.identity(cookie) is None


def test_an_expired_token_or_session_ends(
    made: tuple[Storage, Accounts], monkeypatch: pytest.MonkeyPatch
) -> None:
    storage, accounts = made
    token, _ = accounts.create_token("alice", read_only=False, lifetime=datetime.timedelta(0, 2))
    sessions = Sessions(storage, accounts, [])
    cookie, _ = sessions.start(token)
    later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=5)
    monkeypatch.setattr("atlas_ci.registry.accounts._now", lambda: later)
    assert sessions.identity(cookie) is None  # the token expired
    assert _rows(storage) == []
    monkeypatch.undo()
    lasting, _ = accounts.create_token("alice", read_only=False, lifetime=None)
    cookie, _ = sessions.start(lasting)
    after = datetime.datetime.now(datetime.timezone.utc) + sessions_module.LIFETIME
    monkeypatch.setattr(sessions_module, "_now", lambda: after)
    assert sessions.identity(cookie) is None  # the session's own age
    assert _rows(storage) == []


def test_an_administrator_session_lasts_while_its_token_is_in_the_flags(
    made: tuple[Storage, Accounts],
) -> None:
    storage, accounts = made
    cookie, identity = Sessions(storage, accounts, ["adm", "other"]).start("adm")
    assert identity.admin
    assert Sessions(storage, accounts, ["other", "adm"]).identity(cookie) == identity
    assert Sessions(storage, accounts, ["other"]).identity(cookie) is None


@pytest.mark.parametrize("token", ["", "wrong", "atlas_" + "x" * 43])
def test_a_bad_token_starts_nothing_and_is_not_repeated(
    made: tuple[Storage, Accounts], token: str
) -> None:
    storage, accounts = made
    with pytest.raises(Unauthenticated) as caught:
        Sessions(storage, accounts, ["adm"]).start(token)
    assert not token or token not in str(caught.value)
    assert _rows(storage) == []


def test_the_cookie_is_found_among_others() -> None:
    assert cookie_value("a=1; atlas_session=abc; b=2") == "abc"
    assert cookie_value("atlas_sessionx=1") is None
    assert cookie_value(None) is None
