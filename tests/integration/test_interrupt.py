"""SIGTERM / SIGINT in the middle of a PUT to a slow sink: a clean stop, a true last line."""

from __future__ import annotations

import io
import os
import random
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults import Fault, FaultProxy
from tests.registry_proc import RegistryProcess
from tests.upload_harness import (
    ready_duplicates,
    run_upload_cli,
    subprocess_env,
    versions,
    write_manifest,
)

TOKEN = "interrupt-token-93be10"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[RegistryProcess, FaultProxy]]:
    with (
        RegistryProcess(tmp_path / "registry", TOKEN) as registry,
        FaultProxy(registry.url) as proxy,
    ):
        yield registry, proxy


def _docker_build(directory: Path, size: int) -> None:
    """A docker export (plain tar): the upload goes through a temp .tar.gz of ours."""
    export = directory / "export.tar"
    with tarfile.open(export, "w") as tf:
        data = random.Random(7).randbytes(size)  # incompressible: the archive stays big
        info = tarfile.TarInfo("rootfs.img")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    write_manifest(
        directory,
        {
            "name": "app",
            "builder_type": "docker",
            "files": [{"name": "export.tar", "size": export.stat().st_size}],
            "artifact_id": "Container",
        },
    )


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_mid_upload_stops_cleanly_and_says_what_the_registry_holds(
    stack: tuple[RegistryProcess, FaultProxy], tmp_path: Path, sig: int, code: int
) -> None:
    registry, proxy = stack
    work, tmp = tmp_path / "work", tmp_path / "tmp"
    work.mkdir()
    tmp.mkdir()
    # Larger than loopback's socket buffers (up to ~10 MiB both ways): the body cannot be
    # all handed to the kernel when the signal comes, so the file cannot have arrived.
    _docker_build(work, 24 * 1024 * 1024)
    proxy.add("PUT", r"^/binstore/", Fault("slow", rate=128 * 1024))
    args = ["upload", "--artifact", "sig/app", "--atlas-url", proxy.url, "--retries", "0"]
    process = subprocess.Popen(
        [sys.executable, "-m", "atlas_ci", *args],
        cwd=work,
        env=subprocess_env({"ATLAS_TOKEN": TOKEN, "TMPDIR": str(tmp)}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proxy.slow_started.wait(30), "the PUT never started"
        assert list(tmp.glob("atlas-ci-*")), "the archive should be in a temp dir by now"
        process.send_signal(sig)
        _, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == code, stderr
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: interrupted; "), stderr
    assert "sig/app/docker.image version 1 was created but its file did not arrive" in last
    assert "re-run" in last
    assert list(tmp.iterdir()) == [], "temp files left behind"
    assert [(v["version"], v["state"]) for v in versions(registry, "sig/app/docker.image")] == [
        (1, "pending")
    ]

    proxy.clear()
    again = run_upload_cli(
        ["--artifact", "sig/app", "--atlas-url", proxy.url, "--json"], {"ATLAS_TOKEN": TOKEN}, work
    )
    assert again.code == 0, again.stderr
    found = versions(registry, "sig/app/docker.image")
    assert ready_duplicates(found) == 0
    assert [v["state"] for v in found] == ["ready", "pending"]
    assert os.environ.get("ATLAS_TOKEN") != TOKEN  # the in-process run left no trace


def test_sigterm_while_the_version_post_is_in_flight_says_a_version_may_exist(
    stack: tuple[RegistryProcess, FaultProxy], tmp_path: Path
) -> None:
    registry, proxy = stack
    _docker_build(tmp_path, 4096)
    # Forwarded, then held: the registry made the version, the client is still waiting.
    rule = proxy.add("POST", r"^/api/v1/artifacts/[^/]+/[^/]+/[^/]+$", Fault("stall", seconds=30))
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "atlas_ci",
            "upload",
            "--artifact",
            "sig/post",
            "--atlas-url",
            proxy.url,
        ],
        cwd=tmp_path,
        env=subprocess_env({"ATLAS_TOKEN": TOKEN}),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not (rule.fired and versions(registry, "sig/post/docker.image")):
            assert process.poll() is None and time.monotonic() < deadline, "no version POST"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 143, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: interrupted; a version of sig/post/docker.image may have been")
    assert "--version any --pending" in last


@pytest.mark.parametrize("route", ["sendfile", "http-proxy"])
def test_sigterm_once_the_whole_body_was_sent_says_the_file_may_have_arrived(
    stack: tuple[RegistryProcess, FaultProxy], tmp_path: Path, route: str
) -> None:
    """It said "its file did not arrive (pending)" while the registry held it ready. Both
    ways of sending the body: sendfile to a plain http:// URL, and requests' session (used
    for https:// and proxies), here through HTTP_PROXY."""
    registry, proxy = stack
    work = tmp_path / "work"
    work.mkdir()
    _docker_build(work, 256 * 1024)
    # Forwarded whole, stored by the registry, its answer held back: the client waits.
    rule = proxy.add("PUT", r"^/binstore/", Fault("stall", seconds=30))
    env = {"ATLAS_TOKEN": TOKEN}
    url = proxy.url
    if route == "http-proxy":
        env["HTTP_PROXY"], url = proxy.url, registry.url
    args = ["upload", "--artifact", "sig/sent", "--atlas-url", url, "--timeout", "60"]
    process = subprocess.Popen(
        [sys.executable, "-m", "atlas_ci", *args],
        cwd=work,
        env=subprocess_env(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not (
            rule.fired
            and [v["state"] for v in versions(registry, "sig/sent/docker.image")] == ["ready"]
        ):
            assert process.poll() is None and time.monotonic() < deadline, "no stored file"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 143, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: interrupted; "), stderr
    assert "did not arrive" not in last
    assert "sig/sent/docker.image version 1 was created and its whole file was sent" in last
    assert "may have arrived" in last
    check = "atlas-ci search --artifact sig/sent --artifact-type docker.image --version 1 --pending"
    assert check in last and "re-run only if it is still pending" in last
