"""What a second, adversarial look at the registry found (issue 18, section 2), each case on
both backends through a real server: NUL characters, the database file's mode, the Host
header, upload secrets escaped past the log's redaction, and what a 403 tells a stranger."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.integration.http_raw import exchange
from tests.integration.registry_admin import admin, new_token
from tests.integration.registry_api import TIMEOUT, api, create_artifact, create_version
from tests.postgres import PostgresCluster
from tests.registry_proc import REPO_ROOT, RegistryProcess

# -- NUL: PostgreSQL cannot store it, so no backend may accept it --------------------------------

NUL_PATHS = [
    ("GET", "/x/%00"),  # the box catalog, no token needed
    ("GET", "/%00/n"),
    ("GET", "/api/v1/artifacts/u/%00"),
    ("GET", "/api/v1/artifacts/%00/n/t/search"),
    ("GET", "/api/v1/artifacts/u/n/%00/file"),
    ("GET", "/api/v1/artifacts/u/n/t/%00/file"),
    ("POST", "/api/v1/artifacts/u/%00/t"),
    ("PUT", "/binstore/%00"),
]


@pytest.mark.parametrize(("method", "path"), NUL_PATHS)
@pytest.mark.parametrize("token", [True, False], ids=["token", "anonymous"])
def test_nul_in_a_path_segment_is_400(
    registry: RegistryProcess, method: str, path: str, token: bool
) -> None:
    headers = registry.headers if token else {}
    response = requests.request(
        method, registry.url + path, headers=headers, data=b"{}", timeout=TIMEOUT
    )
    if not token and path.startswith("/api/"):
        # Without a token the API says only that: no hint at which paths mean something.
        assert response.status_code == 401, response.text
    else:
        assert response.status_code == 400, response.text
        assert response.json() == {"errors": ["a path segment holds a NUL character (%00)"]}
    assert "Traceback" not in registry.stderr_text()


def _version_body(**fields: Any) -> dict[str, Any]:
    return {"artifact_version": {"file": False, **fields}}


NUL_BODIES = {
    "version id": ("/api/v1/artifacts/u/n/t", _version_body(id="ami-\u0000")),
    "metadata value": ("/api/v1/artifacts/u/n/t", _version_body(metadata={"k": "a\u0000"})),
    "metadata key": ("/api/v1/artifacts/u/n/t", _version_body(metadata={"\u0000": "v"})),
    "artifact username": ("/api/v1/artifacts", {"artifact": {"username": "u\u0000", "name": "n"}}),
    "artifact name": ("/api/v1/artifacts", {"artifact": {"username": "u", "name": "\u0000"}}),
}


@pytest.mark.parametrize("case", sorted(NUL_BODIES))
@pytest.mark.parametrize("who", ["admin", "member"])
def test_nul_in_a_json_body_is_422_before_storage(
    registry: RegistryProcess, case: str, who: str
) -> None:
    create_artifact(registry)
    path, body = NUL_BODIES[case]
    token = registry.token if who == "admin" else new_token(registry, "u")
    response = requests.post(
        registry.url + path, json=body, headers={"X-Atlas-Token": token}, timeout=TIMEOUT
    )
    assert response.status_code == 422, response.text
    assert response.json() == {
        "errors": ["a string in the body holds a NUL character (\\u0000); remove it"]
    }
    found = api(registry, "GET", "/api/v1/artifacts/u/n/t/search", params={"version": "any"})
    assert found.json()["versions"] == []


@pytest.mark.parametrize("query", ["metadata.1.key=%00", "metadata.1.key=k&metadata.1.value=%00"])
def test_nul_in_a_search_query_is_400(registry: RegistryProcess, query: str) -> None:
    create_artifact(registry)
    response = api(registry, "GET", f"/api/v1/artifacts/u/n/t/search?{query}")
    assert response.status_code == 400, response.text
    assert "NUL" in response.json()["errors"][0]


def _atlas_ci(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ATLAS_REGISTRY_", "PGPASS"))}
    env["PYTHONPATH"] = str(REPO_ROOT)
    return subprocess.run(
        [sys.executable, "-m", "atlas_ci", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def test_export_names_a_nul_row_stored_before(tmp_path: Path, pg_cluster: PostgresCluster) -> None:
    """An SQLite database from before the check may hold a NUL: the export names that row and
    copies nothing, instead of failing as "the database failed"."""
    data = tmp_path / "data"
    with RegistryProcess(data) as registry:
        create_artifact(registry)
        create_version(registry, file=False, artifact_id="ami-1")
        create_version(registry, file=False, artifact_id="ami-2")
    with sqlite3.connect(data / "registry.sqlite3") as db:  # as the older registry stored it
        db.execute("UPDATE versions SET id = ? WHERE version = 2", ("ami-\x002",))
    target = pg_cluster.create_database()
    exported = _atlas_ci("registry", "--data", str(data), "export", "--to", pg_cluster.url(target))
    assert exported.returncode == 2, exported.stderr
    assert exported.stderr.strip().splitlines() == [
        "error: versions row pk=2 (u/n/t version 2): column id holds a NUL character, which "
        "PostgreSQL cannot store; change it in the source database, then export again"
    ]
    assert pg_cluster.password not in exported.stderr
    # Nothing was copied: the target is still empty and a corrected export goes through.
    with sqlite3.connect(data / "registry.sqlite3") as db:
        db.execute("UPDATE versions SET id = 'ami-2' WHERE version = 2")
    again = _atlas_ci("registry", "--data", str(data), "export", "--to", pg_cluster.url(target))
    assert again.returncode == 0, again.stderr


# -- the SQLite database file is the owner's alone ----------------------------------------------


def _modes(directory: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in directory.glob("registry.sqlite3*")}


def test_the_database_and_its_wal_are_0600_in_an_existing_directory(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)  # made beforehand, as a CI step's mkdir -p or a Docker volume
    old = os.umask(0o022)
    try:
        with RegistryProcess(data) as registry:
            create_artifact(registry)  # a write: the -wal and -shm files exist now
            modes = _modes(data)
            assert {"registry.sqlite3", "registry.sqlite3-wal", "registry.sqlite3-shm"} <= set(
                modes
            ), modes
            assert set(modes.values()) == {0o600}, modes
    finally:
        os.umask(old)


def test_export_to_sqlite_in_an_existing_directory_is_0600(
    tmp_path: Path, pg_cluster: PostgresCluster
) -> None:
    data = tmp_path / "data"
    with RegistryProcess(data) as registry:
        create_artifact(registry)
    target = tmp_path / "existing"
    target.mkdir(mode=0o755)
    old = os.umask(0o022)
    try:
        done = _atlas_ci(
            "registry", "--data", str(data), "export", "--to", f"sqlite://{target}/registry.sqlite3"
        )
    finally:
        os.umask(old)
    assert done.returncode == 0, done.stderr
    modes = _modes(target)
    assert "registry.sqlite3" in modes and set(modes.values()) == {0o600}, modes


# -- Host: exactly one on HTTP/1.1 (RFC 9112, section 3.2) -------------------------------------

HOST_CASES = {
    "none": b"",
    "two": b"Host: a.example\r\nHost: b.example\r\n",
    "two, same": b"Host: x\r\nHost: x\r\n",
}


@pytest.mark.parametrize("case", sorted(HOST_CASES))
def test_host_missing_or_repeated_is_400(registry: RegistryProcess, case: str) -> None:
    create_artifact(registry)
    body = b'{"artifact_version": {"file": true}}'
    request = (
        b"POST /api/v1/artifacts/u/n/t HTTP/1.1\r\n"
        + HOST_CASES[case]
        + f"X-Atlas-Token: {registry.token}\r\nContent-Length: {len(body)}\r\n".encode()
        + b"Connection: close\r\n\r\n"
        + body
    )
    answers, _rest = exchange(registry.port, request)
    assert [a.status for a in answers] == [400], answers
    assert json.loads(answers[0].body) == {
        "errors": ["send exactly one Host header (RFC 9112, section 3.2)"]
    }
    found = api(registry, "GET", "/api/v1/artifacts/u/n/t/search", params={"include_pending": "1"})
    assert found.json()["versions"] == []


def test_http_1_0_without_host_is_still_served(registry: RegistryProcess) -> None:
    answers, _ = exchange(
        registry.port,
        f"GET /api/v1/authenticate HTTP/1.0\r\nX-Atlas-Token: {registry.token}\r\n\r\n".encode(),
    )
    assert [a.status for a in answers] == [200]


# -- an upload secret never reaches the access log, however it is escaped ----------------------


def _escaped_forms(secret: str) -> list[str]:
    every = "".join(f"%{b:02X}" for b in secret.encode())
    return [
        f"/binstore%2F{secret}",
        f"/binstore%2f{secret}",
        f"/%62instore/{secret}",
        f"/BINSTORE/{secret}",
        f"/binstore/{every}",
        f"//binstore//{secret}",
        f"/x/../binstore/{secret}",
        f"/binstore/{secret}%2Fmore",
        f"/api/v1/binstore/{secret}",
        f"/binstore/{secret[:20]}%0A{secret[20:]}",
    ]


def test_an_escaped_upload_secret_is_redacted(registry: RegistryProcess) -> None:
    create_artifact(registry)
    secret = create_version(registry)["upload_path"].rsplit("/", 1)[1]
    for target in _escaped_forms(secret):
        head = f"PUT {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        answers, _ = exchange(registry.port, head.encode() + b"Content-Length: 0\r\n\r\n")
        assert answers, target
    assert registry.stop() == 0
    log = registry.stderr_text()
    assert secret not in log
    assert secret[:16] not in log
    assert secret[-16:] not in log
    assert urllib.parse.quote(secret[:16]) not in log
    assert log.count("<redacted>") >= len(_escaped_forms(secret)), log


# -- a 403 tells a token without access nothing about the namespace ----------------------------


@pytest.fixture
def namespaces(registry: RegistryProcess) -> dict[str, str]:
    """acme: an organization (carol reads it); bob: a user; zzz: nothing. Tokens by user."""
    admin(registry, "org", "create", "acme")
    tokens = {user: new_token(registry, user) for user in ("bob", "carol", "dave")}
    admin(registry, "org", "add-member", "acme", "carol", "--role", "read")
    return tokens


def _refusal(registry: RegistryProcess, token: str, namespace: str) -> tuple[int, list[str]]:
    response = requests.post(
        registry.url + "/api/v1/artifacts",
        json={"artifact": {"username": namespace, "name": "web"}},
        headers={"X-Atlas-Token": token},
        timeout=TIMEOUT,
    )
    errors: list[str] = response.json()["errors"]
    return response.status_code, errors


def test_a_stranger_cannot_tell_an_organization_a_user_and_nothing_apart(
    registry: RegistryProcess, namespaces: dict[str, str]
) -> None:
    answers = {ns: _refusal(registry, namespaces["dave"], ns) for ns in ("acme", "bob", "zzz")}
    assert answers == {
        ns: (403, [f"user dave has no write access to namespace {ns}"])
        for ns in ("acme", "bob", "zzz")
    }
    # The version route, where the artifact is in the path, says the same.
    create_artifact(registry, "acme", "web")
    response = requests.post(
        registry.url + "/api/v1/artifacts/acme/web/t",
        json={"artifact_version": {}},
        headers={"X-Atlas-Token": namespaces["dave"]},
        timeout=TIMEOUT,
    )
    assert (response.status_code, response.json()["errors"]) == answers["acme"]


def test_a_member_is_told_the_organization(
    registry: RegistryProcess, namespaces: dict[str, str]
) -> None:
    assert _refusal(registry, namespaces["carol"], "acme") == (
        403,
        ["user carol has no write access to organization acme"],
    )
