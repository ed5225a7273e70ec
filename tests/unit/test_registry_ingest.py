"""The registry's receive pipeline (atlas_ci/registry/ingest.py): bytes, hash, syncs, failures."""

from __future__ import annotations

import errno
import gc
import hashlib
import mmap
import os
import random
import socket
import tempfile
import threading
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from atlas_ci.registry import ingest
from atlas_ci.registry.storage import Storage
from tests.registry_inproc import new_version, serving

SLOT = 64 << 10


def small(fd: int, length: int) -> ingest.Ingest:
    """Small slots and syncs, so a few MiB cycle every slot many times."""
    return ingest.Ingest(fd, length, slot_size=SLOT, sync_every=4 * SLOT)


def _tmpfs() -> Path | None:
    """A tmpfs with a size limit (``/dev/shm``), or None.

    Asked to reserve more than its whole size, a tmpfs refuses with ENOSPC at once and
    allocates nothing (the kernel compares with the size first): a real full disk, safely.
    """
    shm = Path("/dev/shm")
    try:
        mounts = Path("/proc/mounts").read_text().split("\n")
    except OSError:
        return None
    is_tmpfs = any(line.split()[1:3] == [str(shm), "tmpfs"] for line in mounts if line)
    if not is_tmpfs or not os.access(shm, os.W_OK) or os.statvfs(shm).f_blocks == 0:
        return None
    return shm


def _more_than(directory: Path) -> int:
    """A length larger than the whole file system holding ``directory``."""
    stat = os.statvfs(directory)
    return stat.f_blocks * stat.f_frsize + (1 << 30)


# Skipped without one here; under CI=true it runs, and its `assert shm is not None` fails.
needs_tmpfs = pytest.mark.skipif(
    _tmpfs() is None and os.environ.get("CI") != "true",
    reason="needs a size-limited tmpfs (/dev/shm)",
)


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
        job = small(fd, len(data))
        assert job.run(read_into) == len(data)
    assert (tmp_path / "blob").read_bytes() == data
    assert job.hash.hexdigest() == hashlib.sha256(data).hexdigest()


def test_a_short_body_returns_what_came_and_writes_only_that(
    tmp_path: Path, no_stray_threads: None
) -> None:
    data = os.urandom(3 * SLOT + 5)
    read_into, _ = _socket_like(data)
    for fd in _fd(tmp_path / "blob"):
        job = small(fd, len(data) + 1000)
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

    # The fdatasync call is the behaviour, and nothing outside the process can see it.
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
        assert small(fd, len(data)).run(slow_tail) == len(data)
    assert waited == [True]


def test_a_write_error_stops_the_reader_and_is_raised_after_the_threads_end(
    tmp_path: Path, no_stray_threads: None
) -> None:
    data = os.urandom(40 * SLOT)
    read_into, offset = _socket_like(data)
    (tmp_path / "blob").write_bytes(b"")
    for fd in _fd(tmp_path / "blob", os.O_RDONLY):  # every pwrite fails with EBADF
        with pytest.raises(OSError, match=os.strerror(errno.EBADF)) as caught:
            small(fd, len(data)).run(read_into)
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
            small(fd, len(data)).run(failing)
    written = (tmp_path / "blob").read_bytes()
    assert written == data[: len(written)] and len(written) > 5 * SLOT


def _refuse(code: int) -> Callable[..., None]:
    def allocate(*args: int) -> None:
        raise OSError(code, os.strerror(code))

    return allocate


def test_reserve_claims_the_length_without_writing_every_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def never(*args: int) -> None:
        raise AssertionError("posix_fallocate writes every block where fallocate is missing")

    monkeypatch.setattr(os, "posix_fallocate", never)
    for fd in _fd(tmp_path / "blob"):
        ingest.reserve(fd, 1 << 20)
        assert os.fstat(fd).st_size == 1 << 20
    with pytest.raises(OSError, match=os.strerror(errno.EFBIG)):
        ingest.reserve(-1, 2**63)  # past any file offset, before any call


@needs_tmpfs
def test_reserve_raises_a_full_disk() -> None:
    shm = _tmpfs()
    assert shm is not None
    with tempfile.TemporaryDirectory(dir=shm) as top:
        for fd in _fd(Path(top) / "blob"):
            with pytest.raises(OSError, match=os.strerror(errno.ENOSPC)) as caught:
                ingest.reserve(fd, _more_than(shm))
            assert os.fstat(fd).st_size == 0
    assert caught.value.errno == errno.ENOSPC


def test_reserve_skips_a_file_system_without_fallocate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No file system at hand lacks fallocate: its answer is simulated.
    monkeypatch.setattr(ingest, "_fallocate", lambda: _refuse(errno.EOPNOTSUPP))
    for fd in _fd(tmp_path / "blob"):
        ingest.reserve(fd, 2 << 20)
        assert os.fstat(fd).st_size == 0  # the writes will find out


def test_reserve_uses_posix_fallocate_where_fallocate_cannot_be_called(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[int, int]] = []
    # The branch for a platform without a callable fallocate (not 64-bit Linux).
    monkeypatch.setattr(ingest, "_fallocate", lambda: None)
    monkeypatch.setattr(os, "posix_fallocate", lambda fd, off, n: calls.append((off, n)))
    for fd in _fd(tmp_path / "blob"):
        ingest.reserve(fd, 3 << 20)
        ingest.reserve(fd, 0)  # nothing to reserve: no call
    assert calls == [(0, 3 << 20)]


@pytest.mark.skipif(ingest._fallocate() is None, reason="fallocate is called on 64-bit Linux")
def test_the_real_fallocate_reports_errors_with_their_errno(tmp_path: Path) -> None:
    allocate = ingest._fallocate()
    assert allocate is not None
    with pytest.raises(OSError, match=os.strerror(errno.EBADF)) as caught:
        allocate(-1, 4096)
    assert caught.value.errno == errno.EBADF
    for fd in _fd(tmp_path / "blob"):
        allocate(fd, 1 << 20)
        assert os.fstat(fd).st_size == 1 << 20
        assert os.fstat(fd).st_blocks * 512 >= 1 << 20  # the blocks are claimed, not a hole


def test_a_failed_run_leaves_no_reference_cycle_holding_the_slots(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_stray_threads: None
) -> None:
    maps: list[weakref.ref[mmap.mmap]] = []
    real_mmap = mmap.mmap

    def tracked(*args: int) -> mmap.mmap:
        made = real_mmap(*args)
        maps.append(weakref.ref(made))
        return made

    monkeypatch.setattr(ingest.mmap, "mmap", tracked)
    read_into, _ = _socket_like(os.urandom(8 * SLOT))
    (tmp_path / "blob").write_bytes(b"")
    gc.disable()  # only reference counting may free the slots
    try:
        for fd in _fd(tmp_path / "blob", os.O_RDONLY):  # every pwrite fails with EBADF
            try:
                small(fd, 8 * SLOT).run(read_into)
            except OSError as exc:
                assert exc.errno == errno.EBADF  # noqa: PT017 (the test needs no ExceptionInfo)
            else:
                pytest.fail("a write error was not raised")
        assert len(maps) == 1
        assert maps[0]() is None, "the slots outlived a failed run (a reference cycle)"
    finally:
        gc.enable()


def test_a_thread_that_cannot_start_stops_those_already_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_stray_threads: None
) -> None:
    real_start = threading.Thread.start
    count = [0]

    def start(thread: threading.Thread) -> None:
        count[0] += 1
        if count[0] == 2:
            raise RuntimeError("can't start new thread")
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", start)
    read_into, offset = _socket_like(os.urandom(SLOT))
    for fd in _fd(tmp_path / "blob"):
        with pytest.raises(RuntimeError, match="can't start new thread"):
            small(fd, SLOT).run(read_into)
    monkeypatch.undo()
    assert offset[0] == 0  # nothing was read for a pipeline that never ran


@needs_tmpfs
def test_a_body_the_disk_cannot_hold_is_507_before_it_is_sent() -> None:
    shm = _tmpfs()
    assert shm is not None
    with tempfile.TemporaryDirectory(dir=shm) as top:
        storage = Storage(Path(top) / "data")
        with serving(storage) as server:
            storage.create_artifact("u", "n")
            new_version(storage, "s3cret")
            host, port = server.server_address[:2]
            with socket.create_connection((str(host), port), timeout=5) as sock:
                sock.sendall(
                    b"PUT /binstore/s3cret HTTP/1.1\r\nHost: x\r\n"
                    b"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n" % _more_than(shm)
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
    # sync_file_range is the behaviour, and nothing outside the process can see it.
    monkeypatch.setattr(ingest, "_writeback", lambda: lambda fd, off, n: started.append((off, n)))
    data = os.urandom(7 * SLOT + 3)
    read_into, _ = _socket_like(data)
    for fd in _fd(tmp_path / "blob"):
        small(fd, len(data)).run(read_into)
    offset = 0
    for start, count in started:
        assert start == offset
        offset += count
    assert offset == len(data)


@pytest.mark.skipif(ingest._writeback() is None, reason="sync_file_range is for 64-bit Linux")
def test_sync_file_range_is_called_through_ctypes_on_linux(tmp_path: Path) -> None:
    writeback = ingest._writeback()
    assert writeback is not None
    for fd in _fd(tmp_path / "blob"):
        os.write(fd, b"x" * 8192)
        assert writeback(fd, 0, 8192) == 0
        assert writeback(-1, 0, 8192) == -1  # the real call: a bad fd fails
