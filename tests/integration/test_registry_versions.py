"""Artifacts and versions: the calls Packer's post-processor makes, answered per the contract."""

from __future__ import annotations

import http.client
import json
from typing import Any

from tests.integration.registry_api import TIMEOUT, api, create_artifact, create_version, search
from tests.registry_proc import RegistryProcess


def test_artifact_is_404_until_created_then_found(registry: RegistryProcess) -> None:
    missing = api(registry, "GET", "/api/v1/artifacts/hashicorp/web")
    assert missing.status_code == 404
    assert missing.json()["errors"]

    created = api(
        registry,
        "POST",
        "/api/v1/artifacts",
        json={"artifact": {"username": "hashicorp", "name": "web"}},
    )
    assert created.status_code == 201
    assert created.json()["artifact"]["tag"] == "hashicorp/web"

    found = api(registry, "GET", "/api/v1/artifacts/hashicorp/web")
    assert found.status_code == 200
    artifact = found.json()["artifact"]
    assert (artifact["username"], artifact["name"], artifact["tag"]) == (
        "hashicorp",
        "web",
        "hashicorp/web",
    )


def test_creating_an_existing_artifact_is_422_with_errors(registry: RegistryProcess) -> None:
    create_artifact(registry)
    again = api(
        registry, "POST", "/api/v1/artifacts", json={"artifact": {"username": "u", "name": "n"}}
    )
    assert again.status_code == 422
    assert "already exists" in again.json()["errors"][0]


def test_a_bad_artifact_body_is_422(registry: RegistryProcess) -> None:
    for body in [
        b"not json",
        b"",
        b"[]",
        b'{"artifact": null}',
        b'{"artifact": {"username": "u"}}',
        b'{"artifact": {"username": "u", "name": 5}}',
        b'{"artifact": {"username": "", "name": "n"}}',
        b'{"artifact": {"username": "a/b", "name": "n"}}',
        b'{"artifact": {"username": "u", "name": ".."}}',
    ]:
        response = api(
            registry,
            "POST",
            "/api/v1/artifacts",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 422, (body, response.text)
        assert response.json()["errors"]


def test_version_post_answers_the_flat_object_with_numbers_counting_up(
    registry: RegistryProcess,
) -> None:
    create_artifact(registry, "hashicorp", "web")
    first = create_version(
        registry,
        "hashicorp/web/amazon.ami",
        file=False,
        build_id=7,
        compile_id=8,
        artifact_id="us-east-1:ami-1111",
        metadata={"region.us-east-1": "ami-1111"},
    )
    assert first["version"] == 1
    assert first["username"] == "hashicorp"
    assert first["name"] == "web"
    assert first["artifact_type"] == "amazon.ami"
    assert first["id"] == "us-east-1:ami-1111"
    assert first["metadata"] == {"region.us-east-1": "ami-1111"}
    assert first["file"] is False
    assert first["slug"] == "hashicorp/web/amazon.ami/1"
    assert (first["build_id"], first["compile_id"]) == (7, 8)
    assert first["created_at"].endswith("Z")
    assert "upload_path" not in first
    assert "version" not in first or isinstance(first["version"], int)

    numbers = [
        create_version(registry, "hashicorp/web/amazon.ami", file=False)["version"]
        for _ in range(2)
    ]
    assert numbers == [2, 3]
    # Another type counts on its own.
    assert create_version(registry, "hashicorp/web/vagrant.box", file=False)["version"] == 1


def test_version_with_a_file_gets_an_upload_path_on_the_addressed_host(
    registry: RegistryProcess,
) -> None:
    create_artifact(registry)
    version = create_version(registry, file=True)
    assert version["upload_path"].startswith(registry.url + "/binstore/")
    secret = version["upload_path"].rsplit("/", 1)[1]
    assert len(secret) >= 43  # 32 random bytes, urlsafe base64

    conn = http.client.HTTPConnection("127.0.0.1", registry.port, timeout=TIMEOUT)
    try:
        body = json.dumps({"artifact_version": {"file": True, "metadata": None}})
        conn.request(
            "POST",
            "/api/v1/artifacts/u/n/t",
            body=body,
            headers={**registry.headers, "Host": "registry.example:8443"},
        )
        response = conn.getresponse()
        answer: dict[str, Any] = json.loads(response.read())
    finally:
        conn.close()
    assert response.status == 201
    assert answer["upload_path"].startswith("http://registry.example:8443/binstore/")


def test_metadata_null_and_empty_object_stay_distinct(registry: RegistryProcess) -> None:
    create_artifact(registry)
    assert create_version(registry, file=False, metadata=None)["metadata"] is None
    assert create_version(registry, file=False, metadata={})["metadata"] == {}
    versions = api(registry, "GET", "/api/v1/artifacts/u/n/t/search?version=any").json()
    assert [v["metadata"] for v in versions["versions"]] == [{}, None]


def test_version_for_a_missing_artifact_is_404(registry: RegistryProcess) -> None:
    response = api(
        registry, "POST", "/api/v1/artifacts/nobody/nothing/t", json={"artifact_version": {}}
    )
    assert response.status_code == 404
    assert response.json()["errors"]
    assert api(registry, "GET", "/api/v1/artifacts/nobody/nothing").status_code == 404


def test_a_bad_version_body_is_422(registry: RegistryProcess) -> None:
    create_artifact(registry)
    bad: list[dict[str, Any]] = [
        {"metadata": {"k": 5}},
        {"metadata": ["k"]},
        {"metadata": "k=v"},
        {"build_id": "5"},
        {"build_id": True},
        {"compile_id": 1.5},
        {"build_id": 2**63},
        {"file": "yes"},
        {"id": 5},
    ]
    for version in bad:
        response = api(
            registry, "POST", "/api/v1/artifacts/u/n/t", json={"artifact_version": version}
        )
        assert response.status_code == 422, (version, response.text)
        assert response.json()["errors"]
    assert search(registry, version="any") == []


def test_a_version_body_without_the_wrapper_is_422(registry: RegistryProcess) -> None:
    create_artifact(registry)
    response = api(registry, "POST", "/api/v1/artifacts/u/n/t", json={"file": False})
    assert response.status_code == 422
