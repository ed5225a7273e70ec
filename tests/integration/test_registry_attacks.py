"""An attacker's view of the registry's access rules, through real HTTP against ``atlas-ci serve``
administered with the real ``atlas-ci registry`` command while it runs: what an upload URL is
worth once its creator lost access, whose upload URL an idempotency key hands back, names that
differ only in case or width, and secrets in the administration command's errors."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import requests

from tests.integration.http_raw import exchange
from tests.integration.registry_admin import admin, new_token
from tests.integration.registry_api import TIMEOUT, api, create_artifact
from tests.registry_proc import RegistryProcess

BODY = {"artifact_version": {"file": True, "metadata": {"provider": "virtualbox"}}}


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    with RegistryProcess(tmp_path_factory.mktemp("attacks") / "data") as started:
        admin(started, "org", "create", "hashicorp")
        yield started


def member(registry: RegistryProcess, user: str, role: str = "write", *flags: str) -> str:
    """A token of ``user``, a ``role`` member of hashicorp."""
    token = new_token(registry, user, *flags)
    admin(registry, "org", "add-member", "hashicorp", user, "--role", role)
    return token


def post_version(
    registry: RegistryProcess, token: str, slug: str, key: str | None = None
) -> requests.Response:
    headers = {"X-Atlas-Token": token}
    if key is not None:
        headers["Idempotency-Key"] = key
    return requests.post(
        f"{registry.url}/api/v1/artifacts/{slug}", json=BODY, headers=headers, timeout=TIMEOUT
    )


def pending_upload(registry: RegistryProcess, token: str, slug: str) -> str:
    created = post_version(registry, token, slug)
    assert created.status_code == 201, created.text
    upload_path: str = created.json()["upload_path"]
    return upload_path


def still_pending(registry: RegistryProcess, slug: str) -> None:
    """Nothing became ready on ``slug``: no file was taken."""
    found = api(registry, "GET", f"/api/v1/artifacts/{slug}/search", params={"version": "any"})
    assert found.json()["versions"] == []


# -- an upload URL is a credential handed out by a write: it lasts only as long as that right --


def test_an_upload_url_dies_with_its_creators_membership(registry: RegistryProcess) -> None:
    """A member removed from the organization cannot fill the versions it created before."""
    token = member(registry, "mallory")
    create_artifact(registry, "hashicorp", "removed")
    upload_path = pending_upload(registry, token, "hashicorp/removed/vagrant.box")
    admin(registry, "org", "remove-member", "hashicorp", "mallory")
    put = requests.put(upload_path, data=b"evil", timeout=TIMEOUT)
    assert put.status_code == 403, put.text
    assert put.json() == {
        "errors": [
            "this upload URL no longer carries write access: "
            # no longer a member: not told what hashicorp is
            "user mallory has no write access to namespace hashicorp"
        ]
    }
    still_pending(registry, "hashicorp/removed/vagrant.box")


def test_an_upload_url_dies_with_a_downgrade_to_read(registry: RegistryProcess) -> None:
    token = member(registry, "oscar")
    create_artifact(registry, "hashicorp", "downgraded")
    upload_path = pending_upload(registry, token, "hashicorp/downgraded/vagrant.box")
    admin(registry, "org", "add-member", "hashicorp", "oscar", "--role", "read")
    assert requests.put(upload_path, data=b"evil", timeout=TIMEOUT).status_code == 403
    still_pending(registry, "hashicorp/downgraded/vagrant.box")
    # Given write access back, the same URL works again: nothing was destroyed.
    admin(registry, "org", "add-member", "hashicorp", "oscar", "--role", "write")
    assert requests.put(upload_path, data=b"good", timeout=TIMEOUT).status_code == 200


def test_an_upload_url_dies_with_its_token(registry: RegistryProcess) -> None:
    revoked = member(registry, "trudy")
    member(registry, "eve")
    expiring = new_token(registry, "eve", "--expires", "5s")
    create_artifact(registry, "hashicorp", "tokens")
    slug = "hashicorp/tokens/vagrant.box"
    expiring_path = pending_upload(registry, expiring, slug)
    revoked_path = pending_upload(registry, revoked, slug)
    [listed] = json.loads(admin(registry, "token", "list", "--user", "trudy", "--json").stdout)
    admin(registry, "token", "revoke", listed["id"])
    for _ in range(300):  # until the 5 s lifetime is over, however slow the machine
        if not api(registry, "GET", "/api/v1/authenticate", headers={"X-Atlas-Token": expiring}).ok:
            break
        time.sleep(0.1)
    for upload_path, reason in (
        (revoked_path, "the token it was created with was revoked"),
        (expiring_path, "the token it was created with has expired"),
    ):
        put = requests.put(upload_path, data=b"evil", timeout=TIMEOUT)
        assert put.status_code == 403, put.text
        assert put.json() == {
            "errors": ["this upload URL no longer carries write access: " + reason]
        }
    still_pending(registry, slug)


def test_an_upload_url_of_a_member_in_good_standing_works_for_whoever_holds_it(
    registry: RegistryProcess,
) -> None:
    """The URL stays a bearer credential (the uploader PUTs without its token)."""
    token = member(registry, "walter")
    create_artifact(registry, "hashicorp", "kept")
    upload_path = pending_upload(registry, token, "hashicorp/kept/vagrant.box")
    assert requests.put(upload_path, data=b"box", timeout=TIMEOUT).status_code == 200
    admin_path = pending_upload(registry, registry.token, "hashicorp/kept/vagrant.box")
    assert requests.put(admin_path, data=b"box", timeout=TIMEOUT).status_code == 200


# -- an idempotency key names a version of one principal: nobody else gets its upload URL --


def test_another_writer_replaying_a_key_gets_a_version_of_its_own(
    registry: RegistryProcess,
) -> None:
    alice, bob = member(registry, "alice"), member(registry, "bob")
    create_artifact(registry, "hashicorp", "keyed")
    slug = "hashicorp/keyed/vagrant.box"
    first = post_version(registry, alice, slug, key="run-1-vbox").json()
    again = post_version(registry, alice, slug, key="run-1-vbox").json()
    assert (again["version"], again["upload_path"]) == (first["version"], first["upload_path"])
    replayed = post_version(registry, bob, slug, key="run-1-vbox")
    assert replayed.status_code == 201, replayed.text
    assert replayed.json()["version"] != first["version"]
    assert replayed.json()["upload_path"] != first["upload_path"]
    # The administrator is a principal too: its key is not a user's, nor a user's its.
    by_admin = post_version(registry, registry.token, slug, key="run-1-vbox").json()
    assert by_admin["version"] not in (first["version"], replayed.json()["version"])


def test_a_search_hands_a_pending_upload_url_only_to_its_token(registry: RegistryProcess) -> None:
    """The uploader adopts its own pending version by searching with include_pending; another
    writer of the organization sees the version, not the URL (nor a read token of its user)."""
    owner, other = member(registry, "olga"), member(registry, "peggy")
    owner_ro = new_token(registry, "olga", "--read-only")
    create_artifact(registry, "hashicorp", "searched")
    slug = "hashicorp/searched/vagrant.box"
    upload_path = pending_upload(registry, owner, slug)

    def listed(token: str) -> list[dict[str, object]]:
        found = requests.get(
            f"{registry.url}/api/v1/artifacts/{slug}/search",
            params={"version": "any", "include_pending": "1"},
            headers={"X-Atlas-Token": token},
            timeout=TIMEOUT,
        )
        assert found.status_code == 200, found.text
        versions: list[dict[str, object]] = found.json()["versions"]
        return versions

    assert [v.get("upload_path") for v in listed(owner)] == [upload_path]
    assert [v.get("upload_path") for v in listed(registry.token)] == [upload_path]
    for token in (other, owner_ro):
        [version] = listed(token)
        assert version["state"] == "pending" and "upload_path" not in version


def test_a_read_token_or_an_outsider_replaying_a_key_gets_nothing(
    registry: RegistryProcess,
) -> None:
    writer = member(registry, "wendy")
    reader = member(registry, "rita", "read")
    read_only = new_token(registry, "wendy", "--read-only")
    outsider = new_token(registry, "otto")
    create_artifact(registry, "hashicorp", "replayed")
    slug = "hashicorp/replayed/vagrant.box"
    assert post_version(registry, writer, slug, key="k").status_code == 201
    for token in (reader, read_only, outsider):
        replay = post_version(registry, token, slug, key="k")
        assert replay.status_code == 403, replay.text
        assert "upload_path" not in replay.text


# -- one token per request, beyond doubt ------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        "X-Atlas-Token: {reader}\r\nX-Atlas-Token: {writer}",
        "Authorization: Bearer {reader}\r\nAuthorization: Bearer {writer}",
    ],
)
def test_a_repeated_token_header_is_400(registry: RegistryProcess, headers: str) -> None:
    """A proxy in front may read the other copy than the registry: refuse the doubt."""
    reader, writer = member(registry, "reed", "read"), member(registry, "wade")
    name = headers.split(":", 1)[0]
    create_artifact(registry, "hashicorp", name)
    sent = headers.format(reader=reader, writer=writer)
    body = json.dumps(BODY).encode()
    [answer], _ = exchange(
        registry.port,
        f"POST /api/v1/artifacts/hashicorp/{name}/t HTTP/1.1\r\nHost: x\r\n{sent}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n".encode()
        + body,
    )
    assert answer.status == 400, answer.body
    assert json.loads(answer.body) == {"errors": [f"send the {name} header once"]}
    assert reader not in answer.body.decode() and writer not in answer.body.decode()
    still_pending(registry, f"hashicorp/{name}/t")


# -- names: one namespace per name as a reader sees it --------------------------------------


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("user", "HashiCorp"),  # case
        ("org", "HASHICORP"),
        ("user", "\uff48ashicorp"),  # a fullwidth h, folded by NFKC
        ("user", "hashicorp\u200b"),  # an invisible zero-width space
        ("user", "Atlas-CI"),  # what an administrator token authenticates as
    ],
)
def test_a_name_that_reads_as_an_existing_one_is_refused(
    registry: RegistryProcess, kind: str, name: str
) -> None:
    done = admin(registry, kind, "create", name, check=False)
    assert done.returncode in (2, 5), done.stderr
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    listed = admin(registry, "user", "list").stdout + admin(registry, "org", "list").stdout
    assert name not in listed


# -- the administration command never echoes a secret -----------------------------------------


def test_token_revoke_given_the_token_itself_does_not_echo_it(registry: RegistryProcess) -> None:
    token = new_token(registry, "pat")
    done = admin(registry, "token", "revoke", token, check=False)
    assert done.returncode == 2
    assert token not in done.stderr + done.stdout
    [listed] = json.loads(admin(registry, "token", "list", "--user", "pat", "--json").stdout)
    assert f"token revoke {listed['id']}" in done.stderr  # what to type instead
    assert api(registry, "GET", "/api/v1/authenticate", headers={"X-Atlas-Token": token}).ok
    unknown = admin(registry, "token", "revoke", "atlas_" + "x" * 43, check=False)
    assert unknown.returncode == 2 and "x" * 43 not in unknown.stderr


def test_an_expiry_past_the_calendar_is_a_usage_error(registry: RegistryProcess) -> None:
    new_token(registry, "quinn")
    done = admin(
        registry, "token", "create", "--user", "quinn", "--expires", "3000000d", check=False
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "3000000d" in done.stderr
