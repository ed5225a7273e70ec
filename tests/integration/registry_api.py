"""Small calls against a running registry, shared by the registry integration tests."""

from __future__ import annotations

import hashlib
from typing import Any

import requests

from tests.registry_proc import RegistryProcess

TIMEOUT = 10


def api(registry: RegistryProcess, method: str, path: str, **kwargs: Any) -> requests.Response:
    """An authenticated call to ``registry.url + path``."""
    headers = {**registry.headers, **kwargs.pop("headers", {})}
    return requests.request(method, registry.url + path, headers=headers, timeout=TIMEOUT, **kwargs)


def create_artifact(registry: RegistryProcess, user: str = "u", name: str = "n") -> None:
    response = api(
        registry, "POST", "/api/v1/artifacts", json={"artifact": {"username": user, "name": name}}
    )
    assert response.status_code == 201, response.text


def create_version(
    registry: RegistryProcess,
    slug: str = "u/n/t",
    *,
    file: bool = True,
    metadata: dict[str, str] | None = None,
    build_id: int = 0,
    compile_id: int = 0,
    artifact_id: str = "",
) -> dict[str, Any]:
    """POST a new version; returns the flat version object (with ``upload_path``)."""
    body = {
        "artifact_version": {
            "build_id": build_id,
            "compile_id": compile_id,
            "file": file,
            "id": artifact_id,
            "metadata": metadata,
        }
    }
    response = api(registry, "POST", f"/api/v1/artifacts/{slug}", json=body)
    assert response.status_code == 201, response.text
    version: dict[str, Any] = response.json()
    return version


def put_file(upload_path: str, data: bytes) -> requests.Response:
    return requests.put(upload_path, data=data, timeout=TIMEOUT)


def publish(registry: RegistryProcess, data: bytes, slug: str = "u/n/t", **fields: Any) -> int:
    """Create a version with a file, upload ``data``; returns the version number."""
    version = create_version(registry, slug, file=True, **fields)
    response = put_file(version["upload_path"], data)
    assert response.status_code in (200, 201), response.text
    assert response.json()["sha256"] == hashlib.sha256(data).hexdigest()
    number: int = version["version"]
    return number


def search(registry: RegistryProcess, slug: str = "u/n/t", **params: str) -> list[dict[str, Any]]:
    response = api(registry, "GET", f"/api/v1/artifacts/{slug}/search", params=params)
    assert response.status_code == 200, response.text
    versions: list[dict[str, Any]] = response.json()["versions"]
    return versions
