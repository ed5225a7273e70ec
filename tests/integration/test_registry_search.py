"""Terraform's atlas_artifact search: version, build and metadata filters over ready versions."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.registry_api import api, create_artifact, create_version, publish, search
from tests.registry_proc import RegistryProcess


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    """One registry for the module's read-only searches. u/n/t holds: v1 build 10
    {region: us}, v2 build 11 {region: eu, env: prod}, v3 build 11 {region: us, env: dev},
    v4 pending build 12 {region: us}, v5 without a file, build 9."""
    with RegistryProcess(tmp_path_factory.mktemp("search") / "data") as registry:
        _populate(registry)
        yield registry


def _populate(registry: RegistryProcess) -> None:
    create_artifact(registry)
    publish(registry, b"one", build_id=10, metadata={"region": "us"})
    publish(registry, b"two", build_id=11, metadata={"region": "eu", "env": "prod"})
    publish(registry, b"three", build_id=11, metadata={"region": "us", "env": "dev"})
    create_version(registry, file=True, build_id=12, metadata={"region": "us"})
    create_version(registry, file=False, build_id=9, metadata=None)


def _numbers(registry: RegistryProcess, **params: str) -> list[int]:
    return [v["version"] for v in search(registry, **params)]


def test_latest_is_the_highest_ready_version(populated: RegistryProcess) -> None:
    assert _numbers(populated) == [5]
    assert _numbers(populated, version="latest") == [5]


def test_any_lists_every_ready_version_newest_first(populated: RegistryProcess) -> None:
    assert _numbers(populated, version="any") == [5, 3, 2, 1]


def test_a_version_number_finds_that_version_only_when_ready(populated: RegistryProcess) -> None:
    assert _numbers(populated, version="2") == [2]
    assert _numbers(populated, version="4") == []  # pending
    assert _numbers(populated, version="99") == []


def test_build_filters_on_build_id(populated: RegistryProcess) -> None:
    assert _numbers(populated, build="11") == [3]
    assert _numbers(populated, build="11", version="any") == [3, 2]
    assert _numbers(populated, build="12") == []  # only a pending version has it
    assert _numbers(populated, build="latest", version="any") == [3, 2]


def test_metadata_key_with_and_without_value(populated: RegistryProcess) -> None:
    query = {"metadata.1.key": "region", "metadata.1.value": "us"}
    assert _numbers(populated, **query) == [3]
    assert _numbers(populated, version="any", **query) == [3, 1]
    assert _numbers(populated, version="any", **{"metadata.1.key": "env"}) == [3, 2]
    both = {
        "metadata.1.key": "env",
        "metadata.2.key": "region",
        "metadata.2.value": "eu",
        "version": "any",
    }
    assert _numbers(populated, **both) == [2]
    assert _numbers(populated, **{"metadata.1.key": "nothing"}) == []


def test_search_results_are_flat_version_objects(populated: RegistryProcess) -> None:
    [found] = search(populated, version="1")
    assert found["slug"] == "u/n/t/1"
    assert found["artifact_type"] == "t"
    assert found["metadata"] == {"region": "us"}
    assert found["file"] is True
    assert found["size"] == 3
    assert "upload_path" not in found


def test_a_bad_search_query_is_400(populated: RegistryProcess) -> None:
    for query in ("version=newest", "build=x", "metadata.1.value=v", "version=1.5"):
        response = api(populated, "GET", f"/api/v1/artifacts/u/n/t/search?{query}")
        assert response.status_code == 400, query
        assert response.json()["errors"]


def test_search_on_a_missing_artifact_is_404_and_on_an_unknown_type_empty(
    registry: RegistryProcess,
) -> None:
    assert api(registry, "GET", "/api/v1/artifacts/u/n/t/search").status_code == 404
    create_artifact(registry)
    assert search(registry, "u/n/never.used") == []


def test_metadata_search_is_exact_whatever_the_characters(registry: RegistryProcess) -> None:
    create_artifact(registry)
    odd = {"k%_!": 'a_b!c"d é\\', "plain": "Value"}
    publish(registry, b"odd", metadata=odd)
    publish(registry, b"near", metadata={"k%_!": 'aXb!c"d é\\', "kx_!": "v", "plain": "value"})
    publish(registry, b"last", metadata={"other": "k%_!"})

    def found(*pairs: tuple[str, str | None]) -> list[int]:
        params = {"version": "any"}
        for i, (key, value) in enumerate(pairs, 1):
            params[f"metadata.{i}.key"] = key
            if value is not None:
                params[f"metadata.{i}.value"] = value
        return _numbers(registry, **params)

    assert found(("k%_!", 'a_b!c"d é\\')) == [1]
    assert found(("k%_!", None)) == [2, 1]
    assert found(("K%_!", None)) == []  # keys are case-sensitive
    assert found(("plain", "value")) == [2]
    assert found(("plain", "VALUE")) == []
    assert found(("k%_!", "a%")) == []  # no wildcard reaches the query
    assert found(("k%_!", None), ("plain", "Value")) == [1]
    assert _numbers(registry, **{"metadata.1.key": "k%_!"}) == [2]  # latest
