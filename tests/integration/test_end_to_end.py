"""The real ``atlas-ci`` commands against the real registry over 127.0.0.1."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import requests

from tests.artifacts import (
    amazon_build,
    file_build,
    make_box,
    make_export,
    make_vm_dir,
    run_cli,
    write_manifest,
)
from tests.registry_proc import RegistryProcess


def cli(reg: RegistryProcess, args: list[str], cwd: Path, **env: str) -> dict[str, Any]:
    proc = run_cli(
        [*args, "--atlas-url", reg.url, "--json"], cwd, {"ATLAS_TOKEN": reg.token, **env}
    )
    assert proc.returncode == 0, proc.stderr
    assert reg.token not in proc.stdout + proc.stderr
    parsed: dict[str, Any] = json.loads(proc.stdout)
    return parsed


def search(reg: RegistryProcess, cwd: Path, slug: str, atype: str, *extra: str) -> list[Any]:
    """``atlas-ci search --json``; the versions found ([] when none matched: exit 5)."""
    args = ["search", "--artifact", slug, "--artifact-type", atype, "--json"]
    proc = run_cli([*args, "--atlas-url", reg.url, *extra], cwd, {"ATLAS_TOKEN": reg.token})
    assert proc.returncode in (0, 5), proc.stderr
    versions: list[Any] = json.loads(proc.stdout)["versions"] if proc.stdout else []
    return versions


def download(reg: RegistryProcess, slug_type: str, version: int | None = None) -> bytes:
    tail = f"{version}/file" if version is not None else "file"
    resp = requests.get(
        f"{reg.url}/api/v1/artifacts/{slug_type}/{tail}",
        headers={"X-Atlas-Token": reg.token},
        timeout=30,
    )
    resp.raise_for_status()
    return resp.content


def test_four_artifact_kinds_in_one_run(registry: RegistryProcess, tmp_path: Path) -> None:
    box = make_box(tmp_path / "out-vbox" / "web.box")
    export = make_export(tmp_path / "out-docker" / "export.tar")
    vm_files = make_vm_dir(tmp_path / "out-vmware")
    write_manifest(
        tmp_path,
        [
            amazon_build("ami"),
            file_build("vbox", "virtualbox-iso", "virtualbox", ["out-vbox/web.box"]),
            file_build("docker", "docker", "Container", ["out-docker/export.tar"]),
            file_build("vmware", "vmware-iso", "VM", vm_files),
        ],
    )
    # Packer ran the post-processor once per build, each with its own config: so do we.
    ami = cli(registry, ["upload", "--artifact", "acme/ami", "--build", "ami"], tmp_path)
    vbox = cli(registry, ["upload", "--artifact", "acme/box", "--build", "vbox"], tmp_path)
    dock = cli(registry, ["upload", "--artifact", "acme/app", "--build", "docker"], tmp_path)
    vm = cli(
        registry,
        ["upload", "--artifact", "acme/vm", "--build", "vmware", "--artifact-type", "vmware.image"],
        tmp_path,
    )
    assert [r["id"] for r in (ami, vbox, dock, vm)] == [
        "acme/ami/amazon.ami/1",
        "acme/box/vagrant.box/1",
        "acme/app/docker.image/1",
        "acme/vm/vmware.image/1",
    ]
    assert download(registry, "acme/box/vagrant.box", 1) == box.read_bytes()
    assert vbox["builds"][0]["file"]["sha256"] == hashlib.sha256(box.read_bytes()).hexdigest()
    with tarfile.open(
        fileobj=io.BytesIO(download(registry, "acme/app/docker.image")), mode="r:gz"
    ) as tf:
        assert tf.getnames() == ["export.tar"]
        inner = tf.extractfile("export.tar")
        assert inner is not None
        assert inner.read() == export.read_bytes()
    vm_bytes = download(registry, "acme/vm/vmware.image", 1)
    assert hashlib.sha256(vm_bytes).hexdigest() == vm["builds"][0]["file"]["sha256"]
    with tarfile.open(fileobj=io.BytesIO(vm_bytes), mode="r:gz") as tf:
        assert tf.getnames() == ["disk.vmdk", "sub", "sub/n.txt", "vm.vmx"]

    versions = search(
        registry, tmp_path, "acme/ami", "amazon.ami", "--metadata", "region.us-west-2=ami-2222"
    )
    assert [v["version"] for v in versions] == [1]
    assert versions[0]["metadata"] == {
        "region.us-east-1": "ami-1111",
        "region.us-west-2": "ami-2222",
    }


def test_all_builds_of_the_last_run_one_version_each(
    registry: RegistryProcess, tmp_path: Path
) -> None:
    make_box(tmp_path / "a" / "one.box")
    make_box(tmp_path / "b" / "two.box", provider="libvirt")
    write_manifest(
        tmp_path,
        [
            file_build("one", "virtualbox-iso", "virtualbox", ["a/one.box"]),
            file_build("two", "qemu", "libvirt", ["b/two.box"]),
        ],
    )
    out = cli(registry, ["upload", "--artifact", "acme/boxes"], tmp_path, ATLAS_BUILD_ID="7")
    assert [(b["build"], b["version"]) for b in out["builds"]] == [("one", 1), ("two", 2)]
    assert out["version"] == 2
    for provider, version in (("virtualbox", 1), ("libvirt", 2)):
        found = search(
            registry,
            tmp_path,
            "acme/boxes",
            "vagrant.box",
            "--metadata",
            f"provider={provider}",
            "--build",
            "7",
        )
        assert [v["version"] for v in found] == [version]


def test_search_by_version_any_and_number(registry: RegistryProcess, tmp_path: Path) -> None:
    write_manifest(tmp_path, [amazon_build()])
    for _ in range(3):
        cli(registry, ["upload", "--artifact", "acme/web"], tmp_path)

    def numbers(*extra: str) -> list[int]:
        return [v["version"] for v in search(registry, tmp_path, "acme/web", "amazon.ami", *extra)]

    assert numbers() == [3]
    assert sorted(numbers("--version", "any")) == [1, 2, 3]
    assert numbers("--version", "2") == [2]
    assert numbers("--version", "9") == []


def test_dry_run_creates_nothing(registry: RegistryProcess, tmp_path: Path) -> None:
    box = make_box(tmp_path / "out" / "web.box")
    write_manifest(tmp_path, [file_build("vbox", "virtualbox-iso", "virtualbox", ["out/web.box"])])
    out = cli(registry, ["upload", "--artifact", "acme/dry", "--dry-run"], tmp_path)
    assert out["dry_run"] is True
    assert out["version"] is None
    assert out["builds"][0]["file"]["sha256"] == hashlib.sha256(box.read_bytes()).hexdigest()
    resp = requests.get(
        f"{registry.url}/api/v1/artifacts/acme/dry",
        headers={"X-Atlas-Token": registry.token},
        timeout=10,
    )
    assert resp.status_code == 404


def test_wrong_token_is_exit_4_and_creates_nothing(
    registry: RegistryProcess, tmp_path: Path
) -> None:
    write_manifest(tmp_path, [amazon_build()])
    proc = run_cli(
        ["upload", "--artifact", "acme/web", "--atlas-url", registry.url],
        tmp_path,
        {"ATLAS_TOKEN": "wrong-token-value"},
    )
    assert proc.returncode == 4
    assert proc.stderr.strip().splitlines()[-1].startswith("error: authentication failed")
    assert "wrong-token-value" not in proc.stderr


def test_data_survives_a_restart(registry: RegistryProcess, tmp_path: Path) -> None:
    box = make_box(tmp_path / "out" / "web.box")
    write_manifest(tmp_path, [file_build("vbox", "virtualbox-iso", "virtualbox", ["out/web.box"])])
    cli(registry, ["upload", "--artifact", "acme/keep"], tmp_path)
    registry.restart()
    assert download(registry, "acme/keep/vagrant.box") == box.read_bytes()
    again = cli(registry, ["upload", "--artifact", "acme/keep"], tmp_path)
    assert again["version"] == 2


def test_bad_dotenv_path_stops_before_anything_is_created(
    registry: RegistryProcess, tmp_path: Path
) -> None:
    write_manifest(tmp_path, [amazon_build()])
    proc = run_cli(
        [
            "upload",
            "--artifact",
            "acme/env",
            "--atlas-url",
            registry.url,
            "--dotenv",
            str(tmp_path / "no-such-dir" / "atlas.env"),
        ],
        tmp_path,
        {"ATLAS_TOKEN": registry.token},
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: --dotenv")
    resp = requests.get(
        f"{registry.url}/api/v1/artifacts/acme/env",
        headers={"X-Atlas-Token": registry.token},
        timeout=10,
    )
    assert resp.status_code == 404  # not even the artifact was created


def test_dotenv_report_for_gitlab(registry: RegistryProcess, tmp_path: Path) -> None:
    write_manifest(tmp_path, [amazon_build()])
    cli(registry, ["upload", "--artifact", "acme/env", "--dotenv", "atlas.env"], tmp_path)
    lines = (tmp_path / "atlas.env").read_text().splitlines()
    assert "ATLAS_VERSION=1" in lines
    assert "ATLAS_ARTIFACT_ID=acme/env/amazon.ami/1" in lines
