"""The registry's storage alone: rows (SQLite and PostgreSQL) and blob files, no HTTP.

Every test here runs on both backends (the ``open_storage`` fixture in tests/conftest.py).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from atlas_ci.registry import model
from atlas_ci.registry.model import (
    Conflict,
    Invalid,
    KeyReused,
    MetadataFilter,
    NotFound,
    Search,
    Version,
)
from atlas_ci.registry.storage import Storage
from atlas_ci.registry.uploads import Upload
from tests.registry_inproc import new_version

Opener = Callable[[Path], Storage]


@pytest.fixture
def storage(tmp_path: Path, open_storage: Opener) -> Storage:
    store = open_storage(tmp_path / "data")
    store.create_artifact("u", "n")
    return store


def _pieces(*pieces: bytes) -> Callable[[memoryview], int]:
    """A reader that hands out ``pieces`` one per call (as a socket does), then EOF."""
    left = list(pieces)

    def read_into(view: memoryview) -> int:
        if not left:
            return 0
        piece = left.pop(0)
        assert len(piece) <= len(view)
        view[: len(piece)] = piece
        return len(piece)

    return read_into


def _receive(upload: Upload, data: bytes) -> None:
    upload.receive(_pieces(data), len(data))


def _upload(store: Storage, secret: str, data: bytes) -> Version:
    upload = store.begin_upload(secret)
    _receive(upload, data)
    return store.finish_upload(upload)


def test_artifact_create_get_and_duplicate(storage: Storage) -> None:
    artifact = storage.get_artifact("u", "n")
    assert artifact is not None
    assert artifact.tag == "u/n"
    assert storage.get_artifact("u", "other") is None
    with pytest.raises(Conflict):
        storage.create_artifact("u", "n")


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "tab\there", "x" * 256])
def test_names_that_cannot_be_a_path_segment_are_invalid(storage: Storage, name: str) -> None:
    with pytest.raises(Invalid):
        storage.create_artifact("u", name)


def test_version_needs_its_artifact(storage: Storage) -> None:
    with pytest.raises(NotFound):
        new_version(storage, user="nobody")


def test_versions_count_per_type_and_start_ready_without_a_file(storage: Storage) -> None:
    first = new_version(storage)
    assert (first.version, first.state) == (1, "ready")
    assert new_version(storage).version == 2
    other = new_version(storage, artifact_type="other")
    assert other.version == 1


def test_racing_threads_get_distinct_consecutive_versions(storage: Storage) -> None:
    numbers: list[int] = []
    barrier = threading.Barrier(16)

    def allocate() -> None:
        barrier.wait(timeout=10)
        numbers.append(new_version(storage).version)

    threads = [threading.Thread(target=allocate) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert sorted(numbers) == list(range(1, 17))


def test_two_storages_on_one_directory_still_allocate_distinct_numbers(
    tmp_path: Path, open_storage: Opener
) -> None:
    one, two = open_storage(tmp_path / "d"), open_storage(tmp_path / "d")
    one.create_artifact("u", "n")
    numbers = [new_version(store).version for store in (one, two, one, two)]
    assert numbers == [1, 2, 3, 4]


def test_a_version_with_a_file_is_pending_until_the_upload_finishes(storage: Storage) -> None:
    version = new_version(storage, secret="s3cret")
    assert version.state == "pending"
    assert storage.search("u", "n", "t", Search(version="any")) == []

    upload = storage.begin_upload("s3cret")
    upload.receive(_pieces(b"hello ", b"world"), 11)
    ready = storage.finish_upload(upload)

    assert ready.state == "ready"
    assert ready.size == 11
    assert ready.sha256 == hashlib.sha256(b"hello world").hexdigest()
    assert storage.blob_path(ready).read_bytes() == b"hello world"
    assert storage.search("u", "n", "t", Search()) == [ready]
    assert list(storage.tmp_dir.iterdir()) == []


def test_an_aborted_upload_leaves_no_file_and_the_secret_usable(storage: Storage) -> None:
    new_version(storage, secret="s3cret")
    upload = storage.begin_upload("s3cret")
    upload.receive(_pieces(b"partial"), 100)
    assert upload.size == 7
    upload.abort()
    assert list(storage.tmp_dir.iterdir()) == []
    assert storage.search("u", "n", "t", Search(version="any")) == []
    assert _upload(storage, "s3cret", b"whole").size == 5


def test_upload_secrets_are_stored_hashed_and_single_use(storage: Storage) -> None:
    new_version(storage, secret="s3cret")
    with pytest.raises(NotFound):
        storage.begin_upload("wrong")
    _upload(storage, "s3cret", b"data")
    with pytest.raises(Conflict):
        storage.begin_upload("s3cret")
    with storage.db.connection() as conn:
        stored = [row[0] for row in conn.execute("SELECT upload_secret FROM versions").fetchall()]
    assert "s3cret" not in stored


def test_of_two_racing_uploads_the_first_to_finish_wins(storage: Storage) -> None:
    new_version(storage, secret="s3cret")
    first, second = storage.begin_upload("s3cret"), storage.begin_upload("s3cret")
    _receive(first, b"first")
    _receive(second, b"second")
    storage.finish_upload(first)
    with pytest.raises(Conflict):
        storage.finish_upload(second)
    [version] = storage.search("u", "n", "t", Search())
    assert storage.blob_path(version).read_bytes() == b"first"
    assert list(storage.tmp_dir.iterdir()) == []


def test_search_filters(storage: Storage) -> None:
    new_version(storage, build_id=1, metadata={"region": "us"})
    new_version(storage, build_id=2, metadata={"region": "eu", "env": "prod"})
    new_version(storage, build_id=2, metadata={})
    new_version(storage, build_id=3, metadata=None)

    def numbers(search: Search) -> list[int]:
        return [v.version for v in storage.search("u", "n", "t", search)]

    assert numbers(Search()) == [4]
    assert numbers(Search(version="any")) == [4, 3, 2, 1]
    assert numbers(Search(version=2)) == [2]
    assert numbers(Search(version="any", build=2)) == [3, 2]
    assert numbers(Search(build="latest")) == [4]
    assert numbers(Search(version="any", metadata=(MetadataFilter("region"),))) == [2, 1]
    assert numbers(Search(metadata=(MetadataFilter("region", "us"),))) == [1]
    assert numbers(Search(metadata=(MetadataFilter("region", "us"), MetadataFilter("env")))) == []


def test_search_latest_reads_one_row_however_many_versions_there_are(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    for build in (3, 1, 2, 1):
        new_version(storage, build_id=build)
    read: list[int] = []
    original = Storage._version

    def counting(row: Sequence[object]) -> Version:
        read.append(1)
        return original(row)

    monkeypatch.setattr(Storage, "_version", staticmethod(counting))
    assert [v.version for v in storage.search("u", "n", "t", Search())] == [4]
    assert [v.version for v in storage.search("u", "n", "t", Search(build="latest"))] == [1]
    assert [v.version for v in storage.search("u", "n", "t", Search(build=2))] == [3]
    assert len(read) == 3


def test_metadata_null_and_empty_are_kept_apart(storage: Storage) -> None:
    new_version(storage, metadata=None)
    new_version(storage, metadata={})
    assert [v.metadata for v in storage.search("u", "n", "t", Search(version="any"))] == [{}, None]


def test_everything_survives_reopening(tmp_path: Path, open_storage: Opener) -> None:
    store = open_storage(tmp_path / "d")
    store.create_artifact("u", "n")
    new_version(store, secret="a")
    ready = _upload(store, "a", b"kept")
    new_version(store, secret="b")  # pending
    store.close()

    reopened = open_storage(tmp_path / "d")
    assert reopened.get_artifact("u", "n") is not None
    assert reopened.search("u", "n", "t", Search(version="any")) == [ready]
    assert reopened.blob_path(ready).read_bytes() == b"kept"
    assert _upload(reopened, "b", b"late").version == 2
    assert new_version(reopened).version == 3


def test_opening_removes_leftover_temp_files(tmp_path: Path, open_storage: Opener) -> None:
    store = open_storage(tmp_path / "d")
    (store.tmp_dir / "upload-1-crashed").write_bytes(b"half")
    store.close()
    assert list(open_storage(tmp_path / "d").tmp_dir.iterdir()) == []


def test_opening_keeps_uploads_in_flight_and_files_that_are_not_ours(
    storage: Storage, open_storage: Opener
) -> None:
    new_version(storage, secret="s3cret")
    upload = storage.begin_upload("s3cret")
    tmp = storage.tmp_dir
    (tmp / "notes.txt").write_bytes(b"someone else's")
    (tmp / "upload-7-link").symlink_to(tmp / "notes.txt")
    (tmp / "upload-8-dir").mkdir()
    (tmp / "upload-9-crashed").write_bytes(b"half")  # ours and unlocked: removed

    open_storage(storage.data_dir).close()  # another server starting while the body arrives
    upload.receive(_pieces(b"whole"), 5)
    upload.seal()
    open_storage(storage.data_dir).close()  # and again between the fsync and the rename
    ready = storage.finish_upload(upload)

    assert storage.blob_path(ready).read_bytes() == b"whole"
    assert sorted(p.name for p in tmp.iterdir()) == ["notes.txt", "upload-7-link", "upload-8-dir"]


def test_an_idempotency_key_returns_the_version_it_created(storage: Storage) -> None:
    first = new_version(storage, secret="one", idempotency_key="k", build_id=111)
    again = new_version(storage, secret="two", idempotency_key="k", build_id=111)
    assert again == first
    assert storage.pending_upload_secret(again) == "one"
    assert new_version(storage, secret="three", idempotency_key="other", build_id=111).version == 2
    with pytest.raises(KeyReused, match="u/n/t/1"):
        new_version(storage, secret="four", idempotency_key="k", build_id=999)
    assert len(storage.search("u", "n", "t", Search(version="any", include_pending=True))) == 2


def test_idempotency_keys_are_stored_hashed(storage: Storage) -> None:
    new_version(storage, idempotency_key="derived-from-a-secret")
    with storage.db.connection() as conn:
        dump = repr(conn.execute("SELECT * FROM idempotency_keys").fetchall())
    assert "derived-from-a-secret" not in dump
    assert hashlib.sha256(b"derived-from-a-secret").hexdigest() in dump


def test_idempotency_keys_are_forgotten_after_a_day_not_before(storage: Storage) -> None:
    new_version(storage, idempotency_key="old")
    new_version(storage, idempotency_key="recent")
    with storage.db.connection() as conn:
        conn.execute(
            "UPDATE idempotency_keys SET created = ? WHERE version_pk = 1",
            ("2000-01-01T00:00:00.000Z",),
        )
    new_version(storage, idempotency_key="new")  # a new key prunes the expired ones
    with storage.db.connection() as conn:
        (kept,) = conn.execute("SELECT COUNT(*) FROM idempotency_keys").fetchone()
    assert kept == 2
    assert new_version(storage, idempotency_key="recent").version == 2
    assert new_version(storage, idempotency_key="old").version == 4  # expired: a new version


def test_build_ids_beyond_64_bits_are_invalid(storage: Storage) -> None:
    with pytest.raises(Invalid):
        new_version(storage, build_id=2**63)


@pytest.mark.parametrize("char", ["\x00", "\x01", "\x1f", "\x7f"])
def test_validate_name_refuses_every_control_character_nul_first(char: str) -> None:
    """The storage-level name check is the last line behind the HTTP layer's NUL refusal: a
    check loosened to ``0 < ord(c) < 0x20`` would let ``a\\x00`` through to a database."""
    with pytest.raises(model.Invalid, match="control characters"):
        model.validate_name("username", f"a{char}")
