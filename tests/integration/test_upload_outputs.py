"""The outputs of an upload against a real ``atlas-ci serve``: checked before the first request,
and a failure to write one after the versions are made is never exit 1 (issue 21 §2)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.registry_proc import RegistryProcess
from tests.upload_harness import box_build, subprocess_env, versions

TOKEN = "outputs-token-5c21d9"


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RegistryProcess]:
    with RegistryProcess(tmp_path / "registry", TOKEN) as process:
        yield process


def _upload(
    registry: RegistryProcess, cwd: Path, artifact: str, *extra: str, stdout: object
) -> subprocess.CompletedProcess[str]:
    args = ["upload", "--artifact", artifact, "--atlas-url", registry.url, *extra]
    return subprocess.run(
        [sys.executable, "-m", "atlas_ci", *args],
        cwd=cwd,
        env=subprocess_env({"ATLAS_TOKEN": TOKEN}),
        stdout=stdout,  # type: ignore[arg-type]
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
        check=False,
    )


def _ready(registry: RegistryProcess, slug: str) -> list[tuple[int, str]]:
    return [(v["version"], v["state"]) for v in versions(registry, slug)]


def test_json_to_a_full_disk_is_a_warning_naming_the_version(
    registry: RegistryProcess, tmp_path: Path
) -> None:
    """It was exit 1, internal error (OSError), with version 1 ready."""
    box_build(tmp_path, "web", 4096, seed=1)
    with open("/dev/full", "w") as full:
        proc = _upload(registry, tmp_path, "acme/full", "--json", stdout=full)
    assert proc.returncode == 0, proc.stderr
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr
    warning = [line for line in proc.stderr.splitlines() if line.startswith("warning: ")]
    assert warning == [
        "warning: uploaded acme/full/vagrant.box/1 but the --json line could not be written to "
        "stdout (No space left on device); the versions exist: do not re-run the upload"
    ], proc.stderr
    assert _ready(registry, "acme/full/vagrant.box") == [(1, "ready")]


def test_json_to_a_closed_pipe_is_a_warning_naming_the_version(
    registry: RegistryProcess, tmp_path: Path
) -> None:
    """``atlas-ci upload --json | true``: exit 1 (BrokenPipeError) after version 1 was made."""
    box_build(tmp_path, "web", 4096, seed=2)
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the line is written
    with os.fdopen(write_end, "w") as pipe:
        proc = _upload(registry, tmp_path, "acme/pipe", "--json", stdout=pipe)
    assert proc.returncode == 0, proc.stderr
    assert "Exception ignored" not in proc.stderr and "internal error" not in proc.stderr
    assert "warning: uploaded acme/pipe/vagrant.box/1 but the --json line" in proc.stderr
    assert _ready(registry, "acme/pipe/vagrant.box") == [(1, "ready")]


def test_a_name_dotenv_cannot_carry_is_exit_2_before_the_first_request(
    registry: RegistryProcess, tmp_path: Path
) -> None:
    """A no-break space: versions 1 and 2 were made, then exit 1 (ValueError) in the writer."""
    box_build(tmp_path, "web", 4096, seed=3)
    dotenv = tmp_path / "atlas.env"
    proc = _upload(
        registry, tmp_path, "acme/no\u00a0break", "--dotenv", str(dotenv), stdout=subprocess.PIPE
    )
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: --dotenv cannot carry ATLAS_ARTIFACT='acme/no\\xa0break'")
    assert versions(registry, "acme/no\u00a0break/vagrant.box") == []
    artifact = f"{registry.url}/api/v1/artifacts/acme/no%C2%A0break"
    assert requests.get(artifact, headers=registry.headers, timeout=10).status_code == 404
    assert not dotenv.exists()


def test_a_fifo_as_dotenv_is_exit_2_before_the_first_request(
    registry: RegistryProcess, tmp_path: Path
) -> None:
    """It hung for ever once the versions were made; SIGTERM then said only "interrupted"."""
    box_build(tmp_path, "web", 4096, seed=4)
    fifo = tmp_path / "atlas.env"
    os.mkfifo(fifo)
    proc = _upload(registry, tmp_path, "acme/fifo", "--dotenv", str(fifo), stdout=subprocess.PIPE)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: --dotenv {str(fifo)!r} is a FIFO (named pipe), not a regular file; "
        "give --dotenv the path of a regular file"
    )
    assert versions(registry, "acme/fifo/vagrant.box") == []


def test_dotenv_to_this_process_s_own_stdout_pipe_is_accepted(
    registry: RegistryProcess, tmp_path: Path
) -> None:
    """``--dotenv /dev/stdout`` is a pipe where a pipe is meant: the report goes down it."""
    box_build(tmp_path, "web", 4096, seed=5)
    proc = _upload(
        registry, tmp_path, "acme/stdout", "--dotenv", "/dev/stdout", stdout=subprocess.PIPE
    )
    assert proc.returncode == 0, proc.stderr
    assert "ATLAS_ARTIFACT_ID=acme/stdout/vagrant.box/1\n" in proc.stdout
