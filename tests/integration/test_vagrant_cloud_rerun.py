"""``upload --to vagrant-cloud`` failing at each step, then run again: the job is finished and
nothing is created twice (issue 19), against the recording Vagrant Cloud.

A fault either loses the answer of a request the API processed (the hardest case: the
client cannot know it was done) or refuses it with a 503 (nothing done). The first run gets
no retries, so the fault is the run's to survive or to report; the second run finishes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.artifacts import make_box, run_cli, write_manifest
from tests.vagrant_cloud_recorder import VagrantCloudRecorder

TOKEN = "vc-rerun-token-0123456789"
STEPS = {
    "token check": "GET /api/v1/authenticate$",
    "box read": "GET /api/v1/box/acme/web$",
    "box creation": "POST /api/v1/boxes$",
    "version creation": "POST /versions$",
    "provider creation": "POST /providers$",
    "upload preparation": "GET /upload/direct$",
    "box upload": "PUT /store/",
    "upload confirmation": "PUT /api/v1/callback/",
    "release": "PUT /release$",
}


def publish(workdir: Path, api: str, retries: str) -> tuple[int, str]:
    args = ["upload", "--to", "vagrant-cloud", "--artifact", "acme/web", "--box-version"]
    args += ["1.0.0", "--atlas-url", api, "--retries", retries, "--max-wait", "0", "--debug"]
    proc = run_cli(args, workdir, {"VAGRANT_CLOUD_TOKEN": TOKEN})
    return proc.returncode, proc.stdout + proc.stderr


def two_boxes(workdir: Path) -> dict[str, str]:
    """A virtualbox and a libvirt build in one manifest; provider -> sha256 of its box."""
    sums = {}
    builds = []
    for builder, provider in (("virtualbox-iso", "virtualbox"), ("qemu", "libvirt")):
        box = make_box(workdir / f"{provider}.box", provider=provider, disk=8192)
        sums[provider] = hashlib.sha256(box.read_bytes()).hexdigest()
        builds.append(
            {
                "name": provider,
                "builder_type": builder,
                "files": [{"name": box.name}],
                "artifact_id": provider,
            }
        )
    write_manifest(workdir, builds)
    return sums


@pytest.mark.parametrize("kind", ["lose", "refuse"])
@pytest.mark.parametrize("step", list(STEPS))
def test_a_rerun_after_a_failure_finishes_and_creates_nothing_twice(
    tmp_path: Path, step: str, kind: str
) -> None:
    sums = two_boxes(tmp_path)
    with VagrantCloudRecorder(faults={STEPS[step]: kind}) as srv:
        first, output = publish(tmp_path, srv.api, "0")
        print(f"{step} {kind}: first run exit {first}")
        assert first in (0, 6), output  # survived, or the API was unavailable (exit 6)
        assert not srv.state.faults, "the fault never fired"
        second, output2 = publish(tmp_path, srv.api, "0")
        assert second == 0, output2
        for text in (output, output2):
            assert TOKEN not in text
            assert "presigned-secret" not in text
            assert "/store/" not in text and "/callback/" not in text
        assert srv.state.conflicts == []  # never asked to create what existed
        assert list(srv.state.boxes) == ["acme/web"]
        versions = srv.state.boxes["acme/web"].versions
        assert list(versions) == ["1.0.0"]
        assert versions["1.0.0"].status == "active"
        providers = versions["1.0.0"].providers
        assert {name: p.checksum for name, p in providers.items()} == sums
        releases = [r for r in srv.requests if r.path.endswith("/release")]
        # A lost release went through: the re-run sees the version active and leaves it.
        refused_release = step == "release" and kind == "refuse"
        assert len(releases) == (2 if refused_release else 1)


def test_a_provider_holding_another_box_is_exit_5_naming_both_checksums(tmp_path: Path) -> None:
    sums = two_boxes(tmp_path)
    with VagrantCloudRecorder() as srv:
        assert publish(tmp_path, srv.api, "0")[0] == 0
        make_box(tmp_path / "libvirt.box", provider="libvirt", disk=8192)  # rebuilt: new bytes
        new = hashlib.sha256((tmp_path / "libvirt.box").read_bytes()).hexdigest()
        before = len(srv.requests)
        code, output = publish(tmp_path, srv.api, "0")
        assert code == 5, output
        assert sums["libvirt"] in output and new in output
        assert "never overwritten" in output
        after = srv.requests[before:]
        assert not [r for r in after if r.method in ("POST", "PUT")]  # nothing sent
        assert (
            srv.state.boxes["acme/web"].versions["1.0.0"].providers["libvirt"].checksum
            == (sums["libvirt"])
        )


def test_a_dry_run_creates_nothing_and_the_atlas_token_fallback_is_warned(tmp_path: Path) -> None:
    two_boxes(tmp_path)
    args = ["upload", "--to", "vagrant-cloud", "--artifact", "acme/web", "--box-version"]
    args += ["1.0.0", "--dry-run", "--json"]
    with VagrantCloudRecorder() as srv:
        proc = run_cli([*args, "--atlas-url", srv.api], tmp_path, {"ATLAS_TOKEN": TOKEN})
        assert proc.returncode == 0, proc.stderr
        assert "using the Vagrant Cloud token found in ATLAS_TOKEN" in proc.stderr
        assert "Dry run: would create public box acme/web and its version 1.0.0" in proc.stderr
        assert "Dry run: would upload virtualbox.box as acme/web 1.0.0 virtualbox" in proc.stderr
        assert [r.method for r in srv.requests] == ["GET", "GET"]  # token check, box read
        assert srv.requests[0].headers["Authorization"] == f"Bearer {TOKEN}"
        assert srv.state.boxes == {}
        result = json.loads(proc.stdout)
        assert result["version"] is None and result["dry_run"] is True
        assert [b["provider"] for b in result["builds"]] == ["virtualbox", "libvirt"]
