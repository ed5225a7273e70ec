"""Pending versions in a search with include_pending: sealed secrets, never the plain one."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest

from atlas_ci.registry.model import Search
from atlas_ci.registry.sealing import seal_secret, unseal_secret
from atlas_ci.registry.storage import Storage
from atlas_ci.registry.wire import BadRequest, parse_search
from tests.registry_inproc import new_version


def _new(store: Storage, secret: str | None) -> int:
    return new_version(store, secret).version


def test_pending_versions_are_listed_only_when_asked_and_latest_counts_them(
    tmp_path: Path, open_storage: Callable[[Path], Storage]
) -> None:
    store = open_storage(tmp_path / "d")
    store.create_artifact("u", "n")
    _new(store, None)  # v1 ready
    _new(store, "s3cret-of-v2")  # v2 pending

    def found(search: Search) -> list[tuple[int, str]]:
        return [(v.version, v.state) for v in store.search("u", "n", "t", search)]

    assert found(Search(version="any")) == [(1, "ready")]
    assert found(Search(version="latest")) == [(1, "ready")]
    assert found(Search(version="any", include_pending=True)) == [(2, "pending"), (1, "ready")]
    assert found(Search(version="latest", include_pending=True)) == [(2, "pending")]
    [pending, ready] = store.search("u", "n", "t", Search(version="any", include_pending=True))
    assert store.pending_upload_secret(pending) == "s3cret-of-v2"
    assert store.pending_upload_secret(ready) is None


def test_pending_secret_survives_reopening_is_sealed_and_dropped_once_uploaded(
    tmp_path: Path, open_storage: Callable[[Path], Storage]
) -> None:
    store = open_storage(tmp_path / "d")
    store.create_artifact("u", "n")
    _new(store, "s3cret-value")
    store.close()
    store = open_storage(tmp_path / "d")
    [pending] = store.search("u", "n", "t", Search(version="any", include_pending=True))
    assert store.pending_upload_secret(pending) == "s3cret-value"
    with store.db.connection() as conn:
        dump = "\n".join(
            repr(row)
            for table in ("artifacts", "versions", "pending_uploads")
            for row in conn.execute(f"SELECT * FROM {table}").fetchall()  # noqa: S608
        )
    assert "s3cret-value" not in dump
    assert (tmp_path / "d" / "upload.key").stat().st_mode & 0o077 == 0
    upload = store.begin_upload("s3cret-value")
    upload.receive(io.BytesIO(b"data").readinto, 4)
    ready = store.finish_upload(upload)
    assert store.pending_upload_secret(ready) is None
    with store.db.connection() as conn:
        assert conn.execute("SELECT COUNT(*) FROM pending_uploads").fetchone()[0] == 0


def test_seal_round_trip_depends_on_key_and_row() -> None:
    key = bytes(range(32))
    sealed = seal_secret(key, 7, "a" * 43)
    assert unseal_secret(key, 7, sealed) == "a" * 43
    assert seal_secret(key, 8, "a" * 43) != sealed
    assert seal_secret(bytes(32), 7, "a" * 43) != sealed


def test_include_pending_query() -> None:
    assert parse_search("version=any&include_pending=1").include_pending
    assert not parse_search("version=any").include_pending
    assert not parse_search("include_pending=0").include_pending
    with pytest.raises(BadRequest):
        parse_search("include_pending=yes")
