"""Shared fixtures; helpers live in their own modules (tests/registry_proc.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.registry_proc import RegistryProcess


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RegistryProcess]:
    """A running ``atlas-ci serve`` on 127.0.0.1 with its own data dir; stopped afterwards."""
    with RegistryProcess(tmp_path / "registry-data") as process:
        yield process
