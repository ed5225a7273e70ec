"""``Idempotency-Key`` on the version POST: a retried request gets the version it created."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
import requests

from tests.integration.http_raw import Answer, exchange
from tests.integration.registry_api import api, create_artifact, put_file, search
from tests.registry_proc import RegistryProcess

BODY = {"artifact_version": {"build_id": 111, "compile_id": 7, "file": True, "id": "ami-1"}}


def _post(
    registry: RegistryProcess, key: str | None, body: dict[str, Any] = BODY, slug: str = "u/n/t"
) -> requests.Response:
    headers = {} if key is None else {"Idempotency-Key": key}
    return api(registry, "POST", f"/api/v1/artifacts/{slug}", json=body, headers=headers)


def test_the_registry_announces_the_extension(registry: RegistryProcess) -> None:
    create_artifact(registry)
    authenticate = api(registry, "GET", "/api/v1/authenticate")
    assert authenticate.headers["X-Atlas-Extensions"] == "idempotency-key, write-check"
    assert _post(registry, "k").headers["X-Atlas-Extensions"] == "idempotency-key, write-check"


def test_a_repeated_key_returns_the_first_version_with_its_upload_path(
    registry: RegistryProcess,
) -> None:
    create_artifact(registry)
    first = _post(registry, "build-111-run-1")
    again = _post(registry, "build-111-run-1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert first.json()["upload_path"]
    assert [v["version"] for v in search(registry, version="any", include_pending="1")] == [1]

    # Once the file is there, the same key still names version 1, now without upload_path.
    assert put_file(first.json()["upload_path"], b"box").status_code == 200
    done = _post(registry, "build-111-run-1")
    assert done.status_code == 201
    assert done.json()["version"] == 1
    assert "upload_path" not in done.json()
    assert done.json()["size"] == 3


def test_a_key_survives_a_restart(registry: RegistryProcess) -> None:
    create_artifact(registry)
    first = _post(registry, "k").json()
    registry.restart()
    again = _post(registry, "k").json()
    assert again["version"] == first["version"]
    assert (
        again["upload_path"].split("/binstore/")[1] == first["upload_path"].split("/binstore/")[1]
    )


def test_the_same_key_with_another_body_is_422_and_creates_nothing(
    registry: RegistryProcess,
) -> None:
    create_artifact(registry)
    assert _post(registry, "k").status_code == 201
    other = {"artifact_version": {**BODY["artifact_version"], "build_id": 999}}
    response = _post(registry, "k", other)
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert "Idempotency-Key" in error and "u/n/t/1" in error
    assert len(search(registry, version="any", include_pending="1")) == 1


def test_a_key_belongs_to_one_artifact_type(registry: RegistryProcess) -> None:
    create_artifact(registry)
    assert _post(registry, "k", slug="u/n/t").json()["version"] == 1
    other_type = _post(registry, "k", slug="u/n/other")
    assert other_type.status_code == 201
    assert other_type.json()["slug"] == "u/n/other/1"
    assert _post(registry, "k2", slug="u/n/t").json()["version"] == 2  # a new key, a new one
    assert _post(registry, None, slug="u/n/t").json()["version"] == 3  # no key: as before


def test_a_version_without_a_file_is_returned_again_too(registry: RegistryProcess) -> None:
    create_artifact(registry)
    body = {"artifact_version": {"file": False, "metadata": {"a": "b"}}}
    first = _post(registry, "k", body).json()
    assert _post(registry, "k", body).json() == first
    assert "upload_path" not in first


def _raw_post(registry: RegistryProcess, key_headers: bytes) -> list[Answer]:
    """The version POST as bytes on the socket, with header lines no client would send."""
    body = json.dumps(BODY).encode()
    answers, _ = exchange(
        registry.port,
        b"POST /api/v1/artifacts/u/n/t HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        + f"X-Atlas-Token: {registry.token}\r\nContent-Length: {len(body)}\r\n".encode()
        + key_headers
        + b"\r\n"
        + body,
    )
    return answers


@pytest.mark.parametrize(
    "key", [b"", b"   ", b"k" * 256, "caf\u00e9".encode(), b"caf\xe9", b"a\tb", b"a\x01b"]
)
def test_a_malformed_key_is_400_and_creates_nothing(registry: RegistryProcess, key: bytes) -> None:
    create_artifact(registry)
    answers = _raw_post(registry, b"Idempotency-Key: " + key + b"\r\n")
    assert [a.status for a in answers] == [400]
    assert json.loads(answers[0].body)["errors"]
    assert search(registry, version="any", include_pending="1") == []


def test_a_repeated_key_header_is_400(registry: RegistryProcess) -> None:
    create_artifact(registry)
    answers = _raw_post(registry, b"Idempotency-Key: a\r\nIdempotency-Key: a\r\n")
    assert [a.status for a in answers] == [400]
    assert "Idempotency-Key" in json.loads(answers[0].body)["errors"][0]


def test_the_longest_key_is_accepted(registry: RegistryProcess) -> None:
    create_artifact(registry)
    key = "k" * 255
    assert _post(registry, key).json() == _post(registry, key).json()


def test_simultaneous_posts_with_one_key_create_one_version(registry: RegistryProcess) -> None:
    create_artifact(registry)
    posts = 8
    barrier = threading.Barrier(posts)
    answers: list[requests.Response] = []
    lock = threading.Lock()

    def post() -> None:
        barrier.wait()
        response = _post(registry, "same-key")
        with lock:
            answers.append(response)

    threads = [threading.Thread(target=post) for _ in range(posts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a.status_code for a in answers] == [201] * posts
    assert len({a.json()["upload_path"] for a in answers}) == 1
    assert [v["version"] for v in search(registry, version="any", include_pending="1")] == [1]
