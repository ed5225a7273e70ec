"""The action with ``to: vagrant-cloud``, end to end: a virtualbox and a libvirt build of one
Packer manifest become one box version with two providers, released once, and real Vagrant
adds each by ``--box-version '~> 1.0'``.

The API here is the recording Vagrant Cloud of tests/vagrant_cloud_recorder.py (its catalog
and downloads included), which shows the order of the requests; test_vagrant_cloud_serve.py
runs the same against a real ``atlas-ci serve`` on both backends.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.artifacts import action_env, run_entrypoint
from tests.box_builds import two_builds, vagrant_or_skip
from tests.vagrant_cloud_recorder import VagrantCloudRecorder

TOKEN = "vc-e2e-token-0123456789"


def outputs(files: Path) -> str:
    return (files / "output").read_text()


def test_the_action_publishes_two_providers_released_once_and_vagrant_adds_them(
    tmp_path: Path,
) -> None:
    binary = vagrant_or_skip()
    workspace, files = tmp_path / "ws", tmp_path / "files"
    workspace.mkdir()
    files.mkdir()
    sums = two_builds(workspace)
    with VagrantCloudRecorder() as srv:
        env = action_env(
            workspace,
            files,
            url=srv.api,
            token=TOKEN,
            to="vagrant-cloud",
            version="1.0.0",
            version_description="two providers",
        )
        proc = run_entrypoint(workspace, env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        log = [line for line in proc.stdout.splitlines() if not line.startswith("::add-mask::")]
        assert TOKEN not in "\n".join(log) + proc.stderr + outputs(files)
        assert "presigned-secret" not in proc.stdout + proc.stderr
        written = outputs(files).splitlines()
        assert "version=1.0.0" in written
        assert "id=acme/web/1.0.0/libvirt" in written
        assert 'versions={"vbox":"1.0.0","kvm":"1.0.0"}' in written
        assert f"file_sha256={sums['libvirt']}" in written

        version = srv.state.boxes["acme/web"].versions["1.0.0"]
        assert version.status == "active" and version.description == "two providers"
        assert {p.name: p.checksum for p in version.providers.values()} == sums
        releases = [r for r in srv.requests if r.path.endswith("/release")]
        assert len(releases) == 1
        uploads_before_release = [
            r
            for r in srv.requests[: srv.requests.index(releases[0])]
            if r.path.startswith("/store/")
        ]
        assert len(uploads_before_release) == 2  # released after both boxes arrived

        vagrant_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(tmp_path),
            "VAGRANT_HOME": str(tmp_path / "vagrant.d"),
            "VAGRANT_SERVER_URL": srv.url,
            "VAGRANT_CHECKPOINT_DISABLE": "1",
            "VAGRANT_NO_COLOR": "1",
        }
        for provider in ("virtualbox", "libvirt"):
            done = subprocess.run(
                [
                    binary,
                    "box",
                    "add",
                    "acme/web",
                    "--box-version",
                    "~> 1.0",
                    "--provider",
                    provider,
                ],
                env=vagrant_env,
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            assert done.returncode == 0, done.stdout + done.stderr
            assert f"Successfully added box 'acme/web' (v1.0.0) for '{provider}'" in done.stdout
