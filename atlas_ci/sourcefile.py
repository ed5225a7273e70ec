"""An artifact file held open from its check to the last byte sent: one descriptor.

The manifest loader checks files by name, early, for clear errors. Names can be raced: a
file replaced (``cp`` + ``mv``) or swapped for a symlink to a file outside the workspace
after that check would be hashed from one file and sent from another. So each artifact
file is opened once here, the descriptor itself is checked (a regular file; with a
workspace, the file it holds lies inside it, whatever the name now points at), and the
gzip check, the archive, the hash and the PUT all read that descriptor.

What the descriptor holds can still be written to. :meth:`SourceFile.changed` compares
the file's size and modification time with those seen at open: ``write``, ``truncate``
and appending move them. A rename or an unlink does not touch the bytes the descriptor
holds, so it is no change: the file that was opened is the one sent, whole.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
from pathlib import Path
from types import TracebackType

from atlas_ci.errors import InputFileError
from atlas_ci.textfile import describe_mode, quoted

__all__ = ["FileChanged", "SourceFile", "open_source"]

_DELETED = " (deleted)"  # what Linux appends to /proc/self/fd/N of an unlinked file


class FileChanged(InputFileError):
    """An artifact file changed (size or modification time) while it was in use.

    ``delivered``: the whole body had gone out when the change was seen, so the registry
    may hold a file that is not the one hashed.
    """

    def __init__(
        self, message: str, hint: str = "", path: str | None = None, *, delivered: bool = False
    ) -> None:
        super().__init__(message, hint, path)
        self.delivered = delivered


class SourceFile:
    """An open, checked, read-only artifact file and what it looked like when opened."""

    def __init__(self, fd: int, path: Path, info: os.stat_result) -> None:
        self.fd = fd
        self.path = path
        self.size = info.st_size
        self._mtime_ns = info.st_mtime_ns
        self.mtime = int(info.st_mtime)
        self.mode = info.st_mode

    @property
    def shown(self) -> str:
        return quoted(str(self.path))

    def changed(self) -> str | None:
        """How the file differs from when it was opened, or None when it does not."""
        info = os.fstat(self.fd)
        if info.st_size != self.size:
            return f"is now {info.st_size} bytes, not {self.size}"
        if info.st_mtime_ns != self._mtime_ns:
            return "was written to"
        return None

    def check(self, during: str, *, hint: str = "", delivered: bool = False) -> None:
        """Raise :class:`FileChanged` if the file changed since it was opened."""
        what = self.changed()
        if what is not None:
            raise FileChanged(
                f"file {self.shown} changed {during} (it {what})",
                hint or "make sure nothing writes the artifact while it is uploaded, then re-run",
                path=str(self.path),
                delivered=delivered,
            )

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def __enter__(self) -> SourceFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def open_source(path: Path, *, inside: Path | None = None) -> SourceFile:
    """``path`` opened read-only and checked on its descriptor; with ``inside``, the file
    opened must lie in that directory (a symlink is followed only to a file inside it).

    O_NONBLOCK: a FIFO swapped in after the manifest was read is refused, not waited on.
    """
    shown = quoted(str(path))
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
    try:
        try:
            fd = os.open(path, flags | os.O_NOFOLLOW)
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            # The last component is a symlink, which the manifest allows to a file in the
            # workspace: follow it, and judge the file it led to by its descriptor below.
            fd = os.open(path, flags)
    except OSError as exc:
        raise InputFileError(
            f"file {shown} cannot be opened: {exc.strerror or exc}",
            "check that the file still exists and is readable",
            path=str(path),
        ) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InputFileError(
                f"file {shown} is {describe_mode(info.st_mode)}",
                "artifact files must be regular files",
                path=str(path),
            )
        if inside is not None:
            _check_inside(fd, info, path, inside)
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return SourceFile(fd, path, info)


def _check_inside(fd: int, info: os.stat_result, path: Path, root: Path) -> None:
    """Refuse a descriptor whose file is not in ``root`` (by the kernel's name for it)."""
    real_root = Path(os.path.realpath(root))
    held = _held_path(fd)
    if held is None:  # no way to name an open file here: the name's target, then its inode
        held = os.path.realpath(path)
    same = False
    with contextlib.suppress(OSError):
        now = os.stat(held)
        same = (now.st_dev, now.st_ino) == (info.st_dev, info.st_ino)
    if not same and held.endswith(_DELETED):
        held, same = held[: -len(_DELETED)], True  # removed after the open: where it was
    if not same:
        raise InputFileError(
            f"file {quoted(str(path))} was moved or replaced while it was opened",
            "make sure nothing changes the artifacts while they are uploaded, then re-run",
            path=str(path),
        )
    if not Path(held).is_relative_to(real_root):
        raise InputFileError(
            f"file {quoted(str(path))} resolves to {held}, outside the workspace {real_root}",
            "keep artifacts in the workspace, or pass --allow-outside-workspace",
            path=str(path),
        )


def _held_path(fd: int) -> str | None:
    """The path of the file open on ``fd`` as the kernel names it, or None if it cannot."""
    with contextlib.suppress(OSError):
        return os.readlink(f"/proc/self/fd/{fd}")
    get_path = getattr(fcntl, "F_GETPATH", None)  # macOS
    if get_path is not None:
        with contextlib.suppress(OSError):
            raw = fcntl.fcntl(fd, get_path, bytes(1024))
            return os.fsdecode(raw.split(b"\0", 1)[0])
    return None
