"""Users, organizations, tokens and visibility, through real HTTP against ``atlas-ci serve``
administered with the real ``atlas-ci registry`` command while it runs."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from atlas_ci.registry.accounts import token_hash
from tests.artifacts import file_build, make_box, run_cli, write_manifest
from tests.integration.registry_admin import admin, new_token
from tests.integration.registry_api import TIMEOUT, api, create_artifact, publish
from tests.postgres import BACKENDS, fresh_database
from tests.registry_proc import RegistryProcess

VERSION_BODY = {"artifact_version": {"file": True, "metadata": {"provider": "virtualbox"}}}
NO_WRITE = {
    # Only a member is told that hashicorp is an organization (docs/registry.md, "Access").
    "carol": "user carol has no write access to organization hashicorp",
    "dave": "user dave has no write access to namespace hashicorp",
}


@pytest.fixture(scope="module", params=BACKENDS)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """hashicorp: alice writes, carol reads; dave belongs nowhere. hashicorp/web (private) and
    acme/pub (public) hold one vagrant.box each, uploaded with the administrator token. Once
    on each backend."""
    database = fresh_database(request, request.param)
    data = tmp_path_factory.mktemp("access") / "data"
    with RegistryProcess(data, database=database) as registry:
        admin(registry, "org", "create", "hashicorp")
        tokens = {
            "alice": new_token(registry, "alice"),
            "alice-ro": new_token(registry, "alice", "--read-only"),
            "carol": new_token(registry, "carol"),
            "dave": new_token(registry, "dave"),
        }
        admin(registry, "org", "add-member", "hashicorp", "alice", "--role", "write")
        admin(registry, "org", "add-member", "hashicorp", "carol", "--role", "read")
        for user, name in (("hashicorp", "web"), ("acme", "pub")):
            create_artifact(registry, user, name)
            publish(registry, b"box", f"{user}/{name}/vagrant.box", metadata={"provider": "vb"})
        admin(registry, "artifact", "set-visibility", "acme/pub", "public")
        yield {"registry": registry, "tokens": tokens}


def call(
    registry: RegistryProcess, token: str | None, method: str, path: str, **kwargs: Any
) -> requests.Response:
    headers = {} if token is None else {"X-Atlas-Token": token}
    return requests.request(method, registry.url + path, headers=headers, timeout=TIMEOUT, **kwargs)


def new_artifact(registry: RegistryProcess, token: str, user: str, name: str) -> requests.Response:
    body = {"artifact": {"username": user, "name": name}}
    return call(registry, token, "POST", "/api/v1/artifacts", json=body)


def new_version(
    registry: RegistryProcess, token: str, slug: str, artifact_type: str = "vagrant.box"
) -> requests.Response:
    """The version POST of ``slug`` (user/name), its file to come."""
    path = f"/api/v1/artifacts/{slug}/{artifact_type}"
    return call(registry, token, "POST", path, json=VERSION_BODY)


READS = [
    "/api/v1/artifacts/{a}",
    "/api/v1/artifacts/{a}/vagrant.box/search?version=latest",
    "/api/v1/artifacts/{a}/vagrant.box/file",
    "/api/v1/artifacts/{a}/vagrant.box/1/file",
    "/{a}",
]


def test_a_user_writes_to_its_own_namespace(world: dict[str, Any]) -> None:
    registry, alice = world["registry"], world["tokens"]["alice"]
    assert new_artifact(registry, alice, "alice", "app").status_code == 201
    created = new_version(registry, alice, "alice/app")
    assert created.status_code == 201, created.text
    put = requests.put(created.json()["upload_path"], data=b"mine", timeout=TIMEOUT)
    assert put.status_code == 200
    assert call(registry, alice, "GET", "/api/v1/artifacts/alice/app/vagrant.box/file").content == (
        b"mine"
    )


def test_a_write_member_writes_to_the_organization(world: dict[str, Any]) -> None:
    registry, alice = world["registry"], world["tokens"]["alice"]
    assert new_artifact(registry, alice, "hashicorp", "db").status_code == 201
    created = new_version(registry, alice, "hashicorp/web")
    assert created.status_code == 201, created.text


@pytest.mark.parametrize("who", ["carol", "dave"])
def test_a_read_member_and_an_outsider_are_refused_writes_with_the_reason(
    world: dict[str, Any], who: str
) -> None:
    registry, token = world["registry"], world["tokens"][who]
    refused = [
        new_artifact(registry, token, "hashicorp", f"by-{who}"),
        call(registry, token, "POST", "/api/v1/artifacts/hashicorp/web/vagrant.box", json={}),
    ]
    for response in refused:
        assert response.status_code == 403
        assert response.json() == {"errors": [NO_WRITE[who]]}
    assert api(registry, "GET", f"/api/v1/artifacts/hashicorp/by-{who}").status_code == 404


def test_a_read_member_reads_a_private_artifact_an_outsider_gets_404(
    world: dict[str, Any],
) -> None:
    registry, tokens = world["registry"], world["tokens"]
    for path in READS:
        path = path.format(a="hashicorp/web")
        assert call(registry, tokens["carol"], "GET", path).status_code == 200, path
        hidden = call(registry, tokens["dave"], "GET", path)
        missing = call(registry, tokens["dave"], "GET", path.replace("/web", "/nothing"))
        assert hidden.status_code == missing.status_code == 404, path
        # Nothing tells a hidden artifact from a missing one but its name.
        assert hidden.text.replace("/web", "/nothing") == missing.text, path
        assert call(registry, None, "GET", path).status_code == 401, path


def test_a_read_only_token_reads_and_is_refused_every_write(world: dict[str, Any]) -> None:
    registry, token = world["registry"], world["tokens"]["alice-ro"]
    writes = [
        new_artifact(registry, token, "alice", "ro"),
        new_artifact(registry, token, "hashicorp", "ro"),
        call(registry, token, "POST", "/api/v1/artifacts/hashicorp/web/vagrant.box", json={}),
    ]
    for response in writes:
        assert response.status_code == 403
        assert response.json() == {"errors": ["the token of user alice is read-only"]}
    # A reader is not handed the upload URL of a pending version.
    new_version(registry, world["tokens"]["alice"], "hashicorp/web", "t")
    listed = call(
        registry,
        token,
        "GET",
        "/api/v1/artifacts/hashicorp/web/t/search?version=any&include_pending=1",
    ).json()["versions"]
    assert listed
    assert all("upload_path" not in v for v in listed)
    writer = call(
        registry,
        world["tokens"]["alice"],
        "GET",
        "/api/v1/artifacts/hashicorp/web/t/search?version=any&include_pending=1",
    ).json()["versions"]
    assert all(v["upload_path"].startswith(registry.url + "/binstore/") for v in writer)
    for path in READS:
        path = path.format(a="hashicorp/web")
        assert call(registry, token, "GET", path).status_code == 200, path


def test_expired_and_revoked_tokens_are_refused(world: dict[str, Any]) -> None:
    registry = world["registry"]
    short = new_token(registry, "erin", "--expires", "1s")
    kept = new_token(registry, "frank", "--expires", "1d")
    doomed = new_token(registry, "grace")
    assert call(registry, doomed, "GET", "/api/v1/authenticate").status_code == 200
    [listed] = json.loads(admin(registry, "token", "list", "--user", "grace", "--json").stdout)
    admin(registry, "token", "revoke", listed["id"])
    assert admin(registry, "token", "list", "--user", "grace", "--json").stdout.strip() == "[]"
    time.sleep(2.1)  # past the 1 s lifetime (whole seconds), however slow the machine
    for token, reason in ((short, "the token has expired"), (doomed, "invalid token")):
        for path in ("/api/v1/authenticate", "/api/v1/artifacts/hashicorp/web", "/acme/pub"):
            response = call(registry, token, "GET", path)
            assert response.status_code == 401, path
            assert reason in response.json()["errors"][0]
    assert call(registry, kept, "GET", "/api/v1/authenticate").status_code == 200


def test_a_public_artifact_is_read_with_no_token_and_written_only_with_access(
    world: dict[str, Any],
) -> None:
    registry, tokens = world["registry"], world["tokens"]
    for path in READS:
        path = path.format(a="acme/pub")
        for token in (None, tokens["dave"]):
            response = call(registry, token, "GET", path)
            assert response.status_code == 200, (path, response.text)
    assert call(registry, None, "GET", "/acme/pub").json()["versions"][0]["version"] == "1"
    assert call(registry, None, "GET", "/api/v1/artifacts/acme/pub/vagrant.box/1/file").content == (
        b"box"
    )
    write = call(registry, None, "POST", "/api/v1/artifacts/acme/pub/vagrant.box", json={})
    assert write.status_code == 401
    write = call(
        registry, tokens["dave"], "POST", "/api/v1/artifacts/acme/pub/vagrant.box", json={}
    )
    assert write.status_code == 403
    assert write.json() == {"errors": ["user dave has no write access to namespace acme"]}
    # Public is a setting, not a one-way door.
    admin(registry, "artifact", "set-visibility", "acme/pub", "private")
    try:
        assert call(registry, None, "GET", "/api/v1/artifacts/acme/pub").status_code == 401
        assert call(registry, tokens["dave"], "GET", "/acme/pub").status_code == 404
    finally:
        admin(registry, "artifact", "set-visibility", "acme/pub", "public")


def test_the_administrator_token_works_everywhere(world: dict[str, Any]) -> None:
    registry = world["registry"]
    for user in ("hashicorp", "alice", "nobody-owns-this"):
        create_artifact(registry, user, "by-admin")
        publish(registry, b"a", f"{user}/by-admin/vagrant.box", metadata={"provider": "vb"})
        for path in READS:
            assert api(registry, "GET", path.format(a=f"{user}/by-admin")).status_code == 200
    assert api(registry, "GET", "/api/v1/authenticate").json()["user"]["username"] == "atlas-ci"


def test_authenticate_names_the_tokens_user_with_either_header(world: dict[str, Any]) -> None:
    registry, tokens = world["registry"], world["tokens"]
    by_header = call(registry, tokens["carol"], "GET", "/api/v1/authenticate").json()["user"]
    assert (by_header["username"], by_header["read_only"]) == ("carol", False)
    bearer = requests.get(
        registry.url + "/api/v1/authenticate",
        headers={"Authorization": f"Bearer {tokens['alice-ro']}"},
        timeout=TIMEOUT,
    ).json()["user"]
    assert (bearer["username"], bearer["read_only"]) == ("alice", True)
    assert call(registry, None, "GET", "/api/v1/authenticate").status_code == 401


@pytest.mark.parametrize("who", ["carol", "dave"])
def test_the_uploaders_403_names_the_organization(
    world: dict[str, Any], tmp_path: Path, who: str
) -> None:
    registry = world["registry"]
    make_box(tmp_path / "out" / "web.box")
    write_manifest(tmp_path, [file_build("vbox", "virtualbox-iso", "virtualbox", ["out/web.box"])])
    proc = run_cli(
        ["upload", "--artifact", "hashicorp/web", "--atlas-url", registry.url],
        tmp_path,
        {"ATLAS_TOKEN": world["tokens"][who]},
    )
    assert proc.returncode == 4, proc.stderr
    assert NO_WRITE[who] in proc.stderr
    assert "write member of organization hashicorp" in proc.stderr
    assert world["tokens"][who] not in proc.stderr


def test_no_secret_in_the_log_or_token_list(world: dict[str, Any]) -> None:
    registry, tokens = world["registry"], world["tokens"]
    for token in tokens.values():  # each one used on every kind of request
        for path in READS:
            call(registry, token, "GET", path.format(a="hashicorp/web"))
    listing = (
        admin(registry, "token", "list").stdout + admin(registry, "token", "list", "--json").stdout
    )
    log = registry.stderr_text()
    # The searched texts hold what was done: every read logged once per token, every user listed.
    for path in READS:
        logged = f" GET {path.format(a='hashicorp/web')} "
        assert log.count(logged) >= len(tokens), (logged, log)
    assert all(f'"user": "{user}"' in listing for user in ("alice", "carol", "dave")), listing
    for token in [*tokens.values(), registry.token]:
        for text in (log, listing):
            assert token not in text
            assert token_hash(token) not in text
    listed = json.loads(admin(registry, "token", "list", "--user", "carol", "--json").stdout)
    assert [set(t) for t in listed] == [
        {"id", "user", "read_only", "created", "expires", "last_used"}
    ]
    assert listed[0]["last_used"] is not None
