"""Request bodies and search queries of the registry API, parsed without a server."""

from __future__ import annotations

import pytest

from atlas_ci.registry.model import MetadataFilter, Search
from atlas_ci.registry.routes import loggable_target, resolve, split_target
from atlas_ci.registry.wire import (
    BadRequest,
    check_text,
    parse_idempotency_key,
    parse_new_version,
    parse_search,
)


def test_version_body_defaults_are_packers_zero_values() -> None:
    new = parse_new_version({"artifact_version": {}})
    assert (new.build_id, new.compile_id, new.file, new.id, new.metadata) == (0, 0, False, "", None)


def test_version_body_keeps_metadata_and_ignores_unknown_keys() -> None:
    new = parse_new_version(
        {"artifact_version": {"metadata": {"a": "b"}, "file": True, "extra": 1, "build_id": -3}}
    )
    assert new.metadata == {"a": "b"}
    assert new.file is True
    assert new.build_id == -3


def test_search_query_terraform_style() -> None:
    search = parse_search(
        "version=any&build=12&metadata.2.key=b&metadata.1.key=a&metadata.1.value=x"
    )
    assert search == Search(
        version="any",
        build=12,
        metadata=(MetadataFilter("a", "x"), MetadataFilter("b", None)),
    )
    assert parse_search("") == Search(version="latest", build="any")
    assert parse_search("metadata.1.key=k&metadata.1.value=") == Search(
        metadata=(MetadataFilter("k", ""),)
    )


@pytest.mark.parametrize("query", ["version=x", "build=1e3", "metadata.3.value=v", "version=%ff"])
def test_bad_search_queries_are_400(query: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_search(query)
    assert caught.value.status == 400


def test_routes_decode_segments_and_keep_the_query() -> None:
    segments, query = split_target("/api/v1//artifacts/my%20user/web/amazon.ami/search?version=2")
    route = resolve("GET", segments, query)
    assert route.name == "search"
    assert dict(route.params) == {"user": "my user", "name": "web", "type": "amazon.ami"}
    assert route.query == "version=2"
    assert route.operation == "read"
    assert resolve("PUT", ["binstore", "abc"], "").operation is None
    assert resolve("POST", ["api", "v1", "artifacts"], "").operation == "write"
    catalog = resolve("HEAD", ["acme", "web"], "")
    assert (catalog.name, catalog.operation) == ("box_catalog", "read")
    assert dict(catalog.params) == {"user": "acme", "name": "web"}


def test_log_target_cuts_everything_after_binstore() -> None:
    assert loggable_target(["binstore", "s3cret"], "sig=x") == "/binstore/<redacted>"
    assert loggable_target(["%62instore", "s3cret", "x"], "") == "/%62instore/<redacted>"
    assert loggable_target(["api", "v1", "a b"], "version=\n") == "/api/v1/a%20b?version=%0A"
    assert (
        loggable_target(["a"], "version=1&access_token=t&x")
        == "/a?version=1&access_token=<redacted>&x"
    )


@pytest.mark.parametrize(
    "query",
    [
        f"version={2**63}",
        f"build={2**63}",
        f"version={-(2**63) - 1}",
        "version=" + "9" * 5000,
        "version=+1",
        "version=%201",
        "version=1_0",
        "version=%D9%A3",  # ARABIC-INDIC DIGIT THREE: int() would take it
    ],
)
def test_search_numbers_are_ascii_integers_of_64_bits(query: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_search(query)
    assert caught.value.status == 400
    assert len(str(caught.value)) < 200


def test_search_numbers_at_the_64_bit_edges_are_taken() -> None:
    assert parse_search(f"version={2**63 - 1}&build={-(2**63)}") == Search(
        version=2**63 - 1, build=-(2**63)
    )


def test_lone_surrogates_anywhere_in_a_body_are_422() -> None:
    for body in (
        "\ud800",
        {"k": ["x", {"\udfff": "v"}]},
        [[["a\udc00"]]],
    ):
        with pytest.raises(BadRequest) as caught:
            check_text(body)
        assert caught.value.status == 422
    check_text({"k": ["\U0001f600", 1, None, True, 1.5, {"a": "b"}]})


def test_idempotency_keys() -> None:
    assert parse_idempotency_key(None) is None
    assert parse_idempotency_key(" run-1:build-2 ") == "run-1:build-2"
    assert parse_idempotency_key("k" * 255) == "k" * 255
    for bad in ("", " ", "k" * 256, "caf\u00e9", "a\tb", "a\x7fb"):
        with pytest.raises(BadRequest) as caught:
            parse_idempotency_key(bad)
        assert caught.value.status == 400


def test_a_metadata_index_of_thousands_of_digits_is_400() -> None:
    with pytest.raises(BadRequest) as caught:
        parse_search("metadata." + "9" * 5000 + ".key=a")
    assert caught.value.status == 400
    assert parse_search("metadata.000000000000000001.key=a").metadata == (MetadataFilter("a"),)


def test_a_metadata_index_in_another_script_is_no_metadata_filter() -> None:
    # "\u0661" is ARABIC-INDIC DIGIT ONE: \d and int() take it; the query names only ASCII.
    assert parse_search("metadata.\u0661.key=a").metadata == ()
