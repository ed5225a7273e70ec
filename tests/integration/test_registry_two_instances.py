"""Two ``atlas-ci serve`` processes on one PostgreSQL database and one data directory.

What a load-balanced deployment relies on: version numbers stay gap-free across instances,
either instance serves what the other stored, and losing one (SIGKILL) mid-upload loses
nothing committed while the client's retry through the other finishes the upload.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults import Fault, FaultProxy
from tests.integration.registry_api import api, create_artifact, create_version, put_file
from tests.postgres import fresh_database
from tests.registry_proc import REPO_ROOT, RegistryProcess
from tests.upload_harness import box_build, file_sha256, run_upload_cli, versions

TOKEN = "two-instances-token-5d1e"


@pytest.fixture
def pair(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[RegistryProcess, RegistryProcess]]:
    database = fresh_database(request, "postgresql")
    data = tmp_path / "shared-data"
    with (
        RegistryProcess(data, TOKEN, database=database) as one,
        RegistryProcess(data, TOKEN, database=database) as two,
    ):
        yield one, two


def test_concurrent_uploads_over_two_instances_get_gap_free_versions_and_intact_files(
    pair: tuple[RegistryProcess, RegistryProcess],
) -> None:
    one, two = pair
    create_artifact(one)
    bodies = {i: os.urandom(1024 + 997 * i) for i in range(32)}

    def upload(i: int) -> int:
        # The version is made on one instance, its file PUT through the other.
        made_on, put_on = (one, two) if i % 2 else (two, one)
        version = create_version(made_on, build_id=i)
        path = version["upload_path"].replace(made_on.url, put_on.url)
        response = put_file(path, bodies[i])
        assert response.status_code in (200, 201), response.text
        number: int = version["version"]
        return number

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        numbers = list(pool.map(upload, range(32)))

    assert sorted(numbers) == list(range(1, 33))
    for registry in (one, two):
        found = versions(registry, "u/n/t")
        assert sorted(v["version"] for v in found) == list(range(1, 33))
        assert {v["state"] for v in found} == {"ready"}
    for i, number in enumerate(numbers):
        expected = hashlib.sha256(bodies[i]).hexdigest()
        assert file_sha256(one, "u/n/t", number) == expected
        assert file_sha256(two, "u/n/t", number) == expected


def _search(registry: RegistryProcess) -> list[int]:
    """``atlas-ci search --version any`` through ``registry``: the version numbers."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "atlas_ci",
            "search",
            "--artifact",
            "u/n",
            "--artifact-type",
            "vagrant.box",
            "--version",
            "any",
            "--atlas-url",
            registry.url,
            "--json",
        ],
        env={**os.environ, "ATLAS_TOKEN": TOKEN, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return sorted(v["version"] for v in json.loads(proc.stdout)["versions"])


def test_sigkill_mid_put_loses_nothing_and_the_retry_through_the_other_instance_finishes(
    pair: tuple[RegistryProcess, RegistryProcess], tmp_path: Path
) -> None:
    one, two = pair
    create_artifact(one, "u", "n")
    committed = {}
    for i in range(3):
        version = create_version(one, "u/n/vagrant.box", build_id=i)
        body = os.urandom(50_000 + i)
        assert put_file(version["upload_path"], body).status_code in (200, 201)
        committed[version["version"]] = hashlib.sha256(body).hexdigest()

    manifest_dir = tmp_path / "build"
    manifest_dir.mkdir()
    _, sha = box_build(manifest_dir, "web", 4 << 20, seed=14)
    with FaultProxy(one.url) as balancer:
        # The first PUT trickles through, so the kill lands while instance one receives it.
        balancer.add("PUT", r"^/binstore/", Fault("slow", rate=256 * 1024))
        killed = threading.Event()

        def kill_one_mid_put() -> None:
            assert balancer.slow_started.wait(60), "the PUT never started"
            deadline = time.monotonic() + 30
            while not list((one.data / "tmp").glob("upload-*")):
                assert time.monotonic() < deadline, "instance one never began the upload"
                time.sleep(0.01)
            assert one.process is not None
            balancer.set_upstream(two.url)  # the load balancer marks one down ...
            one.process.send_signal(signal.SIGKILL)  # ... as it dies
            killed.set()

        killer = threading.Thread(target=kill_one_mid_put)
        killer.start()
        outcome = run_upload_cli(
            [
                "--artifact",
                "u/n",
                "--atlas-url",
                balancer.url,
                "--retries",
                "5",
                "--max-wait",
                "1",
                "--timeout",
                "30",
                "--json",
            ],
            {"ATLAS_TOKEN": TOKEN},
            manifest_dir,
        )
        killer.join(timeout=60)
        assert killed.is_set()
    assert one.wait() == -signal.SIGKILL
    assert outcome.code == 0, outcome.stderr
    number = outcome.result["version"]
    assert outcome.result["builds"][0]["file"]["sha256"] == sha
    assert file_sha256(two, "u/n/vagrant.box", number) == sha
    for old, digest in committed.items():  # nothing committed before the kill is lost
        assert file_sha256(two, "u/n/vagrant.box", old) == digest
    assert [v["state"] for v in versions(two, "u/n/vagrant.box")] == ["ready"] * 4

    # The dead instance's half upload stays in tmp/, unlocked, until a server starts.
    leftovers = list((two.data / "tmp").glob("upload-*"))
    assert leftovers
    one.start()
    assert not any(p.exists() for p in leftovers)
    assert _search(one) == _search(two) == sorted([*committed, number])
    response = api(one, "GET", f"/api/v1/artifacts/u/n/vagrant.box/{number}/file")
    assert hashlib.sha256(response.content).hexdigest() == sha
