"""Real Packer 1.6.6 publishes boxes with its ``vagrant-cloud`` post-processor (fed a real
``.box`` by ``artifice`` from a ``file`` build, no hypervisor) to the registry, directly and
through the registry, released or not; on SQLite and PostgreSQL (one registry per backend)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
import requests

from tests.integration.vagrant_cloud import TIMEOUT, Team, a_box, packer, team_registry, vagrant
from tests.postgres import BACKENDS


@pytest.fixture(scope="module", params=BACKENDS)
def team(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Team]:
    yield from team_registry(request, tmp_path_factory.mktemp("vagrant-cloud-packer"))


def _create_box(team: Team, name: str) -> None:
    """Packer never creates a box: the team does, with ``vagrant cloud box create``."""
    vagrant(team, team.writer, "cloud", "box", "create", f"acme/{name}")


def _providers(version: dict[str, object]) -> dict[str, str]:
    providers = version["providers"]
    assert isinstance(providers, list)
    return {p["name"]: p["checksum"] for p in providers}


def test_packer_uploads_directly_then_through_the_registry_into_one_version(team: Team) -> None:
    _create_box(team, "web")
    work = team.home / "packer-web"
    vbox = a_box(work, "web-virtualbox", "virtualbox")
    libvirt = a_box(work, "web-libvirt", "libvirt")

    direct = packer(team, team.writer, work / "direct", vbox, "acme/web", "1.0.0")
    assert direct.returncode == 0, direct.stdout + direct.stderr
    through = packer(
        team, team.writer, work / "through", libvirt, "acme/web", "1.0.0", no_direct_upload=True
    )
    assert through.returncode == 0, through.stdout + through.stderr
    assert "Version exists, skipping creation" in through.stdout

    versions = team.box("acme/web")["versions"]
    assert [(v["version"], v["status"]) for v in versions] == [("1.0.0", "active")]
    assert _providers(versions[0]) == {
        "virtualbox": hashlib.sha256(vbox.read_bytes()).hexdigest(),
        "libvirt": hashlib.sha256(libvirt.read_bytes()).hexdigest(),
    }
    # What Vagrant installs is exactly what Packer sent, for either provider.
    (catalog_version,) = team.catalog("acme/web")["versions"]
    for provider in catalog_version["providers"]:
        url = provider["url"]
        got = requests.get(url, headers={"Authorization": f"Bearer {team.reader}"}, timeout=TIMEOUT)
        assert got.status_code == 200
        expected = vbox if provider["name"] == "virtualbox" else libvirt
        assert got.content == expected.read_bytes()
    added = vagrant(
        team, team.reader, "box", "add", "acme/web", "--box-version", "~> 1.0",
        "--provider", "libvirt", home=team.home / "deploy-web",
    )  # fmt: skip
    assert "Successfully added box 'acme/web' (v1.0.0) for 'libvirt'" in added.stdout


def test_packer_no_release_then_vagrant_cloud_releases_it(team: Team) -> None:
    _create_box(team, "db")
    work = team.home / "packer-db"
    built = packer(
        team, team.writer, work / "build", a_box(work, "db"), "acme/db", "2.0.0", no_release=True
    )
    assert built.returncode == 0, built.stdout + built.stderr
    assert [(v["version"], v["status"]) for v in team.box("acme/db")["versions"]] == [
        ("2.0.0", "unreleased")
    ]
    assert team.catalog("acme/db")["versions"] == []

    vagrant(team, team.writer, "cloud", "version", "release", "acme/db", "2.0.0", "--force")
    assert team.box("acme/db")["versions"][0]["status"] == "active"
    assert [v["version"] for v in team.catalog("acme/db")["versions"]] == ["2.0.0"]


def test_read_only_and_outsider_tokens_publish_nothing_with_packer(team: Team) -> None:
    _create_box(team, "cache")
    work = team.home / "packer-cache"
    box = a_box(work, "cache")
    for who, token in (("reader", team.reader), ("outsider", team.outsider)):
        refused = packer(team, token, work / who, box, "acme/cache", "1.0.0")
        assert refused.returncode != 0, refused.stdout
    assert team.box("acme/cache")["versions"] == []
    # Nor on a version the writer made: no provider is added, nothing released.
    made = packer(team, team.writer, work / "writer", box, "acme/cache", "1.0.0", no_release=True)
    assert made.returncode == 0, made.stdout + made.stderr
    before = team.box("acme/cache")["versions"]
    libvirt = a_box(work, "cache-libvirt", "libvirt")
    for who, token in (("reader", team.reader), ("outsider", team.outsider)):
        refused = packer(team, token, work / f"{who}-2", libvirt, "acme/cache", "1.0.0")
        assert refused.returncode != 0, refused.stdout
    assert team.box("acme/cache")["versions"] == before
