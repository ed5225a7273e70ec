"""Vagrant's box catalog at ``/{user}/{name}``: its shape over HTTP, and real Vagrant adding,
updating and pinning boxes uploaded with ``atlas-ci upload``."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests

from atlas_ci.registry import schema
from atlas_ci.registry.accounts import Accounts
from atlas_ci.registry.boxes import Boxes
from atlas_ci.registry.database import open_database
from atlas_ci.registry.identity import ADMIN
from atlas_ci.registry.server import RegistryServer
from atlas_ci.registry.storage import STEPS
from tests.artifacts import file_build, make_box, run_cli, write_manifest
from tests.box_builds import vagrant_env
from tests.integration.registry_admin import admin, new_token
from tests.integration.registry_api import (
    TIMEOUT,
    api,
    create_artifact,
    create_version,
    publish,
)
from tests.registry_proc import RegistryProcess

VAGRANT = shutil.which("vagrant")


def test_the_catalog_lists_ready_boxes_with_a_provider_newest_first(
    registry: RegistryProcess,
) -> None:
    create_artifact(registry, "acme", "web")
    boxes = "acme/web/vagrant.box"
    publish(registry, b"one", boxes, metadata={"provider": "virtualbox"})
    publish(registry, b"no provider", boxes, metadata={"other": "x"})
    publish(registry, b"no metadata", boxes)
    create_version(registry, boxes, file=True, metadata={"provider": "virtualbox"})  # pending
    create_version(registry, boxes, file=False, metadata={"provider": "virtualbox"})  # no file
    publish(registry, b"libvirt", boxes, metadata={"provider": "libvirt"})
    publish(registry, b"an ami", "acme/web/amazon.ami", metadata={"provider": "aws"})

    response = api(registry, "GET", "/acme/web", headers={"Accept": "application/json"})
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    file_url = registry.url + "/api/v1/artifacts/acme/web/vagrant.box/{}/file"
    assert response.json() == {
        "name": "acme/web",
        "versions": [
            {
                "version": "6",
                "providers": [
                    {
                        "name": "libvirt",
                        "url": file_url.format(6),
                        "checksum_type": "sha256",
                        "checksum": hashlib.sha256(b"libvirt").hexdigest(),
                    }
                ],
            },
            {
                "version": "1",
                "providers": [
                    {
                        "name": "virtualbox",
                        "url": file_url.format(1),
                        "checksum_type": "sha256",
                        "checksum": hashlib.sha256(b"one").hexdigest(),
                    }
                ],
            },
        ],
    }
    head = requests.head(registry.url + "/acme/web", headers=registry.headers, timeout=TIMEOUT)
    assert head.status_code == 200
    assert int(head.headers["Content-Length"]) == len(response.content)
    assert api(registry, "GET", "/acme/nothing").status_code == 404
    assert api(registry, "GET", "/acme/web", headers={"Authorization": ""}).status_code == 200
    # An artifact with no boxes has an empty catalog, which Vagrant reports as such.
    create_artifact(registry, "acme", "empty")
    assert api(registry, "GET", "/acme/empty").json() == {"name": "acme/empty", "versions": []}


def test_the_catalog_and_downloads_accept_a_bearer_token(registry: RegistryProcess) -> None:
    create_artifact(registry, "acme", "web")
    publish(registry, b"box", "acme/web/vagrant.box", metadata={"provider": "virtualbox"})
    bearer = {"Authorization": f"Bearer {registry.token}"}
    catalog = requests.get(registry.url + "/acme/web", headers=bearer, timeout=TIMEOUT)
    assert catalog.status_code == 200
    url = catalog.json()["versions"][0]["providers"][0]["url"]
    assert requests.get(url, headers=bearer, timeout=TIMEOUT).content == b"box"
    assert requests.get(url, timeout=TIMEOUT).status_code == 401
    wrong = {"Authorization": "Bearer not-a-token"}
    assert requests.get(url, headers=wrong, timeout=TIMEOUT).status_code == 401


def test_the_catalog_lists_the_newest_thousand_versions(tmp_path: Path) -> None:
    # 1005 numbered boxes stored by an atlas-ci from before the box model (schema step 5):
    # the server's upgrade lands them as box versions "1" to "1005".
    data = tmp_path / "data"
    data.mkdir()
    db = open_database(None, data)
    schema.migrate(db, STEPS[:5])
    with db.transaction() as conn:
        conn.execute("INSERT INTO artifacts (\"user\", name, created) VALUES ('acme', 'web', 'x')")
        conn.executemany(
            "INSERT INTO versions (user, name, type, version, id, build_id, compile_id, "
            "metadata, file, state, size, sha256, created) "
            "VALUES ('acme', 'web', 'vagrant.box', ?, '', 0, 0, ?, 1, 'ready', 1, ?, 'x')",
            [(n, '{"provider": "virtualbox"}', f"{n:064x}") for n in range(1, 1006)],
        )
    db.close()
    with RegistryProcess(data) as registry:
        versions = api(registry, "GET", "/acme/web").json()["versions"]
    assert [v["version"] for v in versions] == [str(n) for n in range(1005, 5, -1)]


def _vagrant_or_skip() -> str:
    if VAGRANT is not None:
        return VAGRANT
    if os.environ.get("CI"):
        pytest.fail("vagrant is not installed; CI must install it (apt-get install vagrant)")
    pytest.skip("vagrant is not installed (CI installs it and runs this test)")


def _upload(registry: RegistryProcess, workdir: Path, name: str, provider: str) -> int:
    """``atlas-ci upload`` of a fresh .box for ``provider`` to acme/web; the version number."""
    make_box(workdir / "out" / f"{name}.box", provider=provider, disk=4096)
    write_manifest(workdir, [file_build(name, "vagrant", provider, [f"out/{name}.box"])])
    proc = run_cli(
        ["upload", "--artifact", "acme/web", "--atlas-url", registry.url, "--json"],
        workdir,
        {"ATLAS_TOKEN": registry.token},
    )
    assert proc.returncode == 0, proc.stderr
    version: int = json.loads(proc.stdout)["version"]
    return version


def test_real_vagrant_adds_updates_and_pins_boxes(
    registry: RegistryProcess, tmp_path: Path
) -> None:
    vagrant = _vagrant_or_skip()
    # The deploy machine's identity: a read-only token of a read member of the organization.
    admin(registry, "org", "create", "acme")
    read_token = new_token(registry, "deploy", "--read-only")
    admin(registry, "org", "add-member", "acme", "deploy", "--role", "read")
    assert _upload(registry, tmp_path, "vbox", "virtualbox") == 1
    assert _upload(registry, tmp_path, "vbox", "virtualbox") == 2

    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "VAGRANT_HOME": str(tmp_path / "vagrant.d"),
        "VAGRANT_SERVER_URL": registry.url,
        "VAGRANT_CLOUD_TOKEN": read_token,
        "VAGRANT_CHECKPOINT_DISABLE": "1",
        "VAGRANT_NO_COLOR": "1",
    }

    def run(*args: str) -> str:
        done = subprocess.run(
            [vagrant, *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done.stdout

    # Pin the older one, see that it is outdated, take the newest, and a provider's newest.
    assert "Successfully added box 'acme/web' (v1) for 'virtualbox'" in run(
        "box", "add", "acme/web", "--box-version", "1"
    )
    outdated = run("box", "outdated", "--global")
    assert "'acme/web' for 'virtualbox' is outdated! Current: 1. Latest: 2" in outdated
    assert _upload(registry, tmp_path, "lv", "libvirt") == 3  # another build: its own version
    assert "(v2) for 'virtualbox'" in run("box", "add", "acme/web", "--provider", "virtualbox")
    assert "(v3) for 'libvirt'" in run("box", "add", "acme/web", "--provider", "libvirt")
    listed = run("box", "list").splitlines()
    assert sorted(listed) == [
        "acme/web (libvirt, 3)",
        "acme/web (virtualbox, 1)",
        "acme/web (virtualbox, 2)",
    ]
    # What Vagrant asked for: HEAD and GET of the catalog, then each file, with the token
    # (the artifact is private: without it every one of these would have been 401).
    log = registry.stderr_text()
    for line in (
        "HEAD /acme/web 200",
        "GET /acme/web 200",
        "GET /api/v1/artifacts/acme/web/vagrant.box/1/file 200",
        "GET /api/v1/artifacts/acme/web/vagrant.box/3/file 200",
    ):
        assert line in log
    assert read_token not in log
    tokens: list[dict[str, Any]] = json.loads(
        admin(registry, "token", "list", "--user", "deploy", "--json").stdout
    )
    assert tokens[0]["last_used"] is not None


def _upload_named(
    registry: RegistryProcess, workdir: Path, provider: str, version: str
) -> subprocess.CompletedProcess[str]:
    """``atlas-ci upload`` of a fresh .box for ``provider`` with metadata ``version``."""
    make_box(workdir / "out" / f"{provider}.box", provider=provider, disk=4096)
    write_manifest(workdir, [file_build(provider, "vagrant", provider, [f"out/{provider}.box"])])
    args = ["upload", "--artifact", "acme/web", "--atlas-url", registry.url, "--json"]
    return run_cli(
        [*args, "--metadata", f"version={version}"],
        workdir,
        {"ATLAS_TOKEN": registry.token},
    )


def test_builds_of_one_version_make_one_box_version_real_vagrant_pins(
    registry: RegistryProcess, tmp_path: Path
) -> None:
    vagrant = _vagrant_or_skip()
    for provider, version in [
        ("virtualbox", "0.9.0"),
        ("virtualbox", "1.0.0"),
        ("libvirt", "1.0.0"),
    ]:
        done = _upload_named(registry, tmp_path, provider, version)
        assert done.returncode == 0, done.stderr
    # The same provider in that version again: refused before its file is sent, nothing made.
    again = _upload_named(registry, tmp_path, "libvirt", "1.0.0")
    assert again.returncode == 5, again.stderr
    assert "box version 1.0.0 of acme/web already has provider libvirt" in again.stderr
    atlas_versions = api(
        registry, "GET", "/api/v1/artifacts/acme/web/vagrant.box/search", params={"version": "any"}
    ).json()["versions"]
    assert [v["version"] for v in atlas_versions] == [3, 2, 1]

    catalog = api(registry, "GET", "/acme/web").json()
    assert [(v["version"], [p["name"] for p in v["providers"]]) for v in catalog["versions"]] == [
        ("1.0.0", ["libvirt", "virtualbox"]),
        ("0.9.0", ["virtualbox"]),
    ]
    libvirt = catalog["versions"][0]["providers"][0]
    file = requests.get(libvirt["url"], headers=registry.headers, timeout=TIMEOUT)
    assert hashlib.sha256(file.content).hexdigest() == libvirt["checksum"]

    env = vagrant_env(tmp_path, registry.url, registry.token)
    for provider in ("libvirt", "virtualbox"):
        added = subprocess.run(
            [vagrant, "box", "add", "acme/web", "--box-version", "~> 1.0", "--provider", provider],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert added.returncode == 0, (added.stdout, added.stderr)
        assert f"Successfully added box 'acme/web' (v1.0.0) for '{provider}'" in added.stdout


def test_a_whole_get_of_a_box_file_counts_one_download(server: RegistryServer) -> None:
    headers = {"X-Atlas-Token": "tok"}
    base = server.url + "/api/v1/artifacts"
    assert requests.post(
        base,
        json={"artifact": {"username": "acme", "name": "web"}},
        headers=headers,
        timeout=TIMEOUT,
    ).ok
    for slug in ("acme/web/vagrant.box", "acme/web/amazon.ami"):
        body = {"artifact_version": {"file": True, "metadata": {"provider": "virtualbox"}}}
        made = requests.post(f"{base}/{slug}", json=body, headers=headers, timeout=TIMEOUT).json()
        assert requests.put(made["upload_path"], data=b"a box", timeout=TIMEOUT).ok
    # One kept-alive connection: its requests are served one after the other, so once the
    # last answer is here the downloads before it were counted (after each file went out).
    with requests.Session() as session:
        for method, path in [
            ("GET", "acme/web/vagrant.box/1/file"),
            ("GET", "acme/web/vagrant.box/file"),
            ("HEAD", "acme/web/vagrant.box/1/file"),  # not a download
            ("GET", "acme/web/amazon.ami/1/file"),  # not a box
            ("GET", "acme/web"),
        ]:
            got = session.request(method, f"{base}/{path}", headers=headers, timeout=TIMEOUT)
            assert got.status_code == 200
    boxes = Boxes(server.storage, Accounts(server.storage))
    assert boxes.get_box(ADMIN, "acme", "web").downloads == 2


def test_an_atlas_box_with_a_version_vagrant_cannot_read_is_422(registry: RegistryProcess) -> None:
    create_artifact(registry, "acme", "web")
    body = {"artifact_version": {"file": True, "metadata": {"version": "v1", "provider": "vbox"}}}
    refused = api(registry, "POST", "/api/v1/artifacts/acme/web/vagrant.box", json=body)
    assert refused.status_code == 422
    assert "metadata version 'v1' is not a version Vagrant accepts" in refused.json()["errors"][0]
    other_type = api(registry, "POST", "/api/v1/artifacts/acme/web/amazon.ami", json=body)
    assert other_type.status_code == 201  # only boxes are box versions
