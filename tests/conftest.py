"""Shared fixtures; helpers live in their own modules (tests/registry_proc.py)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from atlas_ci.registry.database import open_database
from atlas_ci.registry.server import Config, RegistryServer
from atlas_ci.registry.storage import Storage
from tests.postgres import BACKENDS, PostgresCluster, cluster_or_none, fresh_database
from tests.registry_proc import RegistryProcess


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    """One throwaway PostgreSQL cluster for the session (skipped without it; CI fails)."""
    with cluster_or_none() as cluster:
        if cluster is None:
            reason = "PostgreSQL (initdb, pg_ctl) or psycopg is not installed"
            if os.environ.get("CI") == "true":
                pytest.fail(f"{reason}; CI must test the PostgreSQL backend (.ci/run installs it)")
            pytest.skip(reason)
        yield cluster


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest) -> str | None:
    """Each backend in turn: None (SQLite, today's default) or a fresh PostgreSQL database."""
    return fresh_database(request, request.param)


@pytest.fixture
def open_storage(database_url: str | None) -> Iterator[Callable[[Path], Storage]]:
    """``open_storage(data_dir)``: a Storage on the test's backend; closed at teardown."""
    opened: list[Storage] = []

    def opener(data_dir: Path) -> Storage:
        store = Storage(data_dir, open_database(database_url, data_dir))
        opened.append(store)
        return store

    yield opener
    for store in opened:
        store.close()


@pytest.fixture
def registry(tmp_path: Path, database_url: str | None) -> Iterator[RegistryProcess]:
    """A running ``atlas-ci serve`` on 127.0.0.1 with its own data dir; stopped afterwards."""
    with RegistryProcess(tmp_path / "registry-data", database=database_url) as process:
        yield process


@pytest.fixture
def server(tmp_path: Path, database_url: str | None) -> Iterator[RegistryServer]:
    """The registry in this process (token ``tok``), for tests that patch its insides."""
    storage = Storage(tmp_path / "data", open_database(database_url, tmp_path / "data"))
    server = RegistryServer(("127.0.0.1", 0), storage, Config(tokens=("tok",), timeout=5))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
        assert server.drain(5) == 0
        storage.close()
