"""A full disk or a locked database answers 507 or 503, not 500, and the server serves on.

The registry runs in this process so the test can make SQLite itself run out of room: with
``PRAGMA max_page_count`` at the database's size, a write that needs a new page fails with
SQLite's own SQLITE_FULL ("database or disk is full"), the error a full disk gives. On
PostgreSQL the driver is made to raise the error a full disk gives there (SQLSTATE 53100).
"""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from atlas_ci.registry.database import Connection, SQLiteDatabase, open_database, parse_url
from atlas_ci.registry.server import RegistryServer
from atlas_ci.registry.storage import Storage
from tests.postgres import PostgresCluster
from tests.registry_inproc import serving

HEADERS = {"X-Atlas-Token": "tok"}
TIMEOUT = 10


class _FillableDatabase(SQLiteDatabase):
    """A SQLite database that can be declared full (or slow to wait for a lock)."""

    full = False
    busy_timeout_ms: int | None = None

    def _connect(self) -> Connection:
        conn = super()._connect()
        self._limit(conn)
        return conn

    def _limit(self, conn: Connection) -> None:
        raw: sqlite3.Connection = conn.raw  # type: ignore[attr-defined]
        (pages,) = raw.execute("PRAGMA page_count").fetchone()
        raw.execute(f"PRAGMA max_page_count = {int(pages) if self.full else 1073741823}")
        if self.busy_timeout_ms is not None:
            raw.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")


class _FillableStorage(Storage):
    db: _FillableDatabase

    def limit(self, *, full: bool = False, busy_timeout_ms: int | None = None) -> None:
        """Apply to the pooled connections and every new one."""
        self.db.full, self.db.busy_timeout_ms = full, busy_timeout_ms
        for conn in list(self.db._all):
            self.db._limit(conn)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[RegistryServer, _FillableStorage]]:
    data = tmp_path / "data"
    storage = _FillableStorage(data, _FillableDatabase(parse_url(None, data)))
    with serving(storage) as server:
        yield server, storage


def _post(server: RegistryServer, path: str, body: object) -> requests.Response:
    return requests.post(server.url + path, json=body, headers=HEADERS, timeout=TIMEOUT)


def _artifact(user: str, name: str) -> dict[str, object]:
    return {"artifact": {"username": user, "name": name}}


def test_a_full_database_during_artifact_creation_is_507(
    served: tuple[RegistryServer, _FillableStorage],
) -> None:
    server, storage = served
    assert _post(server, "/api/v1/artifacts", _artifact("u", "n")).status_code == 201
    storage.limit(full=True)
    # Long names fill the last free room of the existing pages within a few rows.
    statuses = []
    for i in range(200):
        response = _post(server, "/api/v1/artifacts", _artifact("u" * 250, f"{i:03d}" + "n" * 250))
        statuses.append(response.status_code)
        if response.status_code != 201:
            break
    assert statuses[-1] == 507, statuses
    assert set(statuses[:-1]) <= {201}
    assert "disk space" in response.json()["errors"][0]
    # Nothing half-made, and the server answers on, reads included.
    assert (
        requests.get(
            server.url + f"/api/v1/artifacts/{'u' * 250}/{len(statuses) - 1:03d}{'n' * 250}",
            headers=HEADERS,
            timeout=TIMEOUT,
        ).status_code
        == 404
    )
    assert requests.get(server.url + "/api/v1/artifacts/u/n", headers=HEADERS, timeout=TIMEOUT).ok


def test_a_full_database_during_version_creation_is_507(
    served: tuple[RegistryServer, _FillableStorage],
) -> None:
    server, storage = served
    assert _post(server, "/api/v1/artifacts", _artifact("u", "n")).status_code == 201
    storage.limit(full=True)
    big = {"artifact_version": {"file": True, "metadata": {"k": "v" * 200_000}}}
    for _ in range(3):  # the pooled connection stays usable after the failed write
        response = _post(server, "/api/v1/artifacts/u/n/t", big)
        assert response.status_code == 507, response.text
    search = requests.get(
        server.url + "/api/v1/artifacts/u/n/t/search?version=any&include_pending=1",
        headers=HEADERS,
        timeout=TIMEOUT,
    )
    assert search.json()["versions"] == []
    storage.limit(full=False)  # room again: the same request succeeds
    assert _post(server, "/api/v1/artifacts/u/n/t", big).status_code == 201


def test_enospc_from_the_file_system_is_507(
    served: tuple[RegistryServer, _FillableStorage], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, storage = served

    def no_space(user: str, name: str) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(storage, "create_artifact", no_space)
    response = _post(server, "/api/v1/artifacts", _artifact("u", "n"))
    assert response.status_code == 507
    assert requests.get(server.url + "/api/v1/authenticate", headers=HEADERS, timeout=5).ok


def test_a_database_locked_past_the_wait_is_503_with_retry_after(
    served: tuple[RegistryServer, _FillableStorage],
) -> None:
    server, storage = served
    storage.limit(busy_timeout_ms=50)
    other = sqlite3.connect(storage.db.path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        response = _post(server, "/api/v1/artifacts", _artifact("u", "n"))
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"] == "1"
        other.execute("ROLLBACK")
    finally:
        other.close()
    assert _post(server, "/api/v1/artifacts", _artifact("u", "n")).status_code == 201


def test_a_full_disk_under_postgresql_is_507(
    tmp_path: Path, pg_cluster: PostgresCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psycopg

    url = pg_cluster.url(pg_cluster.create_database())
    storage = Storage(tmp_path / "data", open_database(url, tmp_path), migrate=True)
    real_execute = psycopg.Connection.execute
    full = True

    def execute(self: psycopg.Connection[object], query: object, *args: object) -> object:
        if full and "INSERT INTO versions" in str(query):
            raise psycopg.errors.DiskFull(
                'could not extend file "base/16384/16402": No space left on device'
            )
        return real_execute(self, query, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(psycopg.Connection, "execute", execute)
    with serving(storage) as server:
        assert _post(server, "/api/v1/artifacts", _artifact("u", "n")).status_code == 201
        big = {"artifact_version": {"file": True, "metadata": {"k": "v"}}}
        for _ in range(3):  # the pooled connection stays usable after the failed write
            response = _post(server, "/api/v1/artifacts/u/n/t", big)
            assert response.status_code == 507, response.text
            assert "disk space" in response.json()["errors"][0]
        search = requests.get(
            server.url + "/api/v1/artifacts/u/n/t/search?version=any&include_pending=1",
            headers=HEADERS,
            timeout=TIMEOUT,
        )
        assert search.json()["versions"] == []
        full = False  # room again: the same request succeeds
        assert _post(server, "/api/v1/artifacts/u/n/t", big).status_code == 201
