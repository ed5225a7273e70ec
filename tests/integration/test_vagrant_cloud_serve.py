"""``to: vagrant-cloud`` against a real ``atlas-ci serve`` (SQLite and PostgreSQL): the action
publishes a virtualbox and a libvirt build of one manifest as one box version, released once,
real Vagrant adds each by ``--box-version '~> 1.0'``, and a re-run after a failure at each
step (a fault proxy in front of the registry) finishes the job and creates nothing twice."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import requests

from tests.artifacts import action_env, run_cli, run_entrypoint
from tests.box_builds import two_builds, vagrant_env, vagrant_or_skip
from tests.faults import Fault, FaultProxy
from tests.registry_proc import RegistryProcess

TIMEOUT = 30
STEPS = {
    "token check": ("GET", "/api/v1/authenticate$"),
    "box read": ("GET", "/api/v1/box/acme/web$"),
    "box creation": ("POST", "/api/v1/boxes$"),
    "version creation": ("POST", "/versions$"),
    "provider creation": ("POST", "/providers$"),
    "upload preparation": ("GET", "/upload/direct$"),
    "box upload": ("PUT", "/binstore/"),
    "upload confirmation": ("PUT", "/upload/direct/complete/"),
    "release": ("PUT", "/release$"),
}
FAULTS = {
    "answer lost": Fault("reset_after"),  # processed; the client never hears of it
    "503": Fault("status", status=503),  # nothing processed
}


def box_of(registry: RegistryProcess) -> dict[str, object]:
    """The box as the registry's Vagrant Cloud API shows it."""
    answer = requests.get(
        f"{registry.url}/api/v1/box/acme/web", headers=registry.headers, timeout=TIMEOUT
    )
    assert answer.status_code == 200, answer.text
    box: dict[str, object] = answer.json()
    return box


def published(registry: RegistryProcess) -> dict[str, object]:
    """Versions -> status and provider -> checksum, as the API lists them."""
    versions = box_of(registry)["versions"]
    assert isinstance(versions, list)
    return {
        v["version"]: (v["status"], {p["name"]: p["checksum"] for p in v["providers"]})
        for v in versions
    }


def test_the_action_publishes_two_providers_released_once_and_vagrant_adds_them(
    registry: RegistryProcess, tmp_path: Path
) -> None:
    binary = vagrant_or_skip()
    workspace, files = tmp_path / "ws", tmp_path / "files"
    workspace.mkdir()
    files.mkdir()
    sums = two_builds(workspace)
    with FaultProxy(registry.url) as proxy:  # no fault: it shows the requests, in order
        env = action_env(
            workspace,
            files,
            url=f"{proxy.url}/api/v1",
            token=registry.token,
            to="vagrant-cloud",
            version="1.0.0",
            version_description="two providers",
        )
        proc = run_entrypoint(workspace, env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        targets = [(seen.method, seen.target.split("?")[0]) for seen in proxy.seen]
    written = (files / "output").read_text().splitlines()
    assert "version=1.0.0" in written and "id=acme/web/1.0.0/libvirt" in written
    log = [line for line in proc.stdout.splitlines() if not line.startswith("::add-mask::")]
    assert registry.token not in "\n".join(log) + proc.stderr
    assert "/binstore/" not in proc.stdout + proc.stderr
    assert published(registry) == {"1.0.0": ("active", sums)}
    releases = [i for i, (m, t) in enumerate(targets) if t.endswith("/release")]
    box_puts = [i for i, (m, t) in enumerate(targets) if t.startswith("/binstore/")]
    assert len(releases) == 1 and len(box_puts) == 2 and max(box_puts) < releases[0]

    env = vagrant_env(tmp_path, registry.url, registry.token)
    for provider in ("virtualbox", "libvirt"):
        done = subprocess.run(
            [binary, "box", "add", "acme/web", "--box-version", "~> 1.0", "--provider", provider],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"Successfully added box 'acme/web' (v1.0.0) for '{provider}'" in done.stdout


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("step", list(STEPS))
def test_a_rerun_after_a_failure_at_each_step_creates_nothing_twice(
    registry: RegistryProcess, tmp_path: Path, step: str, fault: str
) -> None:
    sums = two_builds(tmp_path)
    args = ["upload", "--to", "vagrant-cloud", "--artifact", "acme/web", "--box-version"]
    args += ["1.0.0", "--retries", "0", "--debug"]
    with FaultProxy(registry.url) as proxy:
        method, path = STEPS[step]
        rule = proxy.add(method, path, FAULTS[fault])
        env = {"VAGRANT_CLOUD_TOKEN": registry.token}
        first = run_cli([*args, "--atlas-url", f"{proxy.url}/api/v1"], tmp_path, env)
        print(f"{step}, {fault}: first run exit {first.returncode}")
        assert rule.fired == 1
        assert first.returncode in (0, 6), first.stderr
        second = run_cli([*args, "--atlas-url", f"{proxy.url}/api/v1"], tmp_path, env)
        assert second.returncode == 0, second.stderr
        posts = [s.target.split("?")[0] for s in proxy.seen if s.method == "POST"]
    for proc in (first, second):
        assert registry.token not in proc.stdout + proc.stderr
        assert "/binstore/" not in proc.stderr and "/complete/" not in proc.stderr
    assert published(registry) == {"1.0.0": ("active", sums)}
    # Each creation asked once, but for one refused before it was processed (the 503).
    refused = fault == "503" and method == "POST"
    expected = {
        "/api/v1/boxes": 1,
        "/api/v1/box/acme/web/versions": 1,
        "/api/v1/box/acme/web/version/1.0.0/providers": 2,
    }
    for target, count in expected.items():
        extra = 1 if refused and target.endswith(path.strip("$")) else 0
        assert posts.count(target) == count + extra, (target, posts)
