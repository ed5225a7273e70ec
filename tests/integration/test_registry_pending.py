"""The registry's include_pending search over HTTP: what the uploader needs to adopt a version."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.integration.registry_api import api, create_artifact, create_version, put_file, search
from tests.registry_proc import RegistryProcess
from tests.upload_harness import subprocess_env


def test_include_pending_lists_pending_with_upload_path_and_says_so(
    registry: RegistryProcess,
) -> None:
    create_artifact(registry)
    create_version(registry, file=False, artifact_id="a")  # v1 ready
    pending = create_version(registry, file=True, artifact_id="b")  # v2 pending

    plain = search(registry, version="any")
    assert [v["version"] for v in plain] == [1]
    assert "state" not in plain[0]

    answer = api(
        registry, "GET", "/api/v1/artifacts/u/n/t/search?version=any&include_pending=1"
    ).json()
    assert answer["pending_listed"] is True
    v2, v1 = answer["versions"]
    assert (v2["version"], v2["state"], v2["upload_path"]) == (2, "pending", pending["upload_path"])
    assert (v1["version"], v1["state"]) == (1, "ready")
    assert "upload_path" not in v1
    latest = api(
        registry, "GET", "/api/v1/artifacts/u/n/t/search?version=latest&include_pending=1"
    ).json()
    assert [v["version"] for v in latest["versions"]] == [2]

    # The upload_path handed back by the search finishes the version.
    assert put_file(v2["upload_path"], b"late file").status_code == 200
    after = api(
        registry, "GET", "/api/v1/artifacts/u/n/t/search?version=any&include_pending=1"
    ).json()
    assert [(v["version"], v["state"]) for v in after["versions"]] == [(2, "ready"), (1, "ready")]
    assert all("upload_path" not in v for v in after["versions"])
    assert pending["upload_path"].rsplit("/", 1)[1] not in registry.stderr_text()


def test_search_cli_pending_shows_state_never_the_upload_path(registry: RegistryProcess) -> None:
    create_artifact(registry)
    pending = create_version(registry, file=True, artifact_id="img")
    secret = pending["upload_path"].rsplit("/", 1)[1]
    base = [sys.executable, "-m", "atlas_ci", "search", "--artifact", "u/n"]
    base += ["--artifact-type", "t", "--atlas-url", registry.url, "--version", "any"]
    env = subprocess_env({"ATLAS_TOKEN": registry.token})
    listed = subprocess.run(
        [*base, "--pending", "--json"], env=env, capture_output=True, text=True, check=False
    )
    assert listed.returncode == 0, listed.stderr
    [version] = json.loads(listed.stdout)["versions"]
    assert (version["version"], version["state"]) == (1, "pending")
    assert "upload_path" not in version
    text = subprocess.run(
        [*base, "--pending"], env=env, capture_output=True, text=True, check=False
    )
    assert "u/n/t/1 (pending) id=img" in text.stderr
    plain = subprocess.run(base, env=env, capture_output=True, text=True, check=False)
    assert plain.returncode == 5 and "no version matches" in plain.stderr
    for out in (listed, text, plain):
        assert secret not in out.stdout + out.stderr
        assert registry.token not in out.stdout + out.stderr
