"""Packer's archive rules: gzip pass-through, single-file wrap, common-prefix tar.gz."""

from __future__ import annotations

import fcntl
import gzip
import io
import os
import struct
import tarfile
import zlib
from pathlib import Path
from typing import BinaryIO

import pytest

from atlas_ci.archive import Payload, common_prefix, is_gzip, prepare_payload
from atlas_ci.errors import ConfigError, InputFileError
from atlas_ci.textfile import open_regular
from tests.artifacts import in_a_child
from tests.ids import short_id


def touch(path: Path, content: bytes = b"x", mode: int = 0o644, mtime: int = 1_600_000_000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    path.chmod(mode)
    os.utime(path, (mtime, mtime))
    return path


def members(payload: Payload) -> list[tarfile.TarInfo]:
    with tarfile.open(payload.path, "r:gz") as tar:
        return tar.getmembers()


def raw_names(payload: Payload) -> list[str]:
    """Entry names exactly as stored in the headers (tarfile strips a directory's slash)."""
    with tarfile.open(payload.path, "r:gz") as tar:
        return [m.name + "/" if m.isdir() else m.name for m in tar.getmembers()]


def read_member(payload: Payload, name: str) -> bytes:
    with tarfile.open(payload.path, "r:gz") as tar:
        handle = tar.extractfile(name)
        assert handle is not None
        return handle.read()


@pytest.fixture
def work(tmp_path: Path) -> Path:
    workdir = tmp_path / "work"
    workdir.mkdir()
    return workdir


# --- the rules ----------------------------------------------------------------------------


def test_no_files_means_no_payload(work: Path) -> None:
    assert prepare_payload([], work) is None
    assert list(work.iterdir()) == []


def test_single_gzip_file_is_uploaded_byte_identical(tmp_path: Path, work: Path) -> None:
    content = gzip.compress(b"vagrant box" * 1000, compresslevel=9, mtime=123)
    box = touch(tmp_path / "package.box", content)
    payload = prepare_payload([box], work)
    assert payload is not None
    with payload.file:
        assert payload == Payload(path=box, size=len(content), temporary=False, file=payload.file)
        assert os.pread(payload.file.fd, len(content) + 1, 0) == content  # the box, opened
    assert box.read_bytes() == content
    assert list(work.iterdir()) == []


def test_single_plain_file_is_wrapped_under_its_base_name(tmp_path: Path, work: Path) -> None:
    export = touch(tmp_path / "out" / "export.tar", b"not gzip" * 100, mode=0o640, mtime=1234567)
    payload = prepare_payload([export], work)
    assert payload is not None
    assert payload.temporary
    assert payload.path.parent == work
    assert payload.path.name.endswith(".tar.gz")
    assert payload.size == payload.path.stat().st_size
    (entry,) = members(payload)
    assert entry.name == "export.tar"
    assert entry.isfile()
    assert (entry.mode, entry.mtime, entry.size) == (0o640, 1234567, 800)
    assert (entry.uid, entry.gid, entry.uname, entry.gname) == (0, 0, "", "")
    assert read_member(payload, "export.tar") == b"not gzip" * 100


def test_several_files_are_archived_from_their_common_directory(tmp_path: Path, work: Path) -> None:
    multi = tmp_path / "multi"
    files = [
        touch(multi / "vm.vmx", b"vmx"),
        touch(multi / "disk.vmdk", b"disk"),
        touch(multi / "sub" / "n.txt", b"note"),
    ]
    touch(multi / "unlisted.log")
    touch(multi / "sub" / "unlisted.txt")
    (multi / "sub").chmod(0o750)
    payload = prepare_payload(files, work)
    assert payload is not None
    assert raw_names(payload) == ["disk.vmdk", "sub/", "sub/n.txt", "vm.vmx"]
    entries = {m.name: m for m in members(payload)}
    assert entries["sub"].isdir()
    assert entries["sub"].mode == 0o750
    assert all((m.uid, m.gid, m.uname) == (0, 0, "") for m in entries.values())
    assert read_member(payload, "sub/n.txt") == b"note"
    assert read_member(payload, "disk.vmdk") == b"disk"


def test_directory_entries_are_stored_with_a_trailing_slash(tmp_path: Path, work: Path) -> None:
    files = [touch(tmp_path / "m" / "a"), touch(tmp_path / "m" / "d" / "e" / "f")]
    payload = prepare_payload(files, work)
    assert payload is not None
    tar_bytes = gzip.decompress(payload.path.read_bytes())
    names, offset = [], 0
    while tar_bytes[offset : offset + 512].strip(b"\0"):
        header = tar_bytes[offset : offset + 512]
        names.append((header[:100].rstrip(b"\0"), header[156:157]))
        size = int(header[124:136].rstrip(b"\0 ") or b"0", 8)
        offset += 512 + (size + 511) // 512 * 512
    assert names == [(b"a", b"0"), (b"d/", b"5"), (b"d/e/", b"5"), (b"d/e/f", b"0")]


def test_entries_follow_walk_order_by_path_component(tmp_path: Path, work: Path) -> None:
    root = tmp_path / "r"
    files = [
        touch(root / "a.b" / "x"),
        touch(root / "a" / "y"),
        touch(root / "B"),
        touch(root / "a-"),
    ]
    payload = prepare_payload(files, work)
    assert payload is not None
    # "a" < "a-" < "a.b" by component, although "a-" < "a.b" < "a/" as whole strings.
    assert raw_names(payload) == ["B", "a/", "a/y", "a-", "a.b/", "a.b/x"]


def test_common_prefix_is_the_deepest_shared_directory(tmp_path: Path, work: Path) -> None:
    files = [touch(tmp_path / "o" / "deep" / "one"), touch(tmp_path / "o" / "deep" / "two")]
    payload = prepare_payload(files, work)
    assert payload is not None
    assert raw_names(payload) == ["one", "two"]


def test_several_gzip_files_are_still_archived(tmp_path: Path, work: Path) -> None:
    files = [
        touch(tmp_path / "a.gz", gzip.compress(b"a")),
        touch(tmp_path / "b.gz", gzip.compress(b"b")),
    ]
    payload = prepare_payload(files, work)
    assert payload is not None
    assert payload.temporary
    assert raw_names(payload) == ["a.gz", "b.gz"]


def test_symlinked_file_is_archived_under_its_own_name(tmp_path: Path, work: Path) -> None:
    target = touch(tmp_path / "store" / "blob", b"content")
    (tmp_path / "out").mkdir()
    link = tmp_path / "out" / "disk.vmdk"
    link.symlink_to(target)
    payload = prepare_payload([link, touch(tmp_path / "out" / "vm.vmx")], work)
    assert payload is not None
    entry = {m.name: m for m in members(payload)}["disk.vmdk"]
    assert entry.isfile()
    assert read_member(payload, "disk.vmdk") == b"content"


def test_archive_is_deterministic(tmp_path: Path, work: Path) -> None:
    files = [touch(tmp_path / "m" / "a", b"1"), touch(tmp_path / "m" / "s" / "b", b"2")]
    first = prepare_payload(files, work)
    second = prepare_payload(files, work)
    assert first is not None
    assert second is not None
    assert first.path != second.path
    assert first.path.read_bytes() == second.path.read_bytes()


# --- common prefix ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("paths", "expected"),
    [
        (["a/b/c", "a/b/d"], "a/b/"),
        (["a/bc", "a/bd"], "a/"),
        (["/x/y/z", "/x/y/z2", "/x/y/sub/w"], "/x/y/"),
        (["/x/a", "/y/b"], "/"),
        (["dir/", "dir/file"], "dir/"),
        (["out/disk", "out/disk/x"], "out/"),
    ],
)
def test_common_prefix_follows_packers_rule(paths: list[str], expected: str) -> None:
    assert common_prefix(paths) == expected


def test_no_common_prefix_is_an_error_listing_the_files() -> None:
    with pytest.raises(InputFileError) as exc:
        common_prefix(["disk.vmdk", "other/vm.vmx"])
    assert (
        exc.value.message == "No common prefix for archiving files: ['disk.vmdk', 'other/vm.vmx']"
    )
    assert exc.value.hint


def test_relative_files_without_common_prefix_leave_nothing_behind(
    tmp_path: Path, work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    touch(tmp_path / "a")
    touch(tmp_path / "b")
    with pytest.raises(
        InputFileError, match=r"^No common prefix for archiving files: \['a', 'b'\]$"
    ):
        prepare_payload([Path("a"), Path("b")], work)
    assert list(work.iterdir()) == []


# --- compression --------------------------------------------------------------------------


def compressible(size: int) -> bytes:
    words = [bytes([97 + (i * 7) % 26]) * (1 + i % 5) for i in range(200)]
    out = bytearray()
    i = 0
    while len(out) < size:
        out += words[(i * i + 3 * i) % len(words)] + b" "
        i += 1
    return bytes(out[:size])


def deflate(data: bytes, level: int) -> bytes:
    compressor = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


def test_default_compression_is_gzip_level_6(tmp_path: Path, work: Path) -> None:
    source = touch(tmp_path / "disk.img", compressible(2_000_000))
    payload = prepare_payload([source], work)
    assert payload is not None
    gz = payload.path.read_bytes()
    assert gz[8] == 0  # XFL: neither "maximum" (2, level 9) nor "fastest" (4)
    assert struct.unpack("<I", gz[4:8]) == (0,)  # mtime 0
    assert gz[3] == 0  # no file name in the header
    body = gz[10:-8]
    tar_bytes = gzip.decompress(gz)
    assert deflate(tar_bytes, 6) == body
    assert deflate(tar_bytes, 9) != body
    assert deflate(tar_bytes, 1) != body


def test_gzip_writer_is_plugged_in_with_the_level(tmp_path: Path, work: Path) -> None:
    calls: list[int] = []

    def writer(raw: BinaryIO, level: int) -> BinaryIO:
        calls.append(level)
        return gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=level, mtime=0)  # type: ignore[return-value]

    source = touch(tmp_path / "disk.img", compressible(100_000))
    assert prepare_payload([source], work, gzip_writer=writer) is not None
    assert calls == [6]
    payload = prepare_payload([source], work, level=1, gzip_writer=writer)
    assert calls == [6, 1]
    assert payload is not None
    assert read_member(payload, "disk.img") == compressible(100_000)


@pytest.mark.parametrize("level", [-1, 10])
def test_level_out_of_range_is_a_config_error(tmp_path: Path, work: Path, level: int) -> None:
    with pytest.raises(ConfigError, match="gzip level"):
        prepare_payload([touch(tmp_path / "a")], work, level=level)


# --- failures leave nothing behind --------------------------------------------------------


def test_missing_source_removes_the_partial_archive(tmp_path: Path, work: Path) -> None:
    present = touch(tmp_path / "m" / "a", compressible(300_000))
    gone = tmp_path / "m" / "b"
    with pytest.raises(InputFileError) as exc:
        prepare_payload([present, gone], work)
    assert f"{gone}" in exc.value.message
    assert list(work.iterdir()) == []


def test_write_failure_removes_the_partial_archive(tmp_path: Path, work: Path) -> None:
    class Full(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, data: object) -> int:
            raise OSError(28, "No space left on device")

    def writer(raw: BinaryIO, level: int) -> BinaryIO:
        return Full()  # type: ignore[return-value]

    with pytest.raises(InputFileError) as exc:
        prepare_payload([touch(tmp_path / "a")], work, gzip_writer=writer)
    assert exc.value.message == f"cannot write the archive in {work}: No space left on device"
    assert list(work.iterdir()) == []


def test_interrupt_removes_the_partial_archive(tmp_path: Path, work: Path) -> None:
    def writer(raw: BinaryIO, level: int) -> BinaryIO:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        prepare_payload([touch(tmp_path / "a")], work, gzip_writer=writer)
    assert list(work.iterdir()) == []


def test_file_that_shrinks_while_archived_is_an_input_error(tmp_path: Path, work: Path) -> None:
    source = touch(tmp_path / "disk.img", b"z" * 100_000)

    class Shrinking(gzip.GzipFile):
        def write(self, data: object) -> int:
            # The tar header is written after the size is taken and before the content is
            # read: truncate the source in between.
            if len(data) == 512 and source.stat().st_size > 10:  # type: ignore[arg-type]
                source.write_bytes(b"z" * 10)
            return super().write(data)  # type: ignore[arg-type]

    def writer(raw: BinaryIO, level: int) -> BinaryIO:
        return Shrinking(fileobj=raw, mode="wb", compresslevel=level)  # type: ignore[return-value]

    with pytest.raises(InputFileError, match="shrank while being archived"):
        prepare_payload([source], work, gzip_writer=writer)
    assert list(work.iterdir()) == []


def test_missing_workdir_is_reported(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="cannot write the archive in"):
        prepare_payload([touch(tmp_path / "a")], tmp_path / "nope")


# --- gzip detection -----------------------------------------------------------------------


def gzip_header(flags: int, rest: bytes = b"") -> bytes:
    return b"\x1f\x8b\x08" + bytes([flags]) + b"\0\0\0\0\0\xff" + rest


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (gzip.compress(b"data"), True),
        (gzip_header(0), True),
        (gzip_header(0x01), True),  # FTEXT
        (gzip_header(0x08, b"name.tar\0"), True),  # FNAME
        (gzip_header(0x04, b"\x02\x00ab"), True),  # FEXTRA
        (gzip_header(0x10, b"comment\0"), True),  # FCOMMENT
        (b"", False),
        (b"\x1f\x8b", False),
        (b"\x1f\x8b\x08\x00", False),  # truncated header
        (b"\x1f\x8b\x07" + b"\0" * 7, False),  # not deflate
        (gzip_header(0x20), False),  # reserved flag bit
        (gzip_header(0x80), False),
        (gzip_header(0x08, b"no terminator"), False),
        (gzip_header(0x08, b"x" * 600 + b"\0"), False),  # name longer than Go accepts
        (gzip_header(0x04, b"\xff\x00ab"), False),  # FEXTRA longer than the file
        (b"ustar" + b"\0" * 500, False),
        (b"PK\x03\x04", False),
    ],
    ids=short_id,
)
def test_is_gzip(tmp_path: Path, content: bytes, expected: bool) -> None:
    assert is_gzip(touch(tmp_path / "f", content)) is expected


def test_is_gzip_checks_the_header_crc(tmp_path: Path) -> None:
    header = gzip_header(0x0A, b"n\0")
    good = struct.pack("<H", zlib.crc32(header) & 0xFFFF)
    bad = struct.pack("<H", (zlib.crc32(header) + 1) & 0xFFFF)
    assert is_gzip(touch(tmp_path / "good", header + good))
    assert not is_gzip(touch(tmp_path / "bad", header + bad))


def test_gzip_with_name_header_passes_through(tmp_path: Path, work: Path) -> None:
    raw = io.BytesIO()
    with gzip.GzipFile(filename="package.box", fileobj=raw, mode="wb") as handle:
        handle.write(b"box")
    box = touch(tmp_path / "package.box", raw.getvalue())
    assert box.read_bytes()[3] & 0x08  # FNAME set
    payload = prepare_payload([box], work)
    assert payload is not None
    assert payload.path == box
    assert not payload.temporary


def test_unreadable_file_in_is_gzip_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="cannot be opened"):
        is_gzip(tmp_path / "missing")


def test_is_gzip_on_a_file_swapped_for_a_fifo_fails_at_once(tmp_path: Path) -> None:
    # Validated as a regular file, then replaced by a FIFO no one writes: a plain open()
    # for reading waits for a writer for ever.
    fifo = tmp_path / "web.box"
    os.mkfifo(fifo)
    proc = in_a_child(
        "from pathlib import Path\n"
        "from atlas_ci.archive import is_gzip\n"
        "from atlas_ci.errors import InputFileError\n"
        "try:\n"
        "    is_gzip(Path('web.box'))\n"
        "except InputFileError as exc:\n"
        "    print(exc.one_line())\n",
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == (
        "file 'web.box' is a FIFO (named pipe); artifact files must be regular files"
    )


def test_open_regular_clears_o_nonblock_on_a_regular_file(tmp_path: Path) -> None:
    box = tmp_path / "a.box"
    box.write_bytes(gzip.compress(b"x"))
    fd = open_regular(box)
    try:
        assert not fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK
        assert os.read(fd, 3) == b"\x1f\x8b\x08"
    finally:
        os.close(fd)
    assert is_gzip(box)
