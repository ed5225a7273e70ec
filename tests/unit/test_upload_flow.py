"""The flow's use of the background sha256: started early, once per payload, reused."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import responses

from atlas_ci import upload
from atlas_ci.digest import FileDigest
from atlas_ci.settings import Inputs, Settings
from tests.artifacts import file_build, make_box, write_manifest

BASE = "https://atlas.example"
UPLOAD = "https://binstore.example/put/1?sig=x"


@responses.activate
def test_passthrough_hash_starts_before_any_request_and_serves_the_put(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = make_box(tmp_path / "out" / "web.box")
    write_manifest(tmp_path, [file_build("vbox", "virtualbox-iso", "virtualbox", ["out/web.box"])])
    started: list[str] = []
    monkeypatch.setattr(upload, "FileDigest", _counting(started))
    seen_at_auth: list[int] = []

    def authenticate(_request: Any) -> tuple[int, dict[str, str], str]:
        seen_at_auth.append(len(started))
        return 200, {}, "{}"

    responses.add_callback(responses.GET, f"{BASE}/api/v1/authenticate", authenticate)
    responses.get(f"{BASE}/api/v1/artifacts/acme/box", json={"artifact": {}})
    search = f"{BASE}/api/v1/artifacts/acme/box/vagrant.box/search"
    responses.get(search, json={"versions": [], "pending_listed": True})
    responses.post(
        f"{BASE}/api/v1/artifacts/acme/box/vagrant.box",
        json={"version": 1, "upload_path": UPLOAD},
    )
    responses.put(UPLOAD, status=200)
    sha = hashlib.sha256(box.read_bytes()).hexdigest()
    ready = {"version": 1, "state": "ready", "sha256": sha, "id": "virtualbox"}
    responses.get(search, json={"versions": [ready], "pending_listed": True})

    settings = Settings.from_inputs(
        Inputs(
            artifact="acme/box",
            atlas_url=BASE,
            workspace=tmp_path,
            manifest=str(tmp_path / "packer-manifest.json"),
        ),
        {"ATLAS_TOKEN": "t0ken-value"},
    )
    result = upload.run_upload(settings)
    assert seen_at_auth == [1]  # hashing ran while the token was checked
    assert started == [str(box)]  # one digest for the payload, reused by PUT and check
    assert result.last.file is not None
    assert result.last.file.sha256 == sha
    [post] = [c for c in responses.calls if c.request.method == "POST"]
    assert json.loads(post.request.body)["artifact_version"]["file"] is True


def _counting(started: list[str]) -> type[FileDigest]:
    class Counting(FileDigest):
        def __init__(self, fd: int, size: int, name: str) -> None:
            started.append(name)
            super().__init__(fd, size, name)

    return Counting


def test_digests_start_once_per_file_and_early_only_for_passthrough(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "vm").mkdir()
    (tmp_path / "vm" / "a.vmdk").write_bytes(b"a" * 5000)
    (tmp_path / "vm" / "b.vmx").write_text("x")
    started: list[str] = []
    monkeypatch.setattr(upload, "FileDigest", _counting(started))
    digests = upload.Digests()
    try:
        vmdk = tmp_path / "vm" / "a.vmdk"
        digests.start_passthrough((vmdk,))  # not gzip: opened, nothing started
        assert started == []
        with digests.open(vmdk) as early, digests.open(vmdk) as later:
            assert early is not later  # the early descriptor is handed over once
        box = make_box(tmp_path / "x.box")
        digests.start_passthrough((box,))
        file = digests.open(box)
        first = digests.start(file)
        assert digests.start(file) is first
        assert first.result() == hashlib.sha256(box.read_bytes()).hexdigest()
        assert started == [str(box)]  # the early start served the later ask
    finally:
        digests.cancel()
