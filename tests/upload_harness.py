"""Run ``atlas-ci upload`` against a registry (through a fault proxy) and check what it left.

``run_upload_cli`` calls the real CLI entry point in this process (argument parsing, the
error boundary, exit codes, stderr) so hundreds of runs fit in seconds; the redactor's
memory is cleared before each run, as a fresh process would start. Tests that need a real
process (signals, the hostile corpus) use ``run_upload_subprocess``.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import random
import subprocess
import sys
import tarfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from atlas_ci import redaction
from atlas_ci.cli import main as cli_main
from tests.registry_proc import RegistryProcess

REPO_ROOT = Path(__file__).resolve().parents[1]
RUN_UUID = "fault-run-0001"


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str

    @property
    def result(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.stdout)
        return parsed

    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("error: ")]


@contextlib.contextmanager
def _environ(env: Mapping[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    try:
        for key in ("ATLAS_TOKEN", "ATLAS_ADDRESS", "RUNNER_DEBUG", "ATLAS_TLS_NOVERIFY"):
            os.environ.pop(key, None)
        for key in ("ATLAS_CAFILE", "ATLAS_CAPATH", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"):
            os.environ.pop(key, None)
            os.environ.pop(key.lower(), None)
        os.environ.update(env)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def run_upload_cli(args: list[str], env: Mapping[str, str], cwd: Path) -> Outcome:
    """``atlas-ci upload ARGS`` in this process, with ``env`` as its environment additions."""
    with redaction._lock:
        redaction._secrets.clear()
    out, err = io.StringIO(), io.StringIO()
    previous = Path.cwd()
    os.chdir(cwd)
    try:
        with (
            _environ(env),
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
        ):
            code = cli_main(["upload", *args])
    finally:
        os.chdir(previous)
    return Outcome(code, out.getvalue(), err.getvalue())


def subprocess_env(extra: Mapping[str, str]) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(REPO_ROOT),
        "HOME": os.environ.get("HOME", "/tmp"),
        **extra,
    }


def run_upload_subprocess(
    args: list[str], env: Mapping[str, str], cwd: Path, timeout: float = 60
) -> Outcome:
    proc = subprocess.run(
        [sys.executable, "-m", "atlas_ci", "upload", *args],
        cwd=cwd,
        env=subprocess_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Outcome(proc.returncode, proc.stdout, proc.stderr)


# --- inputs ---------------------------------------------------------------------------


def make_box(path: Path, size: int, seed: int) -> str:
    """A gzip file (uploaded byte for byte) of about ``size`` bytes; returns its sha256."""
    rng = random.Random(seed)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tf:
        data = rng.randbytes(size)
        info = tarfile.TarInfo("box-disk001.vmdk")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    path.write_bytes(gzip.compress(raw.getvalue(), compresslevel=1, mtime=0))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_manifest(directory: Path, build: dict[str, Any]) -> Path:
    build = {"packer_run_uuid": RUN_UUID, "build_time": 1700000000, **build}
    path = directory / "packer-manifest.json"
    path.write_text(json.dumps({"builds": [build], "last_run_uuid": RUN_UUID}))
    return path


def box_build(directory: Path, name: str, size: int, seed: int) -> tuple[Path, str]:
    """A vagrant build with one box file; returns the manifest and the box's sha256."""
    box = directory / f"{name}.box"
    sha = make_box(box, size, seed)
    manifest = write_manifest(
        directory,
        {
            "name": name,
            "builder_type": "virtualbox-iso",
            "files": [{"name": box.name, "size": box.stat().st_size}],
            "artifact_id": "virtualbox",
        },
    )
    return manifest, sha


def ami_build(directory: Path, name: str, ami: str) -> Path:
    """An amazon build: no file, region metadata, id ``us-east-1:<ami>``."""
    return write_manifest(
        directory,
        {
            "name": name,
            "builder_type": "amazon-ebs",
            "files": None,
            "artifact_id": f"us-east-1:{ami}",
        },
    )


# --- what the registry holds ----------------------------------------------------------


def versions(registry: RegistryProcess, slug: str) -> list[dict[str, Any]]:
    """Every version of ``user/name/type``, pending ones included (empty if no artifact)."""
    response = requests.get(
        f"{registry.url}/api/v1/artifacts/{slug}/search",
        params={"version": "any", "include_pending": "1"},
        headers=registry.headers,
        timeout=10,
    )
    if response.status_code == 404:
        return []
    response.raise_for_status()
    found: list[dict[str, Any]] = response.json()["versions"]
    return found


def file_sha256(registry: RegistryProcess, slug: str, number: int) -> str | None:
    """sha256 of the file stored for version ``number``, downloaded; None if there is none."""
    response = requests.get(
        f"{registry.url}/api/v1/artifacts/{slug}/{number}/file",
        headers=registry.headers,
        timeout=10,
    )
    if response.status_code == 404:
        return None
    response.raise_for_status()
    return hashlib.sha256(response.content).hexdigest()


def honours_idempotency_key(registry: RegistryProcess) -> bool:
    """Whether the registry announces ``Idempotency-Key`` support (atlas-wire §11)."""
    response = requests.get(
        f"{registry.url}/api/v1/authenticate", headers=registry.headers, timeout=10
    )
    tokens = response.headers.get("X-Atlas-Extensions", "").lower().split(",")
    return "idempotency-key" in [t.strip() for t in tokens]


def ready_duplicates(found: list[dict[str, Any]]) -> int:
    """How many ready versions repeat the id and metadata of another ready one."""
    keys = [
        (v["id"], json.dumps(v.get("metadata"), sort_keys=True))
        for v in found
        if v.get("state") == "ready"
    ]
    return len(keys) - len(set(keys))
