"""Shared fixtures; helpers live in their own modules (tests/registry_proc.py)."""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from atlas_ci.registry.database import open_database
from atlas_ci.registry.server import RegistryServer
from atlas_ci.registry.storage import Storage
from tests.postgres import BACKENDS, PostgresCluster, fresh_database, started_cluster
from tests.registry_inproc import serving
from tests.registry_proc import RegistryProcess

# The network is off for the test process: a connection or a name lookup beyond the loopback
# interface fails at once (servers the tests start listen on 127.0.0.1; `responses` mocks the
# rest). Processes the tests start are bound by the same rule, by review.


def _is_loopback(host: object) -> bool:
    if host in ("localhost", None):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _refuse(host: object) -> OSError:
    return OSError(errno.ENETUNREACH, f"the tests' network is off: {host!r} is not 127.0.0.1")


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo


def _connect(self: socket.socket, address: Any) -> None:
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
        raise _refuse(address[0])
    _real_connect(self, address)


def _connect_ex(self: socket.socket, address: Any) -> int:
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
        return errno.ENETUNREACH
    return _real_connect_ex(self, address)


def _getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    if not _is_loopback(host.decode() if isinstance(host, bytes) else host):
        raise socket.gaierror(
            socket.EAI_NONAME, f"the tests' network is off: no lookup of {host!r}"
        )
    return _real_getaddrinfo(host, *args, **kwargs)


socket.socket.connect = _connect  # type: ignore[method-assign]
socket.socket.connect_ex = _connect_ex  # type: ignore[method-assign]
socket.getaddrinfo = _getaddrinfo


# Slow tests in files this branch does not edit, marked here by name (the others carry
# @pytest.mark.slow themselves): the 256 MiB transfers.
_SLOW_BY_NAME = ("tests/unit/test_transfer.py::test_a_256_mib_upload_",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid.startswith(_SLOW_BY_NAME):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    """One throwaway PostgreSQL cluster for the session (skipped without it; CI fails)."""
    with started_cluster() as cluster:
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
    with serving(storage) as server:
        yield server
