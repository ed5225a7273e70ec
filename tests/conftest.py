"""Shared fixtures; helpers live in their own modules (tests/registry_proc.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from atlas_ci.registry.server import Config, RegistryServer
from atlas_ci.registry.storage import Storage
from tests.registry_proc import RegistryProcess


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RegistryProcess]:
    """A running ``atlas-ci serve`` on 127.0.0.1 with its own data dir; stopped afterwards."""
    with RegistryProcess(tmp_path / "registry-data") as process:
        yield process


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RegistryServer]:
    """The registry in this process (token ``tok``), for tests that patch its insides."""
    storage = Storage(tmp_path / "data")
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
