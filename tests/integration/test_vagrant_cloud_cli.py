"""Real ``vagrant cloud`` (Vagrant 2.3.4) publishes, releases, revokes and deletes boxes on the
registry, and real ``vagrant box add/outdated`` installs them by version constraint; on SQLite
and PostgreSQL (one registry per backend for the whole module)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

import pytest

from tests.integration.vagrant_cloud import Team, a_box, team_registry, vagrant
from tests.postgres import BACKENDS


@pytest.fixture(scope="module", params=BACKENDS)
def team(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Team]:
    yield from team_registry(request, tmp_path_factory.mktemp("vagrant-cloud-cli"))


def _versions(team: Team, tag: str) -> dict[str, str]:
    """``{version: status}`` of box ``tag``."""
    return {v["version"]: v["status"] for v in team.box(tag)["versions"]}


def test_publish_creates_the_box_and_vagrant_installs_it_by_constraint(team: Team) -> None:
    boxes = team.home / "boxes"
    first = a_box(boxes, "app-1.0.0")
    assert team.get("/box/acme/app", team.registry.token).status_code == 404
    published = vagrant(
        team, team.writer, "cloud", "publish", "acme/app", "1.0.0", "virtualbox", str(first),
        "--release", "--force", "--short-description", "the app",
    )  # fmt: skip
    assert "Complete! Published acme/app" in published.stdout, published.stdout
    box = team.box("acme/app")
    # Vagrant sends no is_private without -p: private, the registry's default for a new box.
    assert (box["tag"], box["short_description"], box["private"]) == ("acme/app", "the app", True)
    version = box["versions"][0]
    assert (version["version"], version["status"]) == ("1.0.0", "active")
    assert version["providers"][0]["name"] == "virtualbox"
    assert version["providers"][0]["checksum"] == hashlib.sha256(first.read_bytes()).hexdigest()

    # The deploy machine (read-only token) pins the 1.x line.
    added = vagrant(team, team.reader, "box", "add", "acme/app", "--box-version", "~> 1.0")
    assert "Successfully added box 'acme/app' (v1.0.0) for 'virtualbox'" in added.stdout

    # 1.1.0 published but not released: Vagrant is not offered it.
    second = a_box(boxes, "app-1.1.0")
    vagrant(
        team, team.writer, "cloud", "publish", "acme/app", "1.1.0", "virtualbox", str(second),
        "--force",
    )  # fmt: skip
    assert _versions(team, "acme/app") == {"1.1.0": "unreleased", "1.0.0": "active"}
    assert [v["version"] for v in team.catalog("acme/app")["versions"]] == ["1.0.0"]
    current = vagrant(team, team.reader, "box", "outdated", "--global").stdout
    assert "'acme/app' for 'virtualbox' (v1.0.0) is up to date" in current, current

    vagrant(team, team.writer, "cloud", "version", "release", "acme/app", "1.1.0", "--force")
    assert _versions(team, "acme/app") == {"1.1.0": "active", "1.0.0": "active"}
    outdated = vagrant(team, team.reader, "box", "outdated", "--global").stdout
    assert "'acme/app' for 'virtualbox' is outdated! Current: 1.0.0. Latest: 1.1.0" in outdated

    vagrant(team, team.writer, "cloud", "version", "revoke", "acme/app", "1.1.0", "--force")
    assert _versions(team, "acme/app") == {"1.1.0": "revoked", "1.0.0": "active"}
    assert [v["version"] for v in team.catalog("acme/app")["versions"]] == ["1.0.0"]
    again = vagrant(team, team.reader, "box", "outdated", "--global").stdout
    assert "'acme/app' for 'virtualbox' (v1.0.0) is up to date" in again, again

    vagrant(team, team.writer, "cloud", "box", "delete", "acme/app", "--force")
    assert team.get("/box/acme/app", team.registry.token).status_code == 404
    shown = vagrant(team, team.writer, "cloud", "box", "show", "acme/app", check=False)
    assert shown.returncode != 0


def test_read_only_and_outsider_tokens_publish_nothing(team: Team) -> None:
    box = a_box(team.home / "boxes", "tool")
    for token in (team.reader, team.outsider):
        refused = vagrant(
            team, token, "cloud", "publish", "acme/tool", "1.0.0", "virtualbox", str(box),
            "--release", "--force", check=False,
        )  # fmt: skip
        assert refused.returncode != 0, refused.stdout
    assert team.get("/box/acme/tool", team.registry.token).status_code == 404

    # On a box the writer made, neither adds a version, a provider or a release.
    vagrant(
        team, team.writer, "cloud", "publish", "acme/tool", "1.0.0", "virtualbox", str(box),
        "--force",
    )  # fmt: skip
    before = team.box("acme/tool")
    for token in (team.reader, team.outsider):
        for args in (
            ("publish", "acme/tool", "2.0.0", "virtualbox", str(box), "--release", "--force"),
            ("version", "release", "acme/tool", "1.0.0", "--force"),
            ("box", "delete", "acme/tool", "--force"),
        ):
            assert vagrant(team, token, "cloud", *args, check=False).returncode != 0, args
    after = team.box("acme/tool")
    assert after["versions"] == before["versions"]
    assert _versions(team, "acme/tool") == {"1.0.0": "unreleased"}


def test_a_private_box_is_invisible_to_outsiders_and_their_search(team: Team) -> None:
    box = a_box(team.home / "boxes", "secret")
    vagrant(
        team, team.writer, "cloud", "publish", "acme/secret", "1.0.0", "virtualbox", str(box),
        "--release", "--private", "--force",
    )  # fmt: skip
    assert team.box("acme/secret")["private"] is True

    def found(token: str | None) -> list[str]:
        done = vagrant(team, token, "cloud", "search", "secret", "--json", check=False)
        if "No results found" in done.stdout + done.stderr:
            return []
        assert done.returncode == 0, (done.stdout, done.stderr)
        return [b["name"] for b in json.loads(done.stdout)]

    assert found(team.writer) == ["acme/secret"]
    assert found(team.reader) == ["acme/secret"]
    assert found(team.outsider) == []
    assert found(None) == []
    assert team.get("/box/acme/secret", team.outsider).status_code == 404
    assert team.get("/box/acme/secret").status_code == 401
    listing = team.get("/user/acme", team.outsider).json()
    assert "acme/secret" not in [b["tag"] for b in listing["boxes"]]
    shown = vagrant(team, team.outsider, "cloud", "box", "show", "acme/secret", check=False)
    assert shown.returncode != 0
    denied = vagrant(
        team, team.outsider, "box", "add", "acme/secret", home=team.home / "outsider", check=False
    )
    assert denied.returncode != 0
    assert not (
        team.home / "outsider" / "vagrant.d" / "boxes" / "acme-VAGRANTSLASH-secret"
    ).exists()
    allowed = vagrant(team, team.reader, "box", "add", "acme/secret", home=team.home / "deploy")
    assert "(v1.0.0) for 'virtualbox'" in allowed.stdout
