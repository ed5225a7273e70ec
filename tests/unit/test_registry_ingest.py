"""The registry's receive pipeline (atlas_ci/registry/ingest.py): bytes, hash, syncs, failures."""

from __future__ import annotations

import errno
import hashlib
import os
import random
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from atlas_ci.registry import ingest
from atlas_ci.registry.server import RegistryServer
from atlas_ci.registry.storage import Storage

SLOT = 64 << 10


@pytest.fixture(autouse=True)
def small_slots(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small slots and syncs, so a few MiB cycle every slot many times."""
    monkeypatch.setattr(ingest, "SLOT_SIZE", SLOT)
    monkeypatch.setattr(ingest, "SYNC_EVERY", 4 * SLOT)


@pytest.fixture
def no_stray_threads() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    assert set(threading.enumerate()) <= before, "a pipeline thread outlived run()"


def _socket_like(data: bytes, seed: int = 7) -> tuple[Callable[[memoryview], int], list[int]]:
    """A reader handing out pieces of random size (1 byte .. the view), as recv does."""
    rng = random.Random(seed)
    offset = [0]

    def read_into(view: memoryview) -> int:
        count = min(len(view), rng.randint(1, 3 * len(view) // 2), len(data) - offset[0])
        view[:count] = data[offset[0] : offset[0] + count]
        offset[0] += count
        return count

    return read_into, offset


def _fd(path: Path, flags: int = os.O_RDWR | os.O_CREAT) -> Iterator[int]:
    fd = os.open(path, flags, 0o600)
    try:
        yield fd
    finally:
        os.close(fd)


def test_a_body_many_slots_long_arrives_byte_for_byte_with_its_sha256(
    tmp_path: Path, no_stray_threads: None
) -> None:
    data = os.urandom(ingest.SLOTS * SLOT * 5 + 17)
    read_into, _ = _socket_like(data)
    for fd in _fd(tmp_path / "blob"):
        ingest.reserve(fd, len(data))
        job = ingest.Ingest(fd, len(data))
        assert job.run(read_into) == len(data)
    assert (tmp_path / "blob").read_bytes() == data
    assert job.hash.hexdigest() == hashlib.sha256(data).hexdigest()


def test_a_short_body_returns_what_came_and_writes_only_that(
    tmp_path: Path, no_stray_threads: None
) -> None:
    data = os.urandom(3 * SLOT + 5)
    read_into, _ = _socket_like(data)
    for fd in _fd(tmp_path / "blob"):
        job = ingest.Ingest(fd, len(data) + 1000)
        assert job.run(read_into) == len(data)
    assert (tmp_path / "blob").read_bytes() == data
    assert job.hash.hexdigest() == hashlib.sha256(data).hexdigest()


def test_the_file_is_flushed_while_the_body_still_arrives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_stray_threads: None
) -> None:
    synced = threading.Event()
    real = ingest._datasync

    def datasync(fd: int) -> None:
        real(fd)
        synced.set()

    monkeypatch.setattr(ingest, "_datasync", datasync)
    data = os.urandom(16 * SLOT)
    read_into, offset = _socket_like(data)
    waited: list[bool] = []

    def slow_tail(view: memoryview) -> int:
        if offset[0] >= 8 * SLOT and not waited:
            # Half the body is in: a flush must come before the rest is sent.
            waited.append(synced.wait(10))
        return read_into(view)

    for fd in _fd(tmp_path / "blob"):
        assert ingest.Ingest(fd, len(data)).run(slow_tail) == len(data)
    assert waited == [True]


def test_a_write_error_stops_the_reader_and_is_raised_after_the_threads_end(
    tmp_path: Path, no_stray_threads: None
) -> None:
    data = os.urandom(40 * SLOT)
    read_into, offset = _socket_like(data)
    (tmp_path / "blob").write_bytes(b"")
    for fd in _fd(tmp_path / "blob", os.O_RDONLY):  # every pwrite fails with EBADF
        with pytest.raises(OSError, match=os.strerror(errno.EBADF)) as caught:
            ingest.Ingest(fd, len(data)).run(read_into)
    assert caught.value.errno == errno.EBADF
    assert offset[0] < len(data), "the reader kept reading a body nobody could write"


def test_a_reader_error_propagates_after_the_threads_end(
    tmp_path: Path, no_stray_threads: None
) -> None:
    data = os.urandom(10 * SLOT)
    read_into, offset = _socket_like(data)

    def failing(view: memoryview) -> int:
        if offset[0] > 5 * SLOT:
            raise ConnectionResetError("peer went away")
        return read_into(view)

    for fd in _fd(tmp_path / "blob"):
        with pytest.raises(ConnectionResetError):
            ingest.Ingest(fd, len(data)).run(failing)
    written = (tmp_path / "blob").read_bytes()
    assert written == data[: len(written)] and len(written) > 5 * SLOT


def test_reserve_raises_a_full_disk_and_skips_a_file_system_without_fallocate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(code: int) -> Callable[[int, int, int], None]:
        def fallocate(fd: int, offset: int, length: int) -> None:
            raise OSError(code, os.strerror(code))

        return fallocate

    for fd in _fd(tmp_path / "blob"):
        ingest.reserve(fd, 1 << 20)
        assert os.fstat(fd).st_size == 1 << 20
        monkeypatch.setattr(os, "posix_fallocate", refuse(errno.EOPNOTSUPP))
        ingest.reserve(fd, 2 << 20)
        monkeypatch.setattr(os, "posix_fallocate", refuse(errno.ENOSPC))
        with pytest.raises(OSError, match=os.strerror(errno.ENOSPC)) as caught:
            ingest.reserve(fd, 2 << 20)
    assert caught.value.errno == errno.ENOSPC


def test_a_body_the_disk_cannot_hold_is_507_before_it_is_sent(
    server: RegistryServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage: Storage = server.storage
    storage.create_artifact("u", "n")
    storage.create_version(
        "u", "n", "t", artifact_id="", build_id=0, compile_id=0, metadata=None, file=True,
        upload_secret="s3cret",
    )  # fmt: skip

    def full(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", full)
    host, port = server.server_address[:2]
    with socket.create_connection((str(host), port), timeout=5) as sock:
        sock.sendall(
            b"PUT /binstore/s3cret HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: 5000000000\r\nExpect: 100-continue\r\n\r\n"
        )
        answer = b""
        while chunk := sock.recv(65536):  # the registry closes: the body was never read
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 507 "), answer  # no "100 Continue" first
    assert answer.endswith(b'{"errors":["the registry is out of disk space"]}')
    assert list(storage.tmp_dir.iterdir()) == []


def test_writeback_is_started_for_every_range_as_it_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_stray_threads: None
) -> None:
    started: list[tuple[int, int]] = []
    monkeypatch.setattr(ingest, "_writeback", lambda: lambda fd, off, n: started.append((off, n)))
    data = os.urandom(7 * SLOT + 3)
    read_into, _ = _socket_like(data)
    for fd in _fd(tmp_path / "blob"):
        ingest.Ingest(fd, len(data)).run(read_into)
    offset = 0
    for start, count in started:
        assert start == offset
        offset += count
    assert offset == len(data)


def test_sync_file_range_is_called_through_ctypes_on_linux(tmp_path: Path) -> None:
    writeback = ingest._writeback()
    assert writeback is not None
    for fd in _fd(tmp_path / "blob"):
        os.write(fd, b"x" * 8192)
        assert writeback(fd, 0, 8192) == 0
        assert writeback(-1, 0, 8192) == -1  # the real call: a bad fd fails
