"""Packer-like build outputs made at test time: manifests, boxes, exports, VM directories."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

RUN_UUID = "6f1c0000-0000-0000-0000-000000000001"
ROOT = Path(__file__).resolve().parents[1]


def run_cli(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``python -m atlas_ci ARGS`` in ``cwd`` with a minimal environment plus ``env``."""
    return _run_python(["-m", "atlas_ci", *args], cwd, env, timeout)


def run_entrypoint(
    cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``python entrypoint.py``, the action as the runner starts it, in ``cwd`` with a minimal
    environment plus ``env`` (its ``INPUT_*`` and ``GITHUB_*``)."""
    return _run_python([str(ROOT / "entrypoint.py")], cwd, env, timeout)


def action_env(
    workspace: Path, files: Path, *, url: str, token: str, artifact: str = "acme/web", **inputs: str
) -> dict[str, str]:
    """What the runner hands the action: GITHUB_* (its file commands in ``files``) and an
    INPUT_* for the token, the artifact, the URL and each of ``inputs``."""
    return {
        "GITHUB_ACTIONS": "true",
        "GITHUB_WORKSPACE": str(workspace),
        "GITHUB_OUTPUT": str(files / "output"),
        "GITHUB_STEP_SUMMARY": str(files / "summary"),
        "INPUT_TOKEN": token,
        "INPUT_ARTIFACT": artifact,
        "INPUT_ATLAS_URL": url,
        **{f"INPUT_{name.upper()}": value for name, value in inputs.items()},
    }


def in_a_child(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a child with a generous timeout: a blocked open would hang the suite."""
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _run_python(
    args: list[str], cwd: Path, env: dict[str, str] | None, timeout: float
) -> subprocess.CompletedProcess[str]:
    full_env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(ROOT),
        **(env or {}),
    }
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def write_manifest(directory: Path, builds: list[dict[str, Any]]) -> Path:
    """A ``packer-manifest.json`` whose builds all belong to the last run."""
    for b in builds:
        b.setdefault("packer_run_uuid", RUN_UUID)
        b.setdefault("build_time", 1700000000)
    path = directory / "packer-manifest.json"
    path.write_text(json.dumps({"builds": builds, "last_run_uuid": RUN_UUID}))
    return path


def _tar_bytes(entries: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tf:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def make_box(path: Path, provider: str = "virtualbox", disk: int = 64 * 1024) -> Path:
    """A gzip'd tar like a Vagrant box (uploaded as is)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = json.dumps({"provider": provider}).encode()
    tar = _tar_bytes({"metadata.json": meta, "box-disk001.vmdk": os.urandom(disk)})
    path.write_bytes(gzip.compress(tar, compresslevel=6, mtime=0))
    return path


def make_export(path: Path) -> Path:
    """A plain tar like the docker builder's ``export.tar`` (wrapped in a tar.gz)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_tar_bytes({"etc/hostname": b"web\n", "bin/app": os.urandom(4096)}))
    return path


def make_vm_dir(directory: Path) -> list[str]:
    """A VMware-like output directory; returns the names the manifest lists."""
    (directory / "sub").mkdir(parents=True)
    (directory / "vm.vmx").write_text("config")
    (directory / "disk.vmdk").write_bytes(os.urandom(8192))
    (directory / "sub" / "n.txt").write_text("note")
    (directory / "unlisted.log").write_text("left out")
    base = directory.name
    return [f"{base}/vm.vmx", f"{base}/disk.vmdk", f"{base}/sub/n.txt"]


def amazon_build(name: str = "web") -> dict[str, Any]:
    return {
        "name": name,
        "builder_type": "amazon-ebs",
        "files": None,
        "artifact_id": "us-east-1:ami-1111,us-west-2:ami-2222",
    }


def file_build(name: str, builder: str, artifact_id: str, files: list[str]) -> dict[str, Any]:
    return {
        "name": name,
        "builder_type": builder,
        "artifact_id": artifact_id,
        "files": [{"name": f, "size": 0} for f in files],
    }
