"""The metadata index: kept with every version, filled once for a directory made before it."""

from __future__ import annotations

from pathlib import Path

import pytest

from atlas_ci.registry import metadata_index
from atlas_ci.registry.model import MetadataFilter, Search
from atlas_ci.registry.storage import Storage
from tests.registry_inproc import new_version


def _add(storage: Storage, metadata: dict[str, str] | None, type_: str = "t") -> int:
    return new_version(storage, metadata=metadata, artifact_type=type_).version


def _found(storage: Storage, *filters: MetadataFilter, version: str = "any") -> list[int]:
    search = Search(version=version, metadata=filters)  # type: ignore[arg-type]
    return [v.version for v in storage.search("u", "n", "t", search)]


def test_searches_by_key_and_value_use_the_index_and_stay_exact(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "data")
    storage.create_artifact("u", "n")
    _add(storage, {"commit": "a", "region": "eu"})
    _add(storage, {"commit": "b", "region": "us"})
    _add(storage, None)
    _add(storage, {"commit": "a", "region": "us"})
    _add(storage, {"commit": "a"}, type_="other")  # another type: not a match
    assert _found(storage, MetadataFilter("commit", "a")) == [4, 1]
    assert _found(storage, MetadataFilter("commit", "a"), version="latest") == [4]
    assert _found(storage, MetadataFilter("commit")) == [4, 2, 1]
    assert _found(storage, MetadataFilter("commit", "a"), MetadataFilter("region", "eu")) == [1]
    assert _found(storage, MetadataFilter("region", "us"), MetadataFilter("commit", "b")) == [2]
    assert _found(storage, MetadataFilter("commit", "c")) == []
    assert _found(storage, MetadataFilter("COMMIT", "a")) == []
    storage.close()


def test_a_directory_made_before_the_index_is_indexed_when_opened(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "data")
    storage.create_artifact("u", "n")
    _add(storage, {"commit": "a"})
    _add(storage, {"commit": "b"})
    with storage.transaction() as conn:  # as an older atlas-ci left it: no index, no steps
        conn.execute("DROP TABLE metadata_index")
        conn.execute("DROP TABLE schema_features")
        conn.execute("DROP TABLE schema_version")
        conn.execute("PRAGMA user_version = 1")
    storage.close()
    reopened = Storage(tmp_path / "data")
    assert _found(reopened, MetadataFilter("commit", "a")) == [1]
    assert _found(reopened, MetadataFilter("commit")) == [2, 1]
    _add(reopened, {"commit": "a"})
    reopened.close()
    again = Storage(tmp_path / "data")  # filled once: no duplicate rows on the next open
    assert _found(again, MetadataFilter("commit", "a")) == [3, 1]
    again.close()


def test_digests_that_collide_cost_reads_not_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metadata_index, "digest", lambda *parts: 7)  # every key, one digest
    storage = Storage(tmp_path / "data")
    storage.create_artifact("u", "n")
    _add(storage, {"commit": "a"})
    _add(storage, {"commit": "b", "region": "eu"})
    assert _found(storage, MetadataFilter("commit", "a")) == [1]
    assert _found(storage, MetadataFilter("region")) == [2]
    assert _found(storage, MetadataFilter("commit", "c")) == []
    # Another artifact's version 1 shares every index row of this one's: still exact, once.
    storage.create_artifact("u", "other")
    new_version(storage, name="other", metadata={"commit": "a"})
    assert _found(storage, MetadataFilter("commit", "a")) == [1]
    assert _found(storage, MetadataFilter("commit")) == [2, 1]
    storage.close()
