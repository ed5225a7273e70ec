"""Reading small user-supplied text files (manifests, artifact JSON, metadata files) safely.

Every failure becomes an :class:`~atlas_ci.errors.InputFileError` that names the file the
way the user wrote it; the file is size-checked before it is read and a FIFO never blocks.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import unicodedata
from pathlib import Path
from typing import TextIO

from atlas_ci.errors import InputFileError

MiB = 1024 * 1024


def quoted(text: str, limit: int = 200) -> str:
    """``text`` quoted for a one-line message: control characters escaped, long text cut."""
    if len(text) > limit:
        return repr(text[:limit]) + "..."
    return repr(text)


def unsendable(text: str) -> str | None:
    """Why ``text`` has no UTF-8 form, or None when it has one.

    A lone surrogate (``"\\ud800"`` in JSON; on a command line, a byte that is not UTF-8)
    cannot be encoded: refused where it is read, it cannot fail later on the wire or at the
    registry, after the run has begun.
    """
    for ch in text:
        if 0xD800 <= ord(ch) <= 0xDFFF:
            if 0xDC80 <= ord(ch) <= 0xDCFF:  # how Python decodes a non-UTF-8 byte of argv
                byte = ord(ch) - 0xDC00
                return f"holds {ch!r}: a lone surrogate, or the byte 0x{byte:02x}, not UTF-8"
            return f"holds a lone surrogate ({ch!r}), which is not UTF-8 text"
    return None


def control_character(text: str) -> str | None:
    """Why ``text`` cannot stay one honest line, or None: a control character, a line or
    paragraph separator, or an invisible format character (a bidi override, say)."""
    for ch in text:
        if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp"):
            return f"holds a control character ({ch!r})"
    return None


def describe_mode(mode: int) -> str:
    """What kind of non-regular file ``mode`` is, for messages."""
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def open_regular(path: str | Path, *, hint: str = "artifact files must be regular files") -> int:
    """A read-only descriptor of ``path``, which must be a regular file; a FIFO never blocks.

    Opened with ``O_NONBLOCK`` so a file swapped for a FIFO (or a device) after it was
    validated fails here at once instead of waiting for a writer for ever; checked with
    ``fstat`` on the descriptor itself (no race with the name), then the flag is cleared so
    reads of the regular file behave as usual. OSError from ``open`` is the caller's to word.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise InputFileError(
                f"file {quoted(str(path))} is {describe_mode(mode)}", hint, path=str(path)
            )
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_output(path: str | Path, *, append: bool) -> TextIO:
    """A report file opened for writing as UTF-8 text; a FIFO without a reader never blocks.

    ``O_NONBLOCK`` makes a FIFO swapped in after the early check fail at once (``ENXIO``)
    instead of holding the job for ever; it is cleared again for the writes.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    flags |= os.O_APPEND if append else os.O_TRUNC
    fd = os.open(path, flags, 0o666)
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        return os.fdopen(fd, "a" if append else "w", encoding="utf-8")
    except BaseException:
        os.close(fd)
        raise


def read_text(path: str, *, what: str, limit: int, cwd: Path | None = None) -> str:
    """Read the UTF-8 text file ``path`` (relative to ``cwd``), refusing anything over ``limit``.

    ``what`` names the input in messages ("manifest", "metadata file", ...). A leading
    UTF-8 byte-order mark is dropped.
    """
    if not path:
        raise InputFileError(f"{what} path is empty", "give the path of the file", path=path)
    if "\0" in path:
        raise InputFileError(
            f"{what} path {quoted(path)} contains a NUL byte", "check the path", path=path
        )
    full = Path(path)
    if not full.is_absolute():
        full = (cwd if cwd is not None else Path.cwd()) / full
    name = f"{what} {quoted(path)}"
    try:
        # O_NONBLOCK: opening a FIFO for reading must not hang the job.
        fd = os.open(full, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise _open_error(exc, name, full, path) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InputFileError(
                f"{name} is {describe_mode(info.st_mode)}",
                "point it at the file itself",
                path=path,
            )
        if info.st_size > limit:
            raise InputFileError(
                f"{name} is {info.st_size} bytes, more than the {limit // MiB} MiB allowed",
                "check that this is the right file",
                path=path,
            )
        with os.fdopen(fd, "rb") as handle:
            fd = -1  # the file object owns it now
            data = handle.read(limit + 1)
    except OSError as exc:
        raise InputFileError(
            f"{name} cannot be read: {exc.strerror or exc}", "check the file", path=path
        ) from None
    finally:
        if fd >= 0:
            os.close(fd)
    if len(data) > limit:
        raise InputFileError(
            f"{name} grew past the {limit // MiB} MiB allowed while being read",
            "wait until the file is complete",
            path=path,
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputFileError(
            f"{name} is not UTF-8 text (bad byte at offset {exc.start})",
            "save the file as UTF-8",
            path=path,
        ) from None


def _open_error(exc: OSError, name: str, full: Path, path: str) -> InputFileError:
    if isinstance(exc, FileNotFoundError):
        if os.path.islink(full):
            return InputFileError(
                f"{name} is a dangling symlink", "point the link at an existing file", path=path
            )
        where = "" if Path(path).is_absolute() else f" (looked in {full.parent})"
        return InputFileError(f"{name} not found{where}", "check the path", path=path)
    if isinstance(exc, PermissionError):
        return InputFileError(
            f"{name} cannot be read: permission denied",
            "make the file readable by this job",
            path=path,
        )
    if exc.errno == errno.ELOOP:
        return InputFileError(f"{name} is a symlink loop", "fix the symlink", path=path)
    if exc.errno == errno.ENOTDIR:
        return InputFileError(
            f"{name} not found: a parent of it is not a directory", "check the path", path=path
        )
    return InputFileError(
        f"{name} cannot be opened: {exc.strerror or exc}", "check the path", path=path
    )
