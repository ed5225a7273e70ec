"""The payload on disk: Packer's archive rules (atlas-wire.md section 5).

One gzip file is uploaded byte for byte; anything else becomes a tar.gz in the caller's
private temp directory, so its size is known before the upload. The archive is
deterministic for the same files: fixed entry order, uid/gid 0, no user names, gzip mtime 0.

Decision: the common prefix is taken over the files' absolute paths (the manifest loader
resolves them), not over the names as the manifest recorded them. Where Packer's builders
gave paths under one output directory the entries are the same; relative names with no
shared directory (``a.vmx``, ``sub/b.vmdk``), which Packer refused with "No common prefix",
are archived from their deepest common directory instead. The error remains for paths with
no common prefix at all.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, cast

from atlas_ci.errors import ConfigError, InputFileError
from atlas_ci.sourcefile import SourceFile, open_source
from atlas_ci.textfile import quoted

if TYPE_CHECKING:
    import tarfile

# gzip, tarfile and tempfile are imported by the functions that build an archive: the
# upload checks a pass-through file with is_gzip and starts hashing it without them.

COPY_BUFFER = 1024 * 1024
DEFAULT_LEVEL = 6  # Go's default, what Packer used; Python's gzip default (9) is far slower

GzipWriter = Callable[[BinaryIO, int], BinaryIO]
Opener = Callable[[Path], SourceFile]

_FTEXT, _FHCRC, _FEXTRA, _FNAME, _FCOMMENT = 1, 2, 4, 8, 16
_RESERVED_FLAGS = 0xE0
_MAX_HEADER_STRING = 512  # Go's gzip reader refuses longer names and comments


@dataclass(frozen=True)
class Payload:
    """The file to PUT, its size, and its open descriptor (hashed and sent from)."""

    path: Path  # the original gzip file, or a temp .tar.gz
    size: int
    temporary: bool  # True if we created it (the caller's temp dir owns it)
    file: SourceFile = field(compare=False, repr=False)

    def close(self) -> None:
        """Let go of the file; a temporary archive is removed."""
        self.file.close()
        if self.temporary:
            self.path.unlink(missing_ok=True)


# The longest header _gzip_header_ok may read: fixed part, FEXTRA, FNAME, FCOMMENT, FHCRC.
_HEADER_MAX = 10 + 2 + 0xFFFF + 2 * _MAX_HEADER_STRING + 2


def is_gzip(file: Path | SourceFile) -> bool:
    """True if the file starts with a complete, well-formed gzip member header."""
    path = file if isinstance(file, Path) else file.path
    try:
        if isinstance(file, SourceFile):
            start = os.pread(file.fd, _HEADER_MAX, 0)
        else:
            with open_source(file) as opened:
                start = os.pread(opened.fd, _HEADER_MAX, 0)
    except OSError as exc:
        raise InputFileError(
            f"file {quoted(str(path))} cannot be read: {exc.strerror or exc}",
            "check the file's permissions",
            path=str(path),
        ) from None
    return _gzip_header_ok(io.BytesIO(start))


def _gzip_header_ok(handle: BinaryIO) -> bool:
    fixed = handle.read(10)
    if len(fixed) < 10 or fixed[:3] != b"\x1f\x8b\x08":
        return False
    flags = fixed[3]
    if flags & _RESERVED_FLAGS:
        return False
    header = bytearray(fixed)
    if flags & _FEXTRA:
        raw_length = handle.read(2)
        if len(raw_length) < 2:
            return False
        (length,) = struct.unpack("<H", raw_length)
        extra = handle.read(length)
        if len(extra) < length:
            return False
        header += raw_length + extra
    for flag in (_FNAME, _FCOMMENT):
        if flags & flag:
            text = _read_zero_terminated(handle)
            if text is None:
                return False
            header += text
    if flags & _FHCRC:
        crc = handle.read(2)
        if len(crc) < 2 or struct.unpack("<H", crc)[0] != zlib.crc32(header) & 0xFFFF:
            return False
    return True


def _read_zero_terminated(handle: BinaryIO) -> bytes | None:
    data = handle.read(_MAX_HEADER_STRING)
    end = data.find(b"\0")
    if end < 0:
        return None
    handle.seek(end + 1 - len(data), os.SEEK_CUR)
    return data[: end + 1]


def common_prefix(paths: Sequence[str]) -> str:
    """The longest prefix ending in ``/`` that all ``paths`` share (Packer's rule).

    Walks back from the end of the first shortest path to each ``/``. Raises
    :class:`InputFileError` when there is none.
    """
    if paths:
        shortest = min(paths, key=len)  # min() keeps the first of equal lengths, as Packer did
        for end in range(len(shortest), 0, -1):
            if shortest[end - 1] != "/":
                continue
            prefix = shortest[:end]
            if all(path.startswith(prefix) for path in paths):
                return prefix
    shown = "[" + ", ".join(quoted(path) for path in paths) + "]"
    raise InputFileError(
        f"No common prefix for archiving files: {shown}",
        "put the files in one directory, or upload them separately",
    )


def prepare_payload(
    files: Sequence[Path],
    workdir: Path,
    *,
    level: int = DEFAULT_LEVEL,
    gzip_writer: GzipWriter | None = None,
    opener: Opener = open_source,
) -> Payload | None:
    """The payload for ``files``: None, the gzip file itself, or a new tar.gz in ``workdir``.

    Each file is opened once, by ``opener`` (the caller's checks, or a file it opened
    earlier), and read only through that descriptor. ``gzip_writer(raw, level)`` returns
    the compressing stream to write the tar into (a parallel implementation plugs in
    here); the default is single-threaded gzip at ``level``.
    """
    if not 0 <= level <= 9:
        raise ConfigError(f"gzip level {level} is out of range", "use a level from 0 to 9")
    if not files:
        return None
    if len(files) == 1:
        only = Path(files[0])
        source = opener(only)
        try:
            if is_gzip(source):
                return Payload(path=only, size=source.size, temporary=False, file=source)
        except BaseException:
            source.close()
            raise
        entries = [_Entry(name=only.name, source=only, is_dir=False)]
        with source:
            return _write_archive(entries, Path(workdir), level, gzip_writer, lambda _: source)
    entries = _entries_under_prefix([Path(file) for file in files])
    return _write_archive(entries, Path(workdir), level, gzip_writer, opener)


@dataclass(frozen=True)
class _Entry:
    name: str  # relative, "/"-separated, no trailing slash
    source: Path
    is_dir: bool


def _entries_under_prefix(files: list[Path]) -> list[_Entry]:
    names = [str(file) for file in files]
    prefix = common_prefix(names)
    root = Path(prefix)
    entries: dict[str, _Entry] = {}
    for name, file in zip(names, files, strict=True):
        relative = name[len(prefix) :]
        parts = relative.split("/")
        for depth in range(1, len(parts)):
            directory = "/".join(parts[:depth])
            entries.setdefault(directory, _Entry(directory, root / directory, is_dir=True))
        entries.setdefault(relative, _Entry(relative, file, is_dir=False))

    # Go's filepath.Walk order: lexical by component, bytewise, directories before contents.
    def walk_order(entry: _Entry) -> tuple[bytes, ...]:
        return tuple(os.fsencode(part) for part in entry.name.split("/"))

    return sorted(entries.values(), key=walk_order)


def _default_gzip(raw: BinaryIO, level: int) -> BinaryIO:
    import gzip

    # filename="" keeps the temp file's name out of the header; mtime=0 keeps it stable.
    stream = gzip.GzipFile(filename="", fileobj=raw, mode="wb", compresslevel=level, mtime=0)
    return cast(BinaryIO, stream)


def _write_archive(
    entries: list[_Entry],
    workdir: Path,
    level: int,
    gzip_writer: GzipWriter | None,
    opener: Opener,
) -> Payload:
    import tarfile
    import tempfile

    writer = gzip_writer or _default_gzip
    try:
        fd, temp_name = tempfile.mkstemp(prefix="atlas-ci-", suffix=".tar.gz", dir=workdir)
    except OSError as exc:
        raise _write_error(workdir, exc) from None
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as raw:
            stream = writer(raw, level)
            try:
                # What tarfile.open(fileobj=stream, mode="w") builds, with a 1 MiB copy buffer.
                with tarfile.TarFile(
                    fileobj=_Counting(stream),
                    mode="w",
                    format=tarfile.PAX_FORMAT,
                    copybufsize=COPY_BUFFER,
                ) as tar:
                    for entry in entries:
                        _add(tar, entry, opener)
            except BaseException:
                _close_quietly(stream)
                raise
            stream.close()
        # Our own file in our private directory: opened once more, to be hashed and sent.
        archive = open_source(temp)
        return Payload(path=temp, size=archive.size, temporary=True, file=archive)
    except InputFileError:
        temp.unlink(missing_ok=True)
        raise
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise _write_error(workdir, exc) from None
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _close_quietly(stream: BinaryIO) -> None:
    with contextlib.suppress(Exception):  # the first error is the one to report
        stream.close()


def _write_error(workdir: Path, exc: OSError) -> InputFileError:
    return InputFileError(
        f"cannot write the archive in {workdir}: {exc.strerror or exc}",
        "free space in the temp directory or point TMPDIR at a larger one",
        path=str(workdir),
    )


def _header(entry: _Entry, mode: int, mtime: int, size: int) -> tarfile.TarInfo:
    import tarfile

    member = tarfile.TarInfo(entry.name)
    member.mode = stat.S_IMODE(mode)
    member.mtime = mtime
    member.uid = member.gid = 0
    member.uname = member.gname = ""
    if entry.is_dir:
        member.type = tarfile.DIRTYPE
    else:
        member.type = tarfile.REGTYPE
        member.size = size
    return member


def _add(tar: tarfile.TarFile, entry: _Entry, opener: Opener) -> None:
    shown = quoted(str(entry.source))
    if entry.is_dir:
        try:
            info = os.stat(entry.source)
        except OSError as exc:
            raise InputFileError(
                f"directory {shown} cannot be read: {exc.strerror or exc}",
                "check that the artifact's directory still exists",
                path=str(entry.source),
            ) from None
        tar.addfile(_header(entry, info.st_mode, int(info.st_mtime), 0))
        return
    source = opener(entry.source)
    try:
        member = _header(entry, source.mode, source.mtime, source.size)
        try:
            tar.addfile(member, _Reader(source))
        except _SourceError as exc:
            raise InputFileError(
                f"file {shown} cannot be read: {exc.reason}",
                "make sure nothing writes the artifact while it is uploaded",
                path=str(entry.source),
            ) from None
        # What was read is what the header promised: the file as it was when opened.
        source.check("while it was archived")
    finally:
        source.close()


class _Counting:
    """The compressed stream as tarfile sees it: ``write`` plus the ``tell`` tarfile asks for.

    A plugged-in gzip writer then needs only ``write`` and ``close``.
    """

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._offset = 0

    def write(self, data: bytes) -> int:
        self._stream.write(data)
        self._offset += len(data)
        return len(data)

    def tell(self) -> int:
        return self._offset

    def read(self, size: int = -1) -> bytes:
        raise io.UnsupportedOperation("the archive is written, never read")

    def seek(self, pos: int) -> int:
        raise io.UnsupportedOperation("the archive is a stream")

    def close(self) -> None:
        """The caller closes the real stream (it writes the gzip trailer)."""


class _SourceError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Reader:
    """An artifact file read from its descriptor at explicit offsets (the position of a
    descriptor the caller shares is left alone); read errors are told apart from archive
    write errors."""

    def __init__(self, source: SourceFile) -> None:
        self._source = source
        self._offset = 0

    def read(self, size: int = -1) -> bytes:
        want = self._source.size - self._offset if size < 0 else size
        try:
            data = os.pread(self._source.fd, want, self._offset)
        except OSError as exc:
            raise _SourceError(str(exc.strerror or exc)) from None
        if len(data) < want:
            # tarfile asks for exactly what the header promised; a short read means the
            # file shrank after it was opened.
            raise _SourceError("it shrank while being archived")
        self._offset += len(data)
        return data
