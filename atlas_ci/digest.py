"""SHA-256 of a file computed in a background thread, started as early as the caller likes.

Light to import on purpose (no requests): the upload command can start hashing the
payload the moment its size is known, before the HTTP stack is even imported and while
the registry calls run, then hand the running digest to :func:`atlas_ci.transfer.put_file`.
On a 2-core machine the hash (~1.3 GiB/s for one core) is the slowest part of an upload
over plain http, so every millisecond it starts earlier comes off the wall time.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import threading
import time
from pathlib import Path

from atlas_ci.errors import InputFileError

__all__ = ["CHUNK", "FileDigest"]

CHUNK = 1 << 20


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
        self._digest = ""
        self._error: BaseException | None = None
        self.seconds: float | None = None  # how long the whole hash took, once it is done
        self._thread = threading.Thread(target=self._run, name="atlas-ci-sha256", daemon=True)
        self._thread.start()

    @classmethod
    def start(cls, path: Path | str, size: int) -> FileDigest:
        """Open ``path`` and start hashing it; the thread closes the file when done."""
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
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
            buf = mmap.mmap(-1, CHUNK)
            with memoryview(buf) as view:
                offset = 0
                while offset < self._size and not self._stop.is_set():
                    n = _pread_into(self._fd, view[: min(CHUNK, self._size - offset)], offset)
                    if not n:
                        raise InputFileError(
                            f"{self._name} got shorter while it was read", path=self._name
                        )
                    digest.update(view[:n])  # hashlib lets go of the GIL for big updates
                    offset += n
            buf.close()
            if offset == self._size:  # not cancelled half way
                self._digest = digest.hexdigest()
                self.seconds = time.perf_counter() - started
        except BaseException as e:  # handed over by result()
            self._error = e
        finally:
            if self._owns_fd:
                os.close(self._fd)

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


def _pread_into(fd: int, view: memoryview, offset: int) -> int:
    if hasattr(os, "preadv"):
        return os.preadv(fd, [view], offset)
    data = os.pread(fd, len(view), offset)
    view[: len(data)] = data
    return len(data)
