"""What the ``to: vagrant-cloud`` tests share: a Packer manifest of two box builds (virtualbox
and libvirt) and real Vagrant found on PATH (under CI, missing fails the test)."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from tests.artifacts import make_box, write_manifest


def vagrant_or_skip() -> str:
    """The path of ``vagrant``; under CI a missing one fails the test instead of skipping it."""
    found = shutil.which("vagrant")
    if found is not None:
        return found
    if os.environ.get("CI"):
        pytest.fail("vagrant is not installed; CI must install it (apt-get install vagrant)")
    pytest.skip("vagrant is not installed (CI installs it and runs this test)")


def two_builds(workspace: Path) -> dict[str, str]:
    """A virtualbox and a libvirt build of one run; provider -> the sha256 of its box."""
    sums = {}
    builds = []
    for name, builder, provider in (
        ("vbox", "virtualbox-iso", "virtualbox"),
        ("kvm", "qemu", "libvirt"),
    ):
        box = make_box(workspace / "out" / f"{name}.box", provider=provider, disk=16384)
        sums[provider] = hashlib.sha256(box.read_bytes()).hexdigest()
        builds.append(
            {
                "name": name,
                "builder_type": builder,
                "files": [{"name": f"out/{name}.box"}],
                "artifact_id": provider,
            }
        )
    write_manifest(workspace, builds)
    return sums


def vagrant_env(home: Path, server_url: str, token: str) -> dict[str, str]:
    """The environment real Vagrant runs in: a home of its own, the registry as its server."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "VAGRANT_HOME": str(home / "vagrant.d"),
        "VAGRANT_SERVER_URL": server_url,
        "VAGRANT_CLOUD_TOKEN": token,
        "VAGRANT_CHECKPOINT_DISABLE": "1",
        "VAGRANT_NO_COLOR": "1",
    }
