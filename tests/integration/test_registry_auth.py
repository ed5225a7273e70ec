"""Every API endpoint wants a valid X-Atlas-Token; the upload URL is its own credential."""

from __future__ import annotations

import http.client
from pathlib import Path

import requests

from tests.integration.registry_api import TIMEOUT, api, create_artifact, create_version
from tests.registry_proc import RegistryProcess

API_CALLS = [
    ("GET", "/api/v1/authenticate"),
    ("GET", "/api/v1/artifacts/u/n"),
    ("POST", "/api/v1/artifacts"),
    ("POST", "/api/v1/artifacts/u/n/t"),
    ("GET", "/api/v1/artifacts/u/n/t/search"),
    ("GET", "/api/v1/artifacts/u/n/t/file"),
    ("GET", "/api/v1/artifacts/u/n/t/1/file"),
    ("GET", "/api/v1/no/such/endpoint"),
    ("DELETE", "/api/v1/artifacts/u/n"),
]


def test_every_api_endpoint_refuses_a_missing_or_wrong_token(registry: RegistryProcess) -> None:
    create_artifact(registry)
    create_version(registry, file=True)
    cases: list[tuple[dict[str, str], str, str]] = [
        ({}, method, path) for method, path in API_CALLS
    ] + [
        ({"X-Atlas-Token": token}, method, path)
        for token in ("", "wrong-token", registry.token + "x")
        for method, path in API_CALLS
    ]
    for headers, method, path in cases:
        response = requests.request(
            method,
            registry.url + path,
            headers=headers,
            json={"artifact": {"username": "x", "name": "y"}},
            timeout=TIMEOUT,
        )
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["Content-Type"] == "application/json"
        errors = response.json()["errors"]
        assert errors, (method, path)
        assert all(isinstance(e, str) for e in errors)
    # Nothing was created by the refused calls.
    assert api(registry, "GET", "/api/v1/artifacts/x/y").status_code == 404


def test_a_token_that_is_a_prefix_of_the_real_one_is_refused(registry: RegistryProcess) -> None:
    response = requests.get(
        registry.url + "/api/v1/authenticate",
        headers={"X-Atlas-Token": registry.token[:-1]},
        timeout=TIMEOUT,
    )
    assert response.status_code == 401


def test_a_non_ascii_token_is_refused_not_crashed(registry: RegistryProcess) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", registry.port, timeout=TIMEOUT)
    try:
        conn.putrequest("GET", "/api/v1/authenticate")
        conn.putheader("X-Atlas-Token", "t\xe9st".encode("latin-1"))
        conn.endheaders()
        response = conn.getresponse()
        assert response.status == 401
        response.read()
    finally:
        conn.close()


def test_authenticate_answers_2xx_with_a_user(registry: RegistryProcess) -> None:
    response = api(registry, "GET", "/api/v1/authenticate")
    assert response.status_code == 200
    assert "user" in response.json()


def test_tokens_from_the_environment_are_accepted_besides_the_flag(tmp_path: Path) -> None:
    env = {"ATLAS_REGISTRY_TOKENS": "env-one, env-two,"}
    with RegistryProcess(tmp_path / "data", token="flag-token", env=env) as registry:
        for token, status in [
            ("flag-token", 200),
            ("env-one", 200),
            ("env-two", 200),
            ("env", 401),
        ]:
            response = requests.get(
                registry.url + "/api/v1/authenticate",
                headers={"X-Atlas-Token": token},
                timeout=TIMEOUT,
            )
            assert response.status_code == status, token
