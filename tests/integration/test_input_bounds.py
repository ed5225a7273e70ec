"""Memory and disk that do not grow with the input: the manifest's parse and a dry run's archives.

A 63 MB manifest of ``{},`` entries is under the 64 MiB byte cap but once took 1.6 GB to
parse; it runs here under a 512 MB address-space limit. A dry run of several builds once
kept every build's archive until the end; a real run deletes each after its upload.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from atlas_ci import archive
from tests.registry_proc import RegistryProcess
from tests.upload_harness import run_upload_cli, subprocess_env

MEMORY_LIMIT = 512 << 20


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def test_a_manifest_of_millions_of_empty_builds_is_refused_within_512_mb(
    tmp_path: Path,
) -> None:
    manifest = tmp_path / "packer-manifest.json"
    with open(manifest, "w") as handle:
        handle.write('{"builds": [')
        handle.write("{}," * (21 << 20))
        handle.write('{}], "last_run_uuid": "x"}')
    assert 60 << 20 < manifest.stat().st_size < 64 << 20
    proc = subprocess.run(
        [sys.executable, "-m", "atlas_ci", "upload", "--artifact", "acme/web", "--dry-run"],
        cwd=tmp_path,
        env=subprocess_env({"ATLAS_TOKEN": "t", "ATLAS_ADDRESS": "http://127.0.0.1:9"}),
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_limit_memory,
        check=False,
    )
    assert proc.returncode == 3, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("error: manifest 'packer-manifest.json' holds more than 1,000,000 JSON")
    assert "remove the builds of old runs" in line


def test_a_real_sized_manifest_still_loads(tmp_path: Path) -> None:
    from atlas_ci.manifest import load_manifest

    box = tmp_path / "web.box"
    box.write_bytes(b"box")
    build: dict[str, Any] = {
        "name": "web",
        "builder_type": "virtualbox-iso",
        "build_time": 1700000000,
        "files": [{"name": "web.box", "size": 3}],
        "artifact_id": "virtualbox",
        "packer_run_uuid": "old",
        "custom_data": {"commit": "0123abcd"},
    }
    runs = [{**build, "packer_run_uuid": f"run-{n}"} for n in range(50_000)]
    text = json.dumps({"builds": runs, "last_run_uuid": "run-49999"})
    (tmp_path / "packer-manifest.json").write_text(text)
    [artifact] = load_manifest("packer-manifest.json", cwd=tmp_path)
    assert artifact.files == (box,)


@pytest.fixture
def registry(tmp_path: Path) -> Any:
    with RegistryProcess(tmp_path / "registry-data") as process:
        yield process


def test_a_dry_run_keeps_one_archive_at_a_time(
    registry: RegistryProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    builds = []
    for name in ("a", "b", "c", "d"):
        out = tmp_path / name
        out.mkdir()
        (out / "disk.vmdk").write_bytes(os.urandom(1 << 20))  # incompressible: ~1 MiB each
        (out / "box.ovf").write_text("<ovf/>")
        builds.append(
            {
                "name": name,
                "builder_type": "virtualbox-iso",
                "artifact_id": "virtualbox",
                "packer_run_uuid": "run",
                "files": [{"name": f"{name}/disk.vmdk"}, {"name": f"{name}/box.ovf"}],
            }
        )
    (tmp_path / "packer-manifest.json").write_text(
        json.dumps({"builds": builds, "last_run_uuid": "run"})
    )
    held: list[int] = []  # bytes in the run's temp dir each time a new archive is made
    real = archive.prepare_payload

    def measured(files: Any, workdir: Path, **kwargs: Any) -> archive.Payload | None:
        payload = real(files, workdir, **kwargs)
        held.append(sum(entry.stat().st_size for entry in workdir.iterdir()))
        return payload

    monkeypatch.setattr(archive, "prepare_payload", measured)
    args = ["--artifact", "acme/web", "--atlas-url", registry.url, "--dry-run", "--json"]
    args += ["--artifact-type", "vagrant.box"]
    outcome = run_upload_cli(args, {"ATLAS_TOKEN": registry.token}, tmp_path)
    assert outcome.code == 0, outcome.stderr
    assert len(outcome.result["builds"]) == 4
    assert len(held) == 4
    assert max(held) < 2 << 20, held  # one ~1 MiB archive at a time, not four
