"""SHA-256 of a file computed in a background thread, started as early as the caller likes.

Light to import on purpose (no requests): the upload command can start hashing the
payload the moment its size is known, before the HTTP stack is even imported and while
the registry calls run, then hand the running digest to :func:`atlas_ci.transfer.put_file`.
On a 2-core machine the hash is the slowest part of an upload over plain http, so every
millisecond it starts earlier comes off the wall time.

The thread needs the GIL for a moment after every read and every ``update``; while it
waits, it hashes nothing. At Python's default switch interval (5 ms) a main thread busy
importing the HTTP stack keeps it waiting up to 5 ms each time. So it reads
:data:`HASH_READ` per turn (long enough that the waits are a small share of it; larger reads
hashed slower), and while a digest runs the switch interval is
:data:`SWITCH_INTERVAL`; the previous one comes back when the last digest ends. What this
gains is measured in ``BENCHMARKS.md`` (``python3 bench/ab.py REV`` compares two commits).
"""

from __future__ import annotations

import hashlib
import mmap
import os
import sys
import threading
import time
from pathlib import Path

from atlas_ci.errors import InputFileError
from atlas_ci.textfile import open_regular

__all__ = ["CHUNK", "HASH_READ", "SWITCH_INTERVAL", "FileDigest", "pread_into"]

CHUNK = 1 << 20
"""The block size of the upload's writes where it cannot use sendfile (see transfer.py)."""
HASH_READ = 2 << 20
SWITCH_INTERVAL = 0.0001


class _SwitchInterval:
    """Lowers ``sys.setswitchinterval`` while at least one digest runs, then restores it.

    Each digest enters once and leaves once, however often ``leave`` is called for it. The
    saved interval comes back only if nobody changed it meanwhile.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders: set[object] = set()
        self._saved: float | None = None
        self._ours = 0.0

    def enter(self, holder: object) -> None:
        with self._lock:
            if not self._holders:
                current = sys.getswitchinterval()
                if current > SWITCH_INTERVAL:
                    self._saved = current
                    sys.setswitchinterval(SWITCH_INTERVAL)
                    self._ours = sys.getswitchinterval()  # as Python rounded it
            self._holders.add(holder)

    def leave(self, holder: object) -> None:
        with self._lock:
            if holder not in self._holders:
                return
            self._holders.discard(holder)
            if not self._holders and self._saved is not None:
                if sys.getswitchinterval() == self._ours:
                    sys.setswitchinterval(self._saved)
                self._saved = None


_switch = _SwitchInterval()


class FileDigest:
    """SHA-256 of the first ``size`` bytes of an open file, computed in a thread.

    It reads with ``preadv`` at explicit offsets into a page-aligned (mmap) buffer: the
    offsets leave the file position alone, so a sender may share the descriptor, and a
    buffer that starts off a page boundary reads several times slower.
    """

    def __init__(self, fd: int, size: int, name: str, *, owns_fd: bool = False) -> None:
        self._fd = fd
        self._size = size
        self._name = name
        self._owns_fd = owns_fd
        self._stop = threading.Event()
        # How far the hash has got, for a sender that must not run far ahead of it.
        self._progress = threading.Condition()
        self._hashed = 0
        self._wanted: int | None = None  # what a waiter waits for: woken only once it is there
        self._ended = False
        self._digest = ""
        self._error: BaseException | None = None
        self.seconds: float | None = None  # how long the whole hash took, once it is done
        self._thread = threading.Thread(target=self._run, name="atlas-ci-sha256", daemon=True)
        _switch.enter(self)
        try:
            self._thread.start()
        except BaseException:
            _switch.leave(self)  # the thread may have started and left already: leave is once
            raise

    @classmethod
    def start(cls, path: Path | str, size: int) -> FileDigest:
        """Open ``path`` and start hashing it; the thread closes the file when done."""
        try:
            # O_NONBLOCK first: a file swapped for a FIFO since it was checked must not hang.
            fd = open_regular(path)
        except OSError as e:
            raise InputFileError(f"cannot open {path}: {e.strerror}", path=str(path)) from None
        actual = os.fstat(fd).st_size
        if actual != size:
            os.close(fd)
            raise InputFileError(
                f"{path} is {actual} bytes, not the {size} bytes measured",
                hint="something changed the file; run again",
                path=str(path),
            )
        return cls(fd, size, str(path), owns_fd=True)

    @property
    def size(self) -> int:
        return self._size

    def _run(self) -> None:
        started = time.perf_counter()
        try:
            digest = hashlib.sha256()
            buf = mmap.mmap(-1, HASH_READ)
            with memoryview(buf) as view:
                offset = 0
                while offset < self._size and not self._stop.is_set():
                    want = min(HASH_READ, self._size - offset)
                    n = pread_into(self._fd, view[:want], offset)
                    if not n:
                        raise InputFileError(
                            f"{self._name} got shorter while it was read", path=self._name
                        )
                    digest.update(view[:n])  # hashlib lets go of the GIL for big updates
                    offset += n
                    with self._progress:
                        self._hashed = offset
                        if self._wanted is not None and offset >= self._wanted:
                            self._progress.notify_all()
            buf.close()
            if offset == self._size:  # not cancelled half way
                self._digest = digest.hexdigest()
                self.seconds = time.perf_counter() - started
        except BaseException as e:  # handed over by result()
            self._error = e
        finally:
            try:
                if self._owns_fd:
                    os.close(self._fd)
            finally:
                _switch.leave(self)
                with self._progress:
                    self._ended = True
                    self._progress.notify_all()

    def wait_hashed(self, offset: int) -> int:
        """Wait until at least ``offset`` bytes are hashed or the hash ended; how many are."""
        with self._progress:
            self._wanted = offset
            try:
                self._progress.wait_for(lambda: self._hashed >= offset or self._ended)
            finally:
                self._wanted = None
            return self._hashed

    def result(self) -> str:
        """The hex digest; waits for the thread. Raises what the thread met."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        if not self._digest:
            raise RuntimeError("the digest was cancelled")
        return self._digest

    def cancel(self) -> None:
        """Stop hashing and wait for the thread to let go of the file."""
        self._stop.set()
        self._thread.join()


def pread_into(fd: int, view: memoryview, offset: int) -> int:
    """Read into ``view`` from ``offset`` of ``fd`` (the file position is left alone)."""
    if hasattr(os, "preadv"):
        return os.preadv(fd, [view], offset)
    data = os.pread(fd, len(view), offset)
    view[: len(data)] = data
    return len(data)
