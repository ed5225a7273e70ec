"""One descriptor per artifact file: what it refuses, what counts as a change, and the PUT's
hold on its last byte until the hash is done and the file is unchanged."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from atlas_ci import transfer
from atlas_ci.answers import SearchAnswer
from atlas_ci.archive import Payload
from atlas_ci.client import AtlasClient, Version
from atlas_ci.delivery import Delivery, Job
from atlas_ci.digest import FileDigest
from atlas_ci.errors import InputFileError
from atlas_ci.manifest import Artifact
from atlas_ci.retry import RetryPolicy
from atlas_ci.settings import Inputs, Settings
from atlas_ci.sourcefile import FileChanged, SourceFile, open_source
from tests.unit.test_transfer import TIMEOUT, Sink, _WrappingAdapter, sink  # noqa: F401

# -- opening ------------------------------------------------------------------------------


def test_a_symlink_out_of_the_root_is_refused_by_what_the_descriptor_holds(
    tmp_path: Path,
) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    (tmp_path / "secret.txt").write_text("secret")
    (root / "web.box").symlink_to("../secret.txt")
    with pytest.raises(InputFileError, match=r"secret\.txt, outside the workspace") as err:
        open_source(root / "web.box", inside=root)
    assert err.value.exit_code == 3
    with open_source(root / "web.box") as anywhere:  # no root: the CLI's default
        assert os.pread(anywhere.fd, 6, 0) == b"secret"


def test_a_parent_directory_swapped_for_a_symlink_out_of_the_root_is_refused(
    tmp_path: Path,
) -> None:
    root = tmp_path / "ws"
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "web.box").write_bytes(b"outside")
    root.mkdir()
    (root / "out").symlink_to("../elsewhere")
    with pytest.raises(InputFileError, match="outside the workspace"):
        open_source(root / "out" / "web.box", inside=root)


def test_a_symlink_inside_the_root_is_followed(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    (root / "real").mkdir(parents=True)
    (root / "real" / "disk.vmdk").write_bytes(b"disk")
    (root / "disk.vmdk").symlink_to("real/disk.vmdk")
    with open_source(root / "disk.vmdk", inside=tmp_path / "ws") as file:
        assert (file.size, file.path) == (4, root / "disk.vmdk")


def test_a_fifo_is_refused_at_once(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "web.box")
    with pytest.raises(InputFileError) as err:
        open_source(tmp_path / "web.box")
    assert "a FIFO" in err.value.message and "regular files" in err.value.hint


# -- what counts as a change --------------------------------------------------------------


@pytest.fixture
def opened(tmp_path: Path) -> Iterator[SourceFile]:
    (tmp_path / "web.box").write_bytes(b"x" * 1000)
    with open_source(tmp_path / "web.box") as file:
        yield file


def test_renaming_or_removing_the_name_is_no_change(opened: SourceFile, tmp_path: Path) -> None:
    os.replace(tmp_path / "web.box", tmp_path / "moved.box")
    assert opened.changed() is None
    (tmp_path / "moved.box").unlink()
    assert opened.changed() is None
    assert os.pread(opened.fd, 2000, 0) == b"x" * 1000


def test_writing_appending_and_truncating_are_changes(opened: SourceFile, tmp_path: Path) -> None:
    box = tmp_path / "web.box"
    with open(box, "r+b") as handle:
        handle.write(b"y")  # same size, new bytes
    assert opened.changed() == "was written to"
    with pytest.raises(FileChanged, match=r"'.*web\.box' changed while it was hashed"):
        opened.check("while it was hashed")
    os.truncate(box, 10)
    assert opened.changed() == "is now 10 bytes, not 1000"


# -- the PUT -------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["sendfile", "requests"])
def test_a_file_written_to_mid_body_stops_the_body_short_of_its_last_byte(
    sink: Sink,  # noqa: F811
    tmp_path: Path,
    route: str,
) -> None:
    size = 12 << 20
    box = tmp_path / "web.box"
    box.write_bytes(os.urandom(size))
    session = requests.Session()
    session.trust_env = False
    if route == "requests":
        session.mount("http://", _WrappingAdapter())
    writes: list[int] = []

    def write_once(offset: int) -> None:  # progress, every 4 MiB: the body is on its way
        if not writes:
            writes.append(offset)
            with open(box, "r+b") as handle:
                handle.seek(size - 100)
                handle.write(b"changed")

    with open_source(box) as file, pytest.raises(FileChanged) as err:
        transfer.put_file(
            f"{sink.base}/b",
            file,
            size,
            session=session,
            verify=True,
            timeout=TIMEOUT,
            progress=write_once,
        )
    assert writes and not err.value.delivered
    assert "web.box' changed during the upload (it was written to)" in err.value.message
    assert all(got.size < size for got in sink.received)  # the server never got it whole


class _SlowDigest:
    """Stands in for a FileDigest that has hashed ``hashed`` bytes and is done."""

    def __init__(self, hashed: int) -> None:
        self.hashed = hashed
        self.asked: list[int] = []

    def wait_hashed(self, offset: int) -> int:
        self.asked.append(offset)
        return self.hashed

    def result(self) -> str:
        return "sha"


def test_the_body_never_runs_more_than_ahead_of_the_hash(opened: SourceFile) -> None:
    size = 300 << 20
    digest = _SlowDigest(hashed=10 << 20)
    guard = transfer._Guard(opened, size, digest)  # type: ignore[arg-type]
    assert guard.until(0) == (10 << 20) + transfer.AHEAD
    digest.hashed = size
    assert guard.until(100 << 20) == size - 1  # the last byte waits for the final check


def test_the_last_byte_waits_for_the_hash_and_the_check(opened: SourceFile) -> None:
    done = threading.Event()
    digest = FileDigest(opened.fd, opened.size, "web.box")
    guard = transfer._Guard(opened, opened.size, digest)

    def last() -> None:
        guard.until(opened.size - 1)
        done.set()

    last()
    assert done.is_set() and digest.result() == hashlib.sha256(b"x" * 1000).hexdigest()
    os.truncate(opened.path, 999)
    with pytest.raises(FileChanged, match="is now 999 bytes"):
        guard.until(opened.size - 1)


# -- what the run says when the change came after the last byte -----------------------------

BASE = "https://atlas.example"


def _job() -> Job:
    artifact = Artifact(
        id="virtualbox", files=(), builder_type="", build="web", source="m", metadata=None
    )
    return Job(artifact=artifact, artifact_type="vagrant.box", metadata={"provider": "x"})


def _deliver_changing_after_the_body(
    tmp_path: Path, base: str, stored: str, lines: list[str], monkeypatch: pytest.MonkeyPatch
) -> str:
    box = tmp_path / "web.box"
    box.write_bytes(b"box bytes")
    real_put = transfer._put_sendfile

    def put_then_append(*args: Any, **kwargs: Any) -> tuple[transfer.PutResponse, int]:
        answer = real_put(*args, **kwargs)  # the server has read the whole body and answered
        with open(box, "ab") as handle:
            handle.write(b"!")
        return answer

    monkeypatch.setattr(transfer, "_put_sendfile", put_then_append)
    settings = Settings.from_inputs(
        Inputs(artifact="acme/web", atlas_url=BASE), {"ATLAS_TOKEN": "tok-123456"}
    )
    policy = RetryPolicy(retries=1, max_wait=0, sleep=lambda _s: None, rand=lambda: 0.0)
    api = AtlasClient(settings, policy=policy, log=lines.append)
    found = {"version": 1, "state": "ready", "sha256": stored}
    # What the registry answers to the search for version 1 after the PUT.
    monkeypatch.setattr(api, "search", lambda *_a, **_k: SearchAnswer([found], True))
    file = open_source(box)
    payload = Payload(path=box, size=file.size, temporary=False, file=file)
    digest = FileDigest(file.fd, file.size, str(box))
    try:
        version = Version(version=1, upload_path=f"{base}/put/abc", raw={})
        return Delivery(settings, api, lines.append).put_file(
            _job(), version, payload, digest, None
        )
    finally:
        digest.cancel()
        payload.close()
        api.close()


def test_a_change_after_the_body_is_a_success_when_the_registry_holds_the_bytes_hashed(
    tmp_path: Path,
    sink: Sink,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sha = hashlib.sha256(b"box bytes").hexdigest()
    lines: list[str] = []
    assert _deliver_changing_after_the_body(tmp_path, sink.base, sha, lines, monkeypatch) == sha
    assert [got.sha256 for got in sink.received] == [sha]
    [warning] = [line for line in lines if line.startswith("warning: ")]
    assert "changed while it was uploaded" in warning and f"sha256 {sha}" in warning


def test_a_change_after_the_body_with_another_file_stored_says_do_not_use_it(
    tmp_path: Path,
    sink: Sink,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(FileChanged) as err:
        _deliver_changing_after_the_body(tmp_path, sink.base, "0" * 64, [], monkeypatch)
    line = err.value.one_line()
    assert "acme/web/vagrant.box version 1 is ready on the registry with a file that is not" in line
    assert "do not use it" in line and err.value.exit_code == 3


# -- the archive ---------------------------------------------------------------------------


def test_a_file_written_to_while_it_is_archived_stops_the_archive(tmp_path: Path) -> None:
    from atlas_ci.archive import _default_gzip, prepare_payload

    out, work = tmp_path / "out", tmp_path / "work"
    out.mkdir()
    work.mkdir()
    disk = out / "disk.vmdk"
    disk.write_bytes(os.urandom(3 << 20))  # read in 1 MiB pieces: the write lands mid-file
    (out / "box.ovf").write_text("<ovf/>")
    writes: list[int] = []

    class Meddling:
        def __init__(self, raw: Any, level: int) -> None:
            self._inner = _default_gzip(raw, level)

        def write(self, data: bytes) -> int:
            if len(data) >= 1 << 20 and not writes:  # the first piece of disk.vmdk
                writes.append(len(data))
                with open(disk, "r+b") as handle:
                    handle.seek(2 << 20)
                    handle.write(b"changed")
            return self._inner.write(data)

        def close(self) -> None:
            self._inner.close()

    with pytest.raises(FileChanged) as err:
        prepare_payload([disk, out / "box.ovf"], work, gzip_writer=Meddling)  # type: ignore[arg-type]
    assert writes
    assert "disk.vmdk' changed while it was archived (it was written to)" in err.value.message
    assert err.value.exit_code == 3
    assert list(work.iterdir()) == []  # no temp archive left behind
