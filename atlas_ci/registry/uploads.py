"""A file arriving for a pending version: a locked temp file under ``tmp/`` until it becomes the
version's file, and the cleanup of temp files no server holds any more."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import stat
import tempfile
from pathlib import Path

from atlas_ci.registry.ingest import Ingest, ReadInto, reserve
from atlas_ci.registry.model import Version

UPLOAD_TEMP = re.compile(r"upload-[0-9]+-[A-Za-z0-9_]+")


class Upload:
    """A file arriving for one pending version: a temp file, its size and SHA-256 once received.

    The caller :meth:`receive` s the body, then hands the upload to
    :meth:`Storage.finish_upload` or :meth:`abort` s it; either way the temp file does not
    outlive the upload.
    """

    def __init__(self, version: Version, tmp_dir: Path) -> None:
        self.version = version
        self._fd, self.path = locked_temp_file(tmp_dir, f"upload-{version.pk}-")
        self._open = True
        self.sha256 = hashlib.sha256(b"").hexdigest()
        self.size = 0

    def reserve(self, length: int) -> None:
        """Claim the disk space for ``length`` bytes now: a full disk raises ENOSPC here."""
        reserve(self._fd, length)

    def receive(self, read_into: ReadInto, length: int) -> None:
        """Take up to ``length`` bytes from ``read_into`` (see :mod:`.ingest`); sets :attr:`size`.

        A short body leaves :attr:`size` below ``length``; a disk error is raised.
        """
        ingest = Ingest(self._fd, length)
        try:
            self.size = ingest.run(read_into)
        finally:
            self.sha256 = ingest.hash.hexdigest()
        if self.size < length:
            os.ftruncate(self._fd, self.size)  # the file holds what came, not the reservation

    def seal(self) -> None:
        """Flush the bytes to disk before the file becomes visible.

        The file stays open, and so locked, until :meth:`abort`: a server starting on the
        same directory meanwhile must not take it for a leftover.
        """
        if self._open:
            os.fsync(self._fd)

    def _close(self) -> None:
        if self._open:
            self._open = False
            os.close(self._fd)

    def abort(self) -> None:
        """Drop the partial file; the version stays pending and its secret stays valid."""
        self._close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def locked_temp_file(directory: Path, prefix: str) -> tuple[int, Path]:
    """A new temp file, open and locked (``flock``), still under its name once locked.

    A server starting on the same directory may lock and remove an unlocked file between
    its creation and our lock; then the name no longer leads to our file, and we make
    another. On a file system without locks the file stays unlocked; no cleanup removes
    it then either (:func:`remove_if_unlocked` cannot lock it).
    """
    for _ in range(8):
        fd, name = tempfile.mkstemp(dir=directory, prefix=prefix)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)  # a cleanup holds it and is removing it
            continue
        except OSError:
            return fd, Path(name)
        try:
            mine = os.fstat(fd)
            now = os.stat(name, follow_symlinks=False)
            if (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino):
                return fd, Path(name)
        except FileNotFoundError:
            pass
        os.close(fd)
    raise OSError(errno.EAGAIN, f"could not create and lock a temp file in {directory}")


def remove_if_unlocked(path: str) -> None:
    """Unlink ``path`` if it is a regular file that nobody holds a lock on."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mine = os.fstat(fd)
        if not stat.S_ISREG(mine.st_mode):
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # an upload in flight
        now = os.stat(path, follow_symlinks=False)
        if (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino):
            os.unlink(path)  # while holding the lock: its creator sees the name gone
    finally:
        os.close(fd)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
