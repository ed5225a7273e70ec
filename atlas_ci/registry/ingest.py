"""Receiving one upload's body: read, hash and write overlap, and the disk keeps up as it goes.

A request body of known length is read into a few page-aligned slots (an anonymous ``mmap``:
a ``bytearray`` lands 16 bytes past a page boundary, where the kernel's copy into it is
several times slower). Each filled slot goes to two threads at once: one feeds the SHA-256
(``hashlib`` lets go of the GIL), one ``pwrite`` s it into the file and, on Linux, asks the
kernel to start writing that range to disk now (``sync_file_range``, no wait). A third
thread calls ``fdatasync`` each time :data:`SYNC_EVERY` more bytes are written. So the disk
writes while the body is still arriving, and the one ``fsync`` the caller makes at the end
has little left to do. The file is given its full length first, so a disk that cannot hold
the body says so before any of it is read.

Memory is :data:`SLOTS` x :data:`SLOT_SIZE` per upload in flight, whatever the body's size.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import hashlib
import mmap
import os
import queue
import sys
import threading
from collections.abc import Callable

SLOT_SIZE = 4 << 20
SLOTS = 4
SYNC_EVERY = 128 << 20

ReadInto = Callable[[memoryview], int]
"""Fills a prefix of the view and returns its length; 0 means the body ended early."""

_Job = tuple[int, int, int]  # slot index, file offset, byte count
_NOT_SUPPORTED = {errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL, errno.ENODEV}
_datasync: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)
_SYNC_FILE_RANGE_WRITE = 2
_OFF_MAX = 2**63 - 1


def _libc_function(name: str, *args: type) -> Callable[..., int] | None:
    """A libc function taking ``args`` and returning int, on 64-bit Linux only.

    There ``off_t`` is 64 bits, so the ctypes prototype matches the C one exactly; elsewhere
    the callers fall back to what Python offers.
    """
    if not sys.platform.startswith("linux") or ctypes.sizeof(ctypes.c_void_p) != 8:
        return None
    try:
        function = getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError):
        return None
    function.argtypes = list(args)
    function.restype = ctypes.c_int
    return function  # type: ignore[no-any-return]


@functools.cache
def _writeback() -> Callable[[int, int, int], object] | None:
    """Linux's ``sync_file_range(fd, offset, count, SYNC_FILE_RANGE_WRITE)``, if callable here.

    Its result is not looked at: it only starts writeback early, and the fdatasync/fsync
    that follow report any error the disk has.
    """
    function = _libc_function(
        "sync_file_range", ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint
    )
    if function is None:
        return None

    def start(fd: int, offset: int, count: int) -> object:
        return function(fd, offset, count, _SYNC_FILE_RANGE_WRITE)

    return start


@functools.cache
def _fallocate() -> Callable[[int, int], None] | None:
    """Linux's ``fallocate(fd, 0, 0, length)``, raising OSError; None where it is not callable.

    Called directly rather than through ``posix_fallocate``: on a file system without it
    (NFSv3, some FUSE), glibc's ``posix_fallocate`` falls back to writing a byte into every
    block, which dirties the whole file before the body arrives. ``fallocate`` says
    EOPNOTSUPP instead.
    """
    function = _libc_function(
        "fallocate", ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64
    )
    if function is None:
        return None

    def allocate(fd: int, length: int) -> None:
        if function(fd, 0, 0, length) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))

    return allocate


def reserve(fd: int, length: int) -> None:
    """Give the file its final length now: ENOSPC/EDQUOT before the body, not in the middle.

    Where the file system cannot reserve space, this does nothing and the writes find out.
    """
    if length <= 0:
        return
    if length > _OFF_MAX:  # ctypes would wrap it round silently
        raise OSError(errno.EFBIG, os.strerror(errno.EFBIG))
    allocate = _fallocate()
    try:
        if allocate is not None:
            allocate(fd, length)
        elif hasattr(os, "posix_fallocate"):
            os.posix_fallocate(fd, 0, length)
    except OSError as exc:
        if exc.errno not in _NOT_SUPPORTED:
            raise


class Ingest:
    """Streams exactly ``length`` bytes from a reader into ``fd`` (from offset 0), hashing them.

    ``slot_size`` and ``sync_every`` default to :data:`SLOT_SIZE` and :data:`SYNC_EVERY`.

    :meth:`run` returns the number of bytes received: ``length``, or fewer when the reader
    ended early (the caller decides what a short body means). A write or sync error is
    raised from :meth:`run` after every thread has stopped.
    """

    def __init__(
        self, fd: int, length: int, *, slot_size: int = SLOT_SIZE, sync_every: int = SYNC_EVERY
    ) -> None:
        self.fd = fd
        self.length = length
        self.slot_size = slot_size
        self.sync_every = sync_every
        self.hash = hashlib.sha256()
        self._error: BaseException | None = None
        self._free: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._users = [0] * SLOTS  # how many stages still hold each slot
        self._lock = threading.Lock()
        self._written = 0  # bytes in the file so far
        self._synced = 0  # bytes flushed by the last fdatasync
        self._writing = True
        self._progress = threading.Condition(self._lock)

    # Long (over 60 lines, allowed in tests/unit/test_shape.py): the receiving loop and the
    # finally that stops the threads on every exit path are one piece. A read that raises
    # still queues what it filled, and the slots must go with this frame (comments below);
    # moving the loop or its cleanup into another frame would hold the slots' views there.
    def run(self, read_into: ReadInto) -> int:
        size = self.slot_size
        whole = memoryview(mmap.mmap(-1, size * SLOTS))
        slots = [whole[i * size : (i + 1) * size] for i in range(SLOTS)]
        for index in range(SLOTS):
            self._free.put(index)
        to_hash: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        to_write: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        threads = [
            threading.Thread(target=self._stage, args=(to_hash, slots, self._hash), daemon=True),
            threading.Thread(target=self._stage, args=(to_write, slots, self._write), daemon=True),
            threading.Thread(target=self._sync, daemon=True),
        ]
        started: list[threading.Thread] = []
        received = 0
        try:
            for thread in threads:
                thread.start()  # "can't start new thread": the finally stops those that run
                started.append(thread)
            while received < self.length and self._error is None:
                index = self._free.get()
                if index < 0:
                    break  # a stage failed; the error is raised below
                view = slots[index][: min(size, self.length - received)]
                filled = 0
                try:
                    while filled < len(view):
                        count = read_into(view[filled:])
                        if not count:
                            break
                        filled += count
                finally:
                    if filled:
                        self._users[index] = 2
                        to_hash.put((index, received, filled))
                        to_write.put((index, received, filled))
                    else:
                        self._free.put(index)
                    received += filled
                if filled < len(view):
                    break
        finally:
            to_hash.put(None)
            to_write.put(None)
            for thread in started[:2]:
                thread.join()
            with self._progress:
                self._writing = False
                self._progress.notify_all()
            for thread in started[2:]:
                thread.join()
            # The slots are freed with this frame: an exception's traceback may still hold a
            # view of them, which would make an explicit close() raise BufferError.
        if self._error is not None:
            # Kept neither on self nor in a local: the traceback holds this frame and so the
            # slots, and such a reference cycle would keep them until the garbage collector runs.
            try:
                raise self._error
            finally:
                self._error = None
        return received

    # -- the threads ---------------------------------------------------------------------------

    def _stage(
        self,
        jobs: queue.SimpleQueue[_Job | None],
        slots: list[memoryview],
        work: Callable[[memoryview, int], None],
    ) -> None:
        while (job := jobs.get()) is not None:
            index, offset, count = job
            if self._error is None:
                try:
                    work(slots[index][:count], offset)
                except BaseException as exc:  # handed to run(), which raises it
                    self._fail(exc)
            with self._lock:
                self._users[index] -= 1
                if not self._users[index]:
                    self._free.put(index)

    def _hash(self, data: memoryview, offset: int) -> None:
        self.hash.update(data)

    def _write(self, data: memoryview, offset: int) -> None:
        start, count = offset, len(data)
        while data:
            done = os.pwrite(self.fd, data, offset)
            data, offset = data[done:], offset + done
        writeback = _writeback()
        if writeback is not None:
            writeback(self.fd, start, count)
        with self._progress:
            self._written = offset
            self._progress.notify_all()

    def _sync(self) -> None:
        while True:
            with self._progress:
                self._progress.wait_for(self._sync_due)
                if not self._writing:
                    return  # the caller's fsync covers the rest
                target = self._written
            try:
                _datasync(self.fd)
            except OSError as exc:
                self._fail(exc)
                return
            self._synced = target

    def _sync_due(self) -> bool:
        return not self._writing or self._written - self._synced >= self.sync_every

    def _fail(self, exc: BaseException) -> None:
        with self._lock:
            if self._error is None:
                self._error = exc
        # Wake the reader if it waits for a slot: it sees the error and stops.
        self._free.put(-1)
