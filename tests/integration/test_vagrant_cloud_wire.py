"""Real Packer 1.6.6's ``vagrant-cloud`` post-processor and ``atlas-ci upload --to
vagrant-cloud`` against the same recording Vagrant Cloud: the same requests, except where
issue 19 says we do better (a missing box is created; several builds release once).

Packer gets a real ``.box`` from ``artifice`` after a ``file`` build, as vagrant-cloud-wire.md
§5 was observed; nothing here imitates Packer.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.artifacts import make_box, run_cli, write_manifest
from tests.recording_server import Recorded
from tests.vagrant_cloud_recorder import Box, VagrantCloudRecorder

TOKEN = "vc-wire-token-0123456789"
PACKER = shutil.which("packer")


def packer() -> str:
    if PACKER is not None:
        return PACKER
    if os.environ.get("CI"):
        pytest.fail("packer is not installed; CI must install it (apt-get install packer)")
    pytest.skip("packer is not installed (CI installs it and runs this test)")


def run_packer(
    workdir: Path, api: str, builds: dict[str, str], **options: object
) -> subprocess.CompletedProcess[str]:
    """``packer build`` of one ``file`` build per box, each through artifice to vagrant-cloud."""
    template: dict[str, Any] = {
        "builders": [
            {"type": "file", "name": name, "content": name, "target": f"{name}.txt"}
            for name in builds
        ],
        "post-processors": [
            [
                {"type": "artifice", "only": [name], "files": [box]},
                {
                    "type": "vagrant-cloud",
                    "only": [name],
                    "box_tag": "acme/web",
                    "version": "1.0.0",
                    "vagrant_cloud_url": api,
                    **options,
                },
            ]
            for name, box in builds.items()
        ],
    }
    (workdir / "template.json").write_text(json.dumps(template))
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(workdir),
        "CHECKPOINT_DISABLE": "1",
        "VAGRANT_CLOUD_TOKEN": TOKEN,
    }
    return subprocess.run(
        [packer(), "build", "-color=false", "-parallel-builds=1", "template.json"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def run_ours(workdir: Path, api: str, *flags: str) -> subprocess.CompletedProcess[str]:
    args = ["upload", "--to", "vagrant-cloud", "--artifact", "acme/web", "--box-version"]
    args += ["1.0.0", "--atlas-url", api, "--retries", "0", *flags]
    return run_cli(args, workdir, {"VAGRANT_CLOUD_TOKEN": TOKEN})


def boxes_and_manifest(workdir: Path, builds: dict[str, str]) -> None:
    """The boxes (provider from the name, the same bytes for every run of a test) and a
    manifest listing one ``file`` build each."""
    entries = []
    made = workdir.parent / "boxes"
    for name, box in builds.items():
        if not (made / box).exists():
            make_box(made / box, provider=name, disk=4096)
        shutil.copyfile(made / box, workdir / box)
        entries.append(
            {"name": name, "builder_type": "file", "files": [{"name": box}], "artifact_id": box}
        )
    write_manifest(workdir, entries)


_TOKEN_IN_PATH = re.compile(r"/(store|callback|upload)/[0-9a-f]{16}")


def shape(requests: list[Recorded]) -> list[tuple[str, str, object, str | None, str | None]]:
    """What must match: method, path (upload tokens cut), JSON body, Authorization and
    Content-Type."""
    out = []
    for r in requests:
        path = _TOKEN_IN_PATH.sub(r"/\1/<token>", r.path.split("?")[0])
        body: object = json.loads(r.body) if r.method == "POST" else len(r.body)
        out.append(
            (r.method, path, body, r.headers.get("Authorization"), r.headers.get("Content-Type"))
        )
    return out


def run_both(
    tmp_path: Path, builds: dict[str, str], flags: tuple[str, ...] = (), **options: object
) -> tuple[list[Recorded], list[Recorded]]:
    """Packer's requests and ours, each against a fresh recorder that holds box acme/web."""
    seen = []
    for who in ("packer", "ours"):
        workdir = tmp_path / who
        workdir.mkdir()
        boxes_and_manifest(workdir, builds)
        with VagrantCloudRecorder() as srv:
            srv.state.boxes["acme/web"] = Box("acme", "web")
            if who == "packer":
                proc = run_packer(workdir, srv.api, builds, **options)
            else:
                proc = run_ours(workdir, srv.api, *flags)
            assert proc.returncode == 0, proc.stdout + proc.stderr
            assert TOKEN not in proc.stdout + proc.stderr
            seen.append(srv.requests)
    return seen[0], seen[1]


def test_one_box_direct_upload_is_packers_request_for_request(tmp_path: Path) -> None:
    theirs, ours = run_both(tmp_path, {"virtualbox": "web.box"})
    assert shape(ours) == shape(theirs)
    assert [r.path.split("/")[-1] for r in theirs][:2] == ["authenticate", "web"]
    put = next(r for r in ours if r.path.startswith("/store/"))
    assert "Authorization" not in put.headers and "Content-Type" not in put.headers
    assert put.body == (tmp_path / "ours" / "web.box").read_bytes()


def test_no_direct_upload_and_no_release_are_packers_request_for_request(
    tmp_path: Path,
) -> None:
    theirs, ours = run_both(
        tmp_path,
        {"libvirt": "web.box"},
        ("--no-direct-upload", "--no-release", "--version-description", "first"),
        no_direct_upload=True,
        no_release=True,
        version_description="first",
    )
    assert shape(ours) == shape(theirs)
    upload = [r for r in ours if r.method == "PUT"]
    assert len(upload) == 1  # through the API, with the token as Packer sends it; no release
    assert upload[0].headers["Authorization"] == f"Bearer {TOKEN}"
    assert upload[0].headers["Content-Type"] == "application/json"
    assert shape(ours)[2][2] == {"version": {"version": "1.0.0", "description": "first"}}


Shape = list[tuple[str, str, object, str | None, str | None]]


def provider_groups(requests: Shape) -> dict[str, Shape]:
    """Each provider's requests: its POST and the upload requests that follow it."""
    groups: dict[str, Shape] = {}
    current: Shape | None = None
    for request in requests:
        method, path, body = request[:3]
        if method == "POST" and path.endswith("/providers") and isinstance(body, dict):
            current = groups.setdefault(body["provider"]["name"], [])
        elif not ("/upload" in path or path.startswith(("/store/", "/api/v1/callback/"))):
            current = None
        if current is not None:
            current.append(request)
    return groups


def test_two_builds_release_once_after_both_providers(tmp_path: Path) -> None:
    theirs, ours = run_both(tmp_path, {"virtualbox": "vb.box", "libvirt": "lv.box"})
    packer_shape, our_shape = shape(theirs), shape(ours)
    # Each provider's own requests are Packer's.
    assert provider_groups(our_shape) == provider_groups(packer_shape)
    assert sorted(provider_groups(our_shape)) == ["libvirt", "virtualbox"]
    paths = [s[1] for s in packer_shape]
    ours_paths = [s[1] for s in our_shape]
    release = "/api/v1/box/acme/web/version/1.0.0/release"
    # Packer runs once per build: a token check and a box read for each, and a release
    # after the first provider, so the second lands in a version already released.
    assert paths.count("/api/v1/authenticate") == 2
    assert paths.count("/api/v1/box/acme/web") == 2
    assert paths.count(release) == 2
    assert paths.index(release) < max(i for i, s in enumerate(packer_shape) if s[0] == "POST")
    # We check and read once, create the version once, and release once, last.
    assert ours_paths[:3] == ["/api/v1/authenticate", "/api/v1/box/acme/web", paths[3]]
    assert ours_paths.count(release) == 1 and ours_paths[-1] == release
    assert len(our_shape) == len(packer_shape) - 3


def test_a_missing_box_stops_packer_and_is_created_by_us(tmp_path: Path) -> None:
    builds = {"virtualbox": "web.box"}
    for who in ("packer", "ours"):
        workdir = tmp_path / who
        workdir.mkdir()
        boxes_and_manifest(workdir, builds)
        with VagrantCloudRecorder() as srv:
            if who == "packer":
                proc = run_packer(workdir, srv.api, builds)
                assert proc.returncode != 0
                assert "Error retrieving box" in proc.stdout + proc.stderr
                assert "acme/web" not in srv.state.boxes
            else:
                proc = run_ours(workdir, srv.api, "--private")
                assert proc.returncode == 0, proc.stderr
                assert srv.state.boxes["acme/web"].private is True
                posts = [r for r in srv.requests if r.method == "POST"]
                assert posts[0].path == "/api/v1/boxes"
                assert posts[0].json() == {"username": "acme", "name": "web", "is_private": True}
                assert srv.state.boxes["acme/web"].versions["1.0.0"].status == "active"
