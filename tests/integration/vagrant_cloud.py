"""Real Packer 1.6.6 and real Vagrant 2.3.4 against a running registry's Vagrant Cloud API.

Shared by ``test_vagrant_cloud_cli.py`` and ``test_vagrant_cloud_packer.py``: one registry per
backend and module (the clients take seconds a run; each flow runs once per backend), the
accounts every flow uses, and the two clients run in a temporary home with no network beyond
127.0.0.1 (``VAGRANT_SERVER_URL`` and ``vagrant_cloud_url`` point at the registry).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.artifacts import make_box
from tests.integration.registry_admin import admin, new_token
from tests.postgres import fresh_database
from tests.registry_proc import RegistryProcess

TIMEOUT = 10
CLIENT_TIMEOUT = 300


def tool_or_skip(name: str) -> str:
    """The path of ``name``; under CI a missing tool fails the test instead of skipping it."""
    path = shutil.which(name)
    if path is not None:
        return path
    if os.environ.get("CI"):
        pytest.fail(f"{name} is not installed; CI must install it (apt-get install {name})")
    pytest.skip(f"{name} is not installed (CI installs it and runs this test)")


@dataclasses.dataclass
class Team:
    """A registry with organization ``acme`` and its people: ``writer`` (write member),
    ``reader`` (read member, read-only token) and ``outsider`` (no membership)."""

    registry: RegistryProcess
    writer: str
    reader: str
    outsider: str
    home: Path

    @property
    def api(self) -> str:
        return self.registry.url + "/api/v1"

    def get(self, path: str, token: str | None = None) -> requests.Response:
        """``GET <registry>/api/v1<path>`` with ``token`` as Bearer (None: anonymous)."""
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        return requests.get(self.api + path, headers=headers, timeout=TIMEOUT)

    def box(self, tag: str) -> dict[str, Any]:
        """The box ``tag`` as the administrator sees it (asserts it exists)."""
        response = self.get(f"/box/{tag}", self.registry.token)
        assert response.status_code == 200, response.text
        box: dict[str, Any] = response.json()
        return box

    def catalog(self, tag: str) -> dict[str, Any]:
        """What ``vagrant box add`` reads."""
        response = requests.get(
            f"{self.registry.url}/{tag}",
            headers={"Authorization": f"Bearer {self.registry.token}"},
            timeout=TIMEOUT,
        )
        assert response.status_code == 200, response.text
        catalog: dict[str, Any] = response.json()
        return catalog


def team_registry(request: pytest.FixtureRequest, tmp: Path) -> Iterator[Team]:
    """A started registry on ``request.param``'s backend with the :class:`Team` accounts."""
    database = fresh_database(request, request.param)
    with RegistryProcess(tmp / "registry-data", database=database) as registry:
        admin(registry, "org", "create", "acme")
        writer = new_token(registry, "wanda")
        reader = new_token(registry, "deploy", "--read-only")
        outsider = new_token(registry, "mallory")
        admin(registry, "org", "add-member", "acme", "wanda", "--role", "write")
        admin(registry, "org", "add-member", "acme", "deploy", "--role", "read")
        home = tmp / "home"
        home.mkdir()
        yield Team(registry, writer, reader, outsider, home)
        log = registry.stderr_text()
        for secret in (writer, reader, outsider, registry.token):
            assert secret not in log, "a token reached the server's log"


def a_box(directory: Path, name: str, provider: str = "virtualbox") -> Path:
    """A real (small) ``.box``: a gzip'd tar with ``metadata.json`` naming ``provider``."""
    return make_box(directory / f"{name}.box", provider=provider, disk=2048)


def vagrant(
    team: Team, token: str | None, *args: str, check: bool = True, home: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``vagrant ARGS`` with the registry as its server and ``token`` as its cloud token."""
    binary = tool_or_skip("vagrant")
    home = home or team.home
    home.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "VAGRANT_HOME": str(home / "vagrant.d"),
        "VAGRANT_SERVER_URL": team.registry.url,
        "VAGRANT_CHECKPOINT_DISABLE": "1",
        "VAGRANT_NO_COLOR": "1",
        "VAGRANT_DEFAULT_PROVIDER": "virtualbox",
    }
    if token is not None:
        env["VAGRANT_CLOUD_TOKEN"] = token
    done = subprocess.run(
        [binary, *args],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    if check:
        assert done.returncode == 0, (args, done.stdout, done.stderr)
    if token is not None:
        assert "Traceback" not in done.stderr and ".rb:" not in done.stderr, done.stderr
    return done


def packer(
    team: Team,
    token: str,
    workdir: Path,
    box: Path,
    tag: str,
    version: str,
    **options: object,
) -> subprocess.CompletedProcess[str]:
    """``packer build`` of a ``file`` build whose ``artifice`` artifact is ``box``, published
    by the ``vagrant-cloud`` post-processor to ``tag`` ``version`` (``options`` added to it)."""
    binary = tool_or_skip("packer")
    workdir.mkdir(parents=True, exist_ok=True)
    template = {
        "builders": [{"type": "file", "target": str(workdir / "built.txt"), "content": "built"}],
        "post-processors": [
            [
                {"type": "artifice", "files": [str(box)]},
                {
                    "type": "vagrant-cloud",
                    "vagrant_cloud_url": team.api,
                    "box_tag": tag,
                    "version": version,
                    **options,
                },
            ]
        ],
    }
    (workdir / "template.json").write_text(json.dumps(template))
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir),
        "PACKER_CACHE_DIR": str(workdir / "cache"),
        "CHECKPOINT_DISABLE": "1",
        "PACKER_NO_COLOR": "1",
        "VAGRANT_CLOUD_TOKEN": token,
    }
    return subprocess.run(
        [binary, "build", "-color=false", "template.json"],
        env=env,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
