"""The box service (atlas_ci/registry/boxes.py) on its storage, no HTTP: boxes, named versions,
providers, releases, uploads, deletion, access and search.

Every test runs on both backends (the ``open_storage`` fixture in tests/conftest.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from atlas_ci.registry import box_tables, schema
from atlas_ci.registry.accounts import Accounts
from atlas_ci.registry.boxes import (
    Boxes,
    BoxQuery,
    Exists,
    FileConflict,
    Invalid,
    NotFound,
    ProviderUpload,
    Refused,
    status_of,
)
from atlas_ci.registry.database import Database, open_database
from atlas_ci.registry.identity import ADMIN, ANONYMOUS, Identity, identify
from atlas_ci.registry.migrate import copy
from atlas_ci.registry.storage import SCHEMA_VERSION, STEPS, Storage
from tests.postgres import BACKENDS, PostgresCluster
from tests.registry_inproc import new_version

Opener = Callable[[Path], Storage]
A = ADMIN


@pytest.fixture
def storage(tmp_path: Path, open_storage: Opener) -> Storage:
    return open_storage(tmp_path / "data")


@pytest.fixture
def boxes(storage: Storage) -> Boxes:
    return Boxes(storage, Accounts(storage))


def _reader(data: bytes) -> Callable[[memoryview], int]:
    left = [data]

    def read_into(view: memoryview) -> int:
        if not left:
            return 0
        piece = left.pop()
        view[: len(piece)] = piece
        return len(piece)

    return read_into


def _put(boxes: Boxes, secret: str, data: bytes, length: int | None = None) -> ProviderUpload:
    upload = boxes.begin_upload(secret)
    upload.receive(_reader(data), len(data) if length is None else length)
    return upload


def _upload(boxes: Boxes, version: str, provider: str, data: bytes, box: str = "web") -> str:
    """Upload ``data`` as the provider's file through a fresh target; the callback id."""
    target = boxes.upload_target(A, "acme", box, version, provider)
    boxes.finish_upload(_put(boxes, target.secret, data))
    return target.callback


def _published(boxes: Boxes, version: str = "1.0.0", data: bytes = b"box") -> None:
    """acme/web (made if missing) with ``version`` released, one virtualbox file."""
    with contextlib.suppress(Exists):
        boxes.create_box(A, "acme", "web")
    boxes.create_version(A, "acme", "web", version)
    boxes.create_provider(A, "acme", "web", version, "virtualbox")
    _upload(boxes, version, "virtualbox", data)
    boxes.release_version(A, "acme", "web", version)


def _files(storage: Storage) -> list[str]:
    return sorted(p.name for p in storage.files_dir.iterdir())


# -- boxes --------------------------------------------------------------------------------------


def test_a_box_is_the_artifact_of_its_name(boxes: Boxes, storage: Storage) -> None:
    box = boxes.create_box(A, "acme", "web", short_description="a web box", description="long")
    assert (box.tag, box.private, box.downloads) == ("acme/web", True, 0)
    assert storage.get_artifact("acme", "web") is not None
    with pytest.raises(Exists):
        boxes.create_box(A, "acme", "web")
    storage.create_artifact("acme", "atlas-made")  # an Atlas artifact is a box too
    assert boxes.get_box(A, "acme", "atlas-made").short_description == ""
    updated = boxes.update_box(A, "acme", "web", description="new", private=False)
    assert (updated.short_description, updated.description, updated.private) == (
        "a web box",
        "new",
        False,
    )
    assert Accounts(storage).visibility("acme", "web") == "public"


@pytest.mark.parametrize(
    ("user", "name"), [("api", "web"), ("acme", "we b"), ("acme", ""), ("", "x")]
)
def test_a_box_name_that_is_not_a_namespace_and_name_is_invalid(
    boxes: Boxes, user: str, name: str
) -> None:
    with pytest.raises(Invalid):
        boxes.create_box(A, user, name)


def test_missing_things_are_not_found(boxes: Boxes) -> None:
    with pytest.raises(NotFound):
        boxes.get_box(A, "acme", "nothing")
    boxes.create_box(A, "acme", "web")
    with pytest.raises(NotFound):
        boxes.get_version(A, "acme", "web", "1.0.0")
    with pytest.raises(NotFound):
        boxes.get_version(A, "acme", "web", "not a version")
    boxes.create_version(A, "acme", "web", "1.0.0")
    with pytest.raises(NotFound):
        boxes.get_provider(A, "acme", "web", "1.0.0", "virtualbox")


# -- versions ------------------------------------------------------------------------------------


def test_versions_come_newest_first_in_vagrants_order(boxes: Boxes) -> None:
    boxes.create_box(A, "acme", "web")
    for version in ["1.9.0", "1.10.0", "1.0.0.rc1", "1.0.0", "2026.12.07"]:
        assert boxes.create_version(A, "acme", "web", version).status == "unreleased"
    names = [v.version for v in boxes.versions(A, "acme", "web")]
    assert names == ["2026.12.07", "1.10.0", "1.9.0", "1.0.0", "1.0.0.rc1"]
    assert [v.version for v in boxes.versions(A, "acme", "web", limit=2)] == names[:2]


def test_a_version_twice_or_equal_in_vagrants_order_exists(boxes: Boxes) -> None:
    boxes.create_box(A, "acme", "web")
    boxes.create_version(A, "acme", "web", "1.0.0")
    with pytest.raises(Exists, match=r"already has version 1\.0\.0"):
        boxes.create_version(A, "acme", "web", "1.0.0")
    with pytest.raises(Exists, match=r"1\.0\.0 \(which Vagrant reads as 1\.0\)"):
        boxes.create_version(A, "acme", "web", "1.0")
    assert boxes.get_version(A, "acme", "web", "1.0").version == "1.0.0"


def test_an_invalid_version_is_a_clear_422(boxes: Boxes) -> None:
    boxes.create_box(A, "acme", "web")
    with pytest.raises(Invalid, match=r"'v1\.0' is not a version Vagrant accepts") as caught:
        boxes.create_version(A, "acme", "web", "v1.0")
    assert status_of(caught.value) == 422


def test_release_needs_an_installable_provider(boxes: Boxes) -> None:
    boxes.create_box(A, "acme", "web")
    boxes.create_version(A, "acme", "web", "1.0.0")
    with pytest.raises(Invalid, match="no provider with an uploaded file or a url"):
        boxes.release_version(A, "acme", "web", "1.0.0")
    boxes.create_provider(A, "acme", "web", "1.0.0", "virtualbox")  # no file yet
    with pytest.raises(Invalid, match="no provider"):
        boxes.release_version(A, "acme", "web", "1.0.0")
    boxes.create_provider(A, "acme", "web", "1.0.0", "libvirt", url="https://example.org/l.box")
    assert boxes.release_version(A, "acme", "web", "1.0.0").status == "active"
    with pytest.raises(Invalid, match="already been released"):
        boxes.release_version(A, "acme", "web", "1.0.0")


def test_revoke_and_release_again(boxes: Boxes) -> None:
    _published(boxes)
    boxes.create_version(A, "acme", "web", "2.0.0")
    with pytest.raises(Invalid, match="not released"):
        boxes.revoke_version(A, "acme", "web", "2.0.0")
    assert boxes.revoke_version(A, "acme", "web", "1.0.0").status == "revoked"
    assert boxes.catalog(A, "acme", "web", 10) == []
    assert boxes.current_version(A, "acme", "web") is None
    assert boxes.release_version(A, "acme", "web", "1.0.0").status == "active"
    current = boxes.current_version(A, "acme", "web")
    assert current is not None and current.version == "1.0.0"


def test_only_an_unreleased_version_may_be_renamed(boxes: Boxes) -> None:
    boxes.create_box(A, "acme", "web")
    boxes.create_version(A, "acme", "web", "1.0.0")
    renamed = boxes.update_version(A, "acme", "web", "1.0.0", new_version="1.1.0", description="d")
    assert (renamed.version, renamed.description) == ("1.1.0", "d")
    _published(boxes, "2.0.0")
    with pytest.raises(Invalid, match="only an unreleased version may be renamed"):
        boxes.update_version(A, "acme", "web", "2.0.0", new_version="3.0.0")
    with pytest.raises(Exists):
        boxes.update_version(A, "acme", "web", "1.1.0", new_version="2.0")


def test_the_catalog_lists_active_versions_with_installable_providers_newest_first(
    boxes: Boxes,
) -> None:
    _published(boxes, "1.9.0")
    _published(boxes, "1.10.0")
    boxes.create_provider(A, "acme", "web", "1.10.0", "libvirt")  # no file: not listed
    boxes.create_version(A, "acme", "web", "2.0.0")  # unreleased: not listed
    boxes.create_provider(A, "acme", "web", "2.0.0", "virtualbox")
    _upload(boxes, "2.0.0", "virtualbox", b"new")
    catalog = boxes.catalog(A, "acme", "web", 10)
    assert [(v.version, [p.name for p in v.providers]) for v in catalog] == [
        ("1.10.0", ["virtualbox"]),
        ("1.9.0", ["virtualbox"]),
    ]
    assert catalog[0].providers[0].sha256 == hashlib.sha256(b"box").hexdigest()
    assert [v.version for v in boxes.catalog(A, "acme", "web", 1)] == ["1.10.0"]
    # An unreleased version's file stays downloadable to readers.
    assert boxes.open_file(A, "acme", "web", "2.0.0", "virtualbox").path.read_bytes() == b"new"


# -- providers -----------------------------------------------------------------------------------


def test_a_provider_twice_is_exists_and_names_are_checked(boxes: Boxes) -> None:
    boxes.create_box(A, "acme", "web")
    boxes.create_version(A, "acme", "web", "1.0.0")
    boxes.create_provider(A, "acme", "web", "1.0.0", "virtualbox")
    with pytest.raises(Exists, match="already has provider virtualbox") as caught:
        boxes.create_provider(A, "acme", "web", "1.0.0", "virtualbox")
    assert status_of(caught.value) == 422
    for bad in ["", "virtual box", "x" * 65, "../x"]:
        with pytest.raises(Invalid):
            boxes.create_provider(A, "acme", "web", "1.0.0", bad)
    with pytest.raises(Invalid, match="not an absolute http"):
        boxes.create_provider(A, "acme", "web", "1.0.0", "libvirt", url="ftp://x/y")
    with pytest.raises(Invalid, match="sha256 digest"):
        boxes.create_provider(
            A, "acme", "web", "1.0.0", "libvirt", checksum="ab", checksum_type="sha256"
        )


def test_update_a_provider(boxes: Boxes) -> None:
    boxes.create_box(A, "acme", "web")
    boxes.create_version(A, "acme", "web", "1.0.0")
    boxes.create_provider(A, "acme", "web", "1.0.0", "virtualbox", url="https://h/a.box")
    boxes.create_provider(A, "acme", "web", "1.0.0", "libvirt")
    with pytest.raises(Exists):
        boxes.update_provider(A, "acme", "web", "1.0.0", "libvirt", new_name="virtualbox")
    moved = boxes.update_provider(
        A, "acme", "web", "1.0.0", "virtualbox", new_name="vmware_desktop", url=""
    )
    assert (moved.name, moved.url) == ("vmware_desktop", None)


# -- uploads -------------------------------------------------------------------------------------


def test_an_upload_url_is_handed_out_again_until_used_then_spent(boxes: Boxes) -> None:
    boxes.create_box(A, "acme", "web")
    boxes.create_version(A, "acme", "web", "1.0.0")
    boxes.create_provider(A, "acme", "web", "1.0.0", "virtualbox")
    first = boxes.upload_target(A, "acme", "web", "1.0.0", "virtualbox")
    assert boxes.upload_target(A, "acme", "web", "1.0.0", "virtualbox") == first
    assert boxes.get_provider(A, "acme", "web", "1.0.0", "virtualbox").file_state == "pending"
    provider = boxes.finish_upload(_put(boxes, first.secret, b"the box"))
    assert (provider.file_state, provider.size) == ("ready", 7)
    assert provider.sha256 == hashlib.sha256(b"the box").hexdigest()
    with pytest.raises(FileConflict, match="already used") as caught:
        boxes.begin_upload(first.secret)
    assert status_of(caught.value) == 409
    with pytest.raises(NotFound):
        boxes.begin_upload("no-such-secret")
    assert boxes.upload_target(A, "acme", "web", "1.0.0", "virtualbox") != first


def test_a_put_cut_short_leaves_the_provider_without_a_file(boxes: Boxes, storage: Storage) -> None:
    boxes.create_box(A, "acme", "web")
    boxes.create_version(A, "acme", "web", "1.0.0")
    boxes.create_provider(A, "acme", "web", "1.0.0", "virtualbox")
    target = boxes.upload_target(A, "acme", "web", "1.0.0", "virtualbox")
    upload = _put(boxes, target.secret, b"half", length=100)
    assert upload.size == 4
    upload.abort()  # what the server does with a short body
    provider = boxes.get_provider(A, "acme", "web", "1.0.0", "virtualbox")
    assert (provider.file_state, provider.sha256) == ("pending", None)
    assert list(storage.tmp_dir.iterdir()) == []
    with pytest.raises(NotFound):
        boxes.open_file(A, "acme", "web", "1.0.0", "virtualbox")
    # The same URL takes the whole file afterwards.
    boxes.finish_upload(_put(boxes, target.secret, b"whole"))
    assert boxes.open_file(A, "acme", "web", "1.0.0", "virtualbox").path.read_bytes() == b"whole"


def test_the_callback_is_spent_once_for_its_own_provider_after_the_file(boxes: Boxes) -> None:
    boxes.create_box(A, "acme", "web")
    boxes.create_version(A, "acme", "web", "1.0.0")
    for provider in ("virtualbox", "libvirt"):
        boxes.create_provider(A, "acme", "web", "1.0.0", provider)
    vbox = boxes.upload_target(A, "acme", "web", "1.0.0", "virtualbox")
    libvirt = boxes.upload_target(A, "acme", "web", "1.0.0", "libvirt")
    with pytest.raises(Invalid, match="no file has arrived"):
        boxes.complete_upload(A, "acme", "web", "1.0.0", "virtualbox", vbox.callback)
    boxes.finish_upload(_put(boxes, vbox.secret, b"v"))
    with pytest.raises(FileConflict, match="another provider"):
        boxes.complete_upload(A, "acme", "web", "1.0.0", "virtualbox", libvirt.callback)
    done = boxes.complete_upload(A, "acme", "web", "1.0.0", "virtualbox", vbox.callback)
    assert done.hosted
    with pytest.raises(FileConflict, match="already"):
        boxes.complete_upload(A, "acme", "web", "1.0.0", "virtualbox", vbox.callback)


def test_a_released_provider_takes_the_same_bytes_again_but_no_other(
    boxes: Boxes, storage: Storage
) -> None:
    _published(boxes, data=b"released")
    _upload(boxes, "1.0.0", "virtualbox", b"released")  # vagrant cloud publish, again
    target = boxes.upload_target(A, "acme", "web", "1.0.0", "virtualbox")
    with pytest.raises(FileConflict, match="different file cannot replace it"):
        boxes.finish_upload(_put(boxes, target.secret, b"other bytes"))
    assert boxes.open_file(A, "acme", "web", "1.0.0", "virtualbox").path.read_bytes() == b"released"
    assert list(storage.tmp_dir.iterdir()) == []
    # Unreleased (revoked), its file may change.
    boxes.revoke_version(A, "acme", "web", "1.0.0")
    boxes.finish_upload(_put(boxes, target.secret, b"other bytes"))
    assert (
        boxes.open_file(A, "acme", "web", "1.0.0", "virtualbox").sha256
        == hashlib.sha256(b"other bytes").hexdigest()
    )


def test_a_declared_sha256_must_match_the_file(boxes: Boxes) -> None:
    boxes.create_box(A, "acme", "web")
    boxes.create_version(A, "acme", "web", "1.0.0")
    digest = hashlib.sha256(b"right").hexdigest()
    boxes.create_provider(
        A, "acme", "web", "1.0.0", "virtualbox", checksum=digest, checksum_type="sha256"
    )
    target = boxes.upload_target(A, "acme", "web", "1.0.0", "virtualbox")
    with pytest.raises(Invalid, match="not the checksum declared"):
        boxes.finish_upload(_put(boxes, target.secret, b"wrong"))
    assert boxes.finish_upload(_put(boxes, target.secret, b"right")).sha256 == digest


# -- deleting ------------------------------------------------------------------------------------


def test_deleting_frees_the_files_only_the_deleted_used(boxes: Boxes, storage: Storage) -> None:
    _published(boxes, "1.0.0", b"one")
    _published(boxes, "2.0.0", b"two")
    boxes.create_provider(A, "acme", "web", "2.0.0", "libvirt")
    _upload(boxes, "2.0.0", "libvirt", b"two-l")
    assert len(_files(storage)) == 3
    boxes.delete_provider(A, "acme", "web", "2.0.0", "libvirt")
    assert len(_files(storage)) == 2
    boxes.delete_version(A, "acme", "web", "1.0.0")
    assert [v.version for v in boxes.versions(A, "acme", "web")] == ["2.0.0"]
    remaining = boxes.open_file(A, "acme", "web", "2.0.0", "virtualbox").path
    assert _files(storage) == [remaining.name]
    boxes.delete_box(A, "acme", "web")
    assert _files(storage) == []
    assert storage.get_artifact("acme", "web") is None
    with pytest.raises(NotFound):
        boxes.get_box(A, "acme", "web")


def test_an_atlas_versions_file_is_kept_when_its_provider_is_deleted(
    boxes: Boxes, storage: Storage
) -> None:
    storage.create_artifact("acme", "web")
    atlas = _atlas_box(
        boxes, storage, b"atlas file", {"version": "1.0.0", "provider": "virtualbox"}
    )
    assert boxes.open_file(A, "acme", "web", "1.0.0", "virtualbox").path == storage.blob_path(atlas)
    boxes.delete_box(A, "acme", "web")
    assert storage.blob_path(atlas).read_bytes() == b"atlas file"
    assert storage.get_artifact("acme", "web") is not None  # the Atlas API still has it
    assert boxes.versions(A, "acme", "web") == []


# -- Atlas uploads land in the model -------------------------------------------------------------


def _atlas_box(
    boxes: Boxes, storage: Storage, data: bytes, metadata: dict[str, str] | None
) -> object:
    secret = hashlib.sha256(data + repr(metadata).encode()).hexdigest()
    version = storage.create_version(
        "acme",
        "web",
        "vagrant.box",
        artifact_id="",
        build_id=0,
        compile_id=0,
        metadata=metadata,
        file=True,
        upload_secret=secret,
        landing=boxes.atlas_version_hook(metadata),
    )
    upload = storage.begin_upload(secret)
    upload.receive(_reader(data), len(data))
    return storage.finish_upload(upload) if version else None


def test_atlas_uploads_with_one_version_make_one_box_version_with_two_providers(
    boxes: Boxes, storage: Storage
) -> None:
    storage.create_artifact("acme", "web")
    _atlas_box(boxes, storage, b"vbox", {"version": "1.0.0", "provider": "virtualbox"})
    _atlas_box(boxes, storage, b"libvirt", {"version": "1.0.0", "provider": "libvirt"})
    [version] = boxes.catalog(A, "acme", "web", 10)
    assert (version.version, version.status) == ("1.0.0", "active")
    assert [(p.name, p.atlas_version, p.sha256) for p in version.providers] == [
        ("libvirt", 2, hashlib.sha256(b"libvirt").hexdigest()),
        ("virtualbox", 1, hashlib.sha256(b"vbox").hexdigest()),
    ]


def test_a_provider_already_in_the_version_refuses_the_atlas_version(
    boxes: Boxes, storage: Storage
) -> None:
    storage.create_artifact("acme", "web")
    meta = {"version": "1.0.0", "provider": "virtualbox"}
    _atlas_box(boxes, storage, b"one", meta)
    with pytest.raises(Exists, match="already has provider virtualbox"):
        _atlas_box(boxes, storage, b"two", meta)
    # Nothing was stored: the next Atlas version is number 2.
    assert new_version(storage, user="acme", name="web", artifact_type="vagrant.box").version == 2


def test_racing_atlas_uploads_join_one_version_and_one_provider_wins(
    boxes: Boxes, storage: Storage
) -> None:
    storage.create_artifact("acme", "web")
    providers = [f"p{i}" for i in range(6)] + ["same"] * 4
    outcomes: list[str] = []
    barrier = threading.Barrier(len(providers))

    def upload(index: int, provider: str) -> None:
        barrier.wait(timeout=10)
        try:
            _atlas_box(boxes, storage, b"%d" % index, {"version": "1.0.0", "provider": provider})
            outcomes.append(provider)
        except Exists:
            outcomes.append("refused")

    threads = [threading.Thread(target=upload, args=pair) for pair in enumerate(providers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == sorted([f"p{i}" for i in range(6)] + ["same"] + ["refused"] * 3)
    [version] = boxes.catalog(A, "acme", "web", 10)
    assert [p.name for p in version.providers] == [f"p{i}" for i in range(6)] + ["same"]


def test_atlas_metadata_version_must_be_a_vagrant_version_with_a_provider(boxes: Boxes) -> None:
    with pytest.raises(Invalid, match="metadata version 'release one' is not a version Vagrant"):
        boxes.atlas_version_hook({"version": "release one", "provider": "virtualbox"})
    with pytest.raises(Invalid, match="send metadata provider"):
        boxes.atlas_version_hook({"version": "1.0.0"})
    assert boxes.atlas_version_hook({"other": "x"}) is None
    assert boxes.atlas_version_hook(None) is None


def test_an_atlas_upload_without_version_is_box_version_its_number(
    boxes: Boxes, storage: Storage
) -> None:
    storage.create_artifact("acme", "web")
    _atlas_box(boxes, storage, b"one", {"provider": "virtualbox"})
    _atlas_box(boxes, storage, b"two", {"provider": "virtualbox"})
    assert [v.version for v in boxes.catalog(A, "acme", "web", 10)] == ["2", "1"]


def test_a_pending_atlas_upload_is_not_installable(boxes: Boxes, storage: Storage) -> None:
    storage.create_artifact("acme", "web")
    storage.create_version(
        "acme",
        "web",
        "vagrant.box",
        artifact_id="",
        build_id=0,
        compile_id=0,
        metadata={"provider": "virtualbox", "version": "1.0.0"},
        file=True,
        upload_secret="pending-secret",
        landing=boxes.atlas_version_hook({"provider": "virtualbox", "version": "1.0.0"}),
    )
    assert boxes.catalog(A, "acme", "web", 10) == []
    [provider] = boxes.get_version(A, "acme", "web", "1.0.0").providers
    assert provider.file_state == "pending"


# -- access, search, downloads -------------------------------------------------------------------


def _identities(storage: Storage) -> dict[str, Identity]:
    accounts = Accounts(storage)
    for user in ("alice", "bob", "carol"):
        accounts.create("user", user)
    accounts.create("organization", "acme")
    accounts.set_member("acme", "alice", "write")
    accounts.set_member("acme", "carol", "read")
    tokens = {
        "writer": accounts.create_token("alice", read_only=False, lifetime=None)[0],
        "read_only": accounts.create_token("alice", read_only=True, lifetime=None)[0],
        "reader": accounts.create_token("carol", read_only=False, lifetime=None)[0],
        "outsider": accounts.create_token("bob", read_only=False, lifetime=None)[0],
    }
    return {role: identify(token, (), accounts) for role, token in tokens.items()}


def test_access_is_the_policys(boxes: Boxes, storage: Storage) -> None:
    who = _identities(storage)
    boxes.create_box(who["writer"], "acme", "web")
    boxes.create_version(who["writer"], "acme", "web", "1.0.0")
    for role, status in [("read_only", 403), ("reader", 403), ("outsider", 403)]:
        with pytest.raises(Refused) as caught:
            boxes.create_version(who[role], "acme", "web", "2.0.0")
        assert caught.value.status == status, role
    with pytest.raises(Refused) as anonymous:
        boxes.delete_box(ANONYMOUS, "acme", "web")
    assert anonymous.value.status == 401
    assert boxes.get_box(who["reader"], "acme", "web").private
    with pytest.raises(Refused, match="box acme/web not found") as outsider:
        boxes.get_box(who["outsider"], "acme", "web")
    assert outsider.value.status == 404
    with pytest.raises(Refused) as nobody:
        boxes.versions(ANONYMOUS, "acme", "web")
    assert nobody.value.status == 401


def test_an_upload_url_loses_its_power_with_its_tokens_write_access(
    boxes: Boxes, storage: Storage
) -> None:
    who = _identities(storage)
    boxes.create_box(who["writer"], "acme", "web")
    boxes.create_version(who["writer"], "acme", "web", "1.0.0")
    boxes.create_provider(who["writer"], "acme", "web", "1.0.0", "virtualbox")
    target = boxes.upload_target(who["writer"], "acme", "web", "1.0.0", "virtualbox")
    Accounts(storage).set_member("acme", "alice", "read")
    with pytest.raises(Refused, match="no longer carries write access") as caught:
        boxes.begin_upload(target.secret)
    assert caught.value.status == 403


def test_search_and_listings_never_show_a_private_box_to_an_outsider(
    boxes: Boxes, storage: Storage
) -> None:
    who = _identities(storage)
    boxes.create_box(A, "acme", "secret-web", short_description="web, private")
    boxes.create_box(A, "acme", "open-web", short_description="web, public", private=False)
    everything = {"acme/secret-web", "acme/open-web"}
    for identity, expected in [
        (A, everything),
        (who["reader"], everything),
        (who["outsider"], {"acme/open-web"}),
        (ANONYMOUS, {"acme/open-web"}),
    ]:
        assert {b.tag for b in boxes.search(identity, BoxQuery(q="web"))} == expected
        assert {b.tag for b in boxes.list_boxes(identity, "acme")} == expected
    with pytest.raises(NotFound):
        boxes.list_boxes(who["outsider"], "nobody-here")


def test_search_filters_sorts_and_pages(boxes: Boxes) -> None:
    for name in ("alpha", "beta", "gamma"):
        boxes.create_box(A, "acme", name, short_description=f"the {name} box")
    _published(boxes)  # acme/web, virtualbox 1.0.0 active
    for _ in range(3):
        boxes.count_download("acme", "beta")
    boxes.count_download("acme", "gamma")
    assert boxes.get_box(A, "acme", "beta").downloads == 3
    tags = [b.name for b in boxes.search(A, BoxQuery())]
    assert tags[:2] == ["beta", "gamma"]
    ascending = [b.name for b in boxes.search(A, BoxQuery(sort="created", order="asc"))]
    assert ascending == ["alpha", "beta", "gamma", "web"]
    pages = [
        boxes.search(A, BoxQuery(sort="created", order="asc", limit=3, page=p)) for p in (1, 2)
    ]
    assert [[b.name for b in page] for page in pages] == [["alpha", "beta", "gamma"], ["web"]]
    assert [b.name for b in boxes.search(A, BoxQuery(q="GAMMA"))] == ["gamma"]
    assert [b.name for b in boxes.search(A, BoxQuery(q="the box"))] == ["beta", "gamma", "alpha"]
    assert [b.name for b in boxes.search(A, BoxQuery(q="100%"))] == []
    assert [b.name for b in boxes.search(A, BoxQuery(provider="virtualbox"))] == ["web"]
    assert boxes.search(A, BoxQuery(provider="libvirt")) == []
    for bad in [BoxQuery(limit=0), BoxQuery(limit=101), BoxQuery(page=0), BoxQuery(q="x" * 257)]:
        with pytest.raises(Invalid):
            boxes.search(A, bad)


# -- schema: the step that makes the tables, export and import ----------------------------------


def _database(request: pytest.FixtureRequest, backend: str, directory: Path) -> Database:
    """A new, empty database of ``backend`` (nothing migrated)."""
    if backend == "sqlite":
        return open_database(None, directory)
    cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
    return open_database(cluster.url(cluster.create_database()), directory)


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_schema_step_lands_existing_atlas_boxes_as_numbered_versions(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    db = _database(request, backend, tmp_path)
    schema.migrate(db, STEPS[:5])  # a registry from before the box model
    rows = [
        (1, "vagrant.box", '{"provider": "virtualbox"}', "ready"),
        (2, "vagrant.box", '{"other": "x"}', "ready"),  # no provider: not a box version
        (3, "vagrant.box", '{"provider": "libvirt"}', "ready"),
        (4, "vagrant.box", '{"provider": "virtualbox"}', "pending"),
        (1, "amazon.ami", '{"provider": "aws"}', "ready"),
    ]
    with db.transaction() as conn:
        conn.execute("INSERT INTO artifacts VALUES ('acme', 'web', 'then')")
        for number, type_, metadata, state in rows:
            conn.execute(
                'INSERT INTO versions ("user", name, type, version, id, build_id, compile_id, '
                "metadata, file, state, sha256, created) "
                "VALUES ('acme', 'web', ?, ?, '', 0, 0, ?, 1, ?, ?, 'then')",
                (type_, number, metadata, state, f"sha-{number}" if state == "ready" else None),
            )
    assert schema.migrate(db, STEPS) == (5, SCHEMA_VERSION)
    store = Storage(tmp_path, db)
    try:
        boxes = Boxes(store, Accounts(store))
        listed = [
            (v.version, [(p.name, p.sha256) for p in v.providers])
            for v in boxes.catalog(A, "acme", "web", 10)
        ]
        assert listed == [("3", [("libvirt", "sha-3")]), ("1", [("virtualbox", "sha-1")])]
        assert [v.version for v in boxes.versions(A, "acme", "web")] == ["4", "3", "1"]
    finally:
        store.close()


def test_export_and_import_carry_the_box_tables(
    boxes: Boxes,
    storage: Storage,
    tmp_path: Path,
    database_url: str | None,
    request: pytest.FixtureRequest,
) -> None:
    _published(boxes, "1.0.0", b"one")
    boxes.create_provider(A, "acme", "web", "1.0.0", "libvirt", url="https://h/l.box")
    boxes.count_download("acme", "web")
    pending = boxes.upload_target(A, "acme", "web", "1.0.0", "libvirt")
    # Exported to a SQLite file, then imported into a new database of the backend under test.
    exported = open_database(None, tmp_path / "exported")
    target = _database(
        request, "sqlite" if database_url is None else "postgresql", tmp_path / "target"
    )
    try:
        copy(storage.db, exported)
        counts = copy(exported, target)
    finally:
        exported.close()
    assert {t: counts[t] for t in box_tables.TABLES} == {
        "box_details": 1,
        "box_versions": 1,
        "box_providers": 2,
        "box_uploads": 2,  # one spent (its file came, no callback yet), one waiting
    }
    # The data directory moves as it is (files/, upload.key); the rows come from the copy.
    moved = Storage(storage.data_dir, target)
    try:
        again = Boxes(moved, Accounts(moved))
        [version] = again.catalog(A, "acme", "web", 10)
        assert [p.name for p in version.providers] == ["libvirt", "virtualbox"]
        assert again.get_box(A, "acme", "web").downloads == 1
        assert again.upload_target(A, "acme", "web", "1.0.0", "libvirt") == pending
        again.create_version(A, "acme", "web", "2.0.0")  # row ids go on past the copied ones
        again.create_provider(A, "acme", "web", "2.0.0", "virtualbox")
    finally:
        moved.close()
