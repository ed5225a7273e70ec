"""The parallel gzip writer: one valid gzip stream, same data, gzip -6 size, tarfile-ready."""

from __future__ import annotations

import gzip
import io
import os
import random
import shutil
import subprocess
import tarfile
import zlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atlas_ci import pgzip
from atlas_ci.pgzip import ParallelGzipWriter, crc32_combine, open_gzip_writer

BLOCK = 64 * 1024  # small blocks: many of them in little data


def _text(size: int, seed: int = 1) -> bytes:
    """Compressible, log-like bytes."""
    rng = random.Random(seed)
    words = [rng.randbytes(rng.randint(2, 9)).hex().encode() for _ in range(800)]
    out = bytearray()
    while len(out) < size:
        out += b" ".join(rng.choices(words, k=64)) + b"\n"
    return bytes(out[:size])


def _pgzip(data: bytes, *, writes: int = 16 * 1024, **kwargs: int) -> bytes:
    out = io.BytesIO()
    with ParallelGzipWriter(out, block_size=kwargs.pop("block_size", BLOCK), **kwargs) as w:
        for i in range(0, len(data), writes):
            w.write(data[i : i + writes])
    return out.getvalue()


def _single_member(stream: bytes) -> bytes:
    """Decompress, insisting on exactly one gzip member and nothing after it."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    data = d.decompress(stream) + d.flush()
    assert d.eof
    assert d.unused_data == b""
    return data


@pytest.mark.parametrize(
    "size",
    [0, 1, 1000, 32 * 1024, BLOCK - 1, BLOCK, BLOCK + 1, 5 * BLOCK, 7 * BLOCK + 12345],
)
@pytest.mark.parametrize("workers", [1, 2, 3])
def test_output_decompresses_to_the_input(size: int, workers: int) -> None:
    data = _text(size // 2) + os.urandom(size - size // 2)
    stream = _pgzip(data, workers=workers)
    assert gzip.decompress(stream) == data
    assert _single_member(stream) == data


def test_header_has_mtime_zero_and_trailer_crc_and_size() -> None:
    data = _text(3 * BLOCK + 5)
    stream = _pgzip(data)
    assert stream[:4] == b"\x1f\x8b\x08\x00"
    assert stream[4:8] == b"\x00\x00\x00\x00"
    assert int.from_bytes(stream[-8:-4], "little") == zlib.crc32(data)
    assert int.from_bytes(stream[-4:], "little") == len(data)


@pytest.mark.skipif(shutil.which("gzip") is None, reason="GNU gzip is not installed")
def test_gnu_gzip_reads_it() -> None:
    data = _text(6 * BLOCK + 99) + os.urandom(BLOCK)
    stream = _pgzip(data, workers=2)
    out = subprocess.run(["gzip", "-dc"], input=stream, capture_output=True, check=True)
    assert out.stdout == data
    subprocess.run(["gzip", "-t"], input=stream, check=True)


@pytest.mark.skipif(shutil.which("go") is None, reason="Go is not installed")
def test_go_reads_it(tmp_path: Path) -> None:
    data = _text(6 * BLOCK + 99)
    (tmp_path / "in.gz").write_bytes(_pgzip(data))
    prog = tmp_path / "main.go"
    prog.write_text(
        "package main\n"
        'import ("compress/gzip"; "io"; "os")\n'
        "func main() {\n"
        "  r, err := gzip.NewReader(os.Stdin); if err != nil { panic(err) }\n"
        "  r.Multistream(false)\n"
        "  if _, err := io.Copy(os.Stdout, r); err != nil { panic(err) }\n"
        "}\n"
    )
    with (tmp_path / "in.gz").open("rb") as stdin:
        out = subprocess.run(
            ["go", "run", str(prog)], stdin=stdin, capture_output=True, check=True, timeout=300
        )
    assert out.stdout == data


def test_size_stays_within_two_percent_of_serial_gzip_6() -> None:
    data = _text(4 << 20)
    parallel = _pgzip(data, block_size=1 << 20, workers=2)
    serial = gzip.compress(data, compresslevel=6, mtime=0)
    assert len(parallel) <= len(serial) * 1.02


def test_tar_through_it_is_the_same_tar_as_serial(tmp_path: Path) -> None:
    src = tmp_path / "multi"
    (src / "sub").mkdir(parents=True)
    (src / "disk.vmdk").write_bytes(os.urandom(300_000) + _text(400_000))
    (src / "sub" / "n.txt").write_bytes(b"note\n")
    (src / "vm.vmx").write_bytes(_text(5000))
    names = ["disk.vmdk", "sub", "sub/n.txt", "vm.vmx"]

    def write_tar(fileobj: io.BytesIO | ParallelGzipWriter) -> None:
        with tarfile.open(fileobj=fileobj, mode="w", format=tarfile.GNU_FORMAT) as tar:
            for name in names:
                tar.add(src / name, arcname=name, recursive=False)

    plain = io.BytesIO()
    write_tar(plain)
    out = io.BytesIO()
    with ParallelGzipWriter(out, block_size=BLOCK) as writer:
        write_tar(writer)
        assert writer.tell() == len(plain.getvalue())
    assert gzip.decompress(out.getvalue()) == plain.getvalue()
    with tarfile.open(fileobj=io.BytesIO(out.getvalue()), mode="r:gz") as tar:
        assert tar.getnames() == names


def test_close_leaves_the_target_open_and_is_idempotent() -> None:
    out = io.BytesIO()
    w = ParallelGzipWriter(out)
    w.write(b"abc")
    w.close()
    w.close()
    assert not out.closed
    assert gzip.decompress(out.getvalue()) == b"abc"
    with pytest.raises(ValueError, match="closed"):
        w.write(b"more")


def test_an_exception_inside_with_writes_no_trailer() -> None:
    out = io.BytesIO()

    def archive() -> None:
        with ParallelGzipWriter(out, block_size=BLOCK) as w:
            w.write(_text(3 * BLOCK))
            raise RuntimeError("archiving failed")

    with pytest.raises(RuntimeError):
        archive()
    with pytest.raises((EOFError, zlib.error, gzip.BadGzipFile)):
        gzip.decompress(out.getvalue())


def test_memoryview_and_bytearray_writes_are_accepted() -> None:
    out = io.BytesIO()
    with ParallelGzipWriter(out, block_size=BLOCK) as w:
        assert w.write(memoryview(b"ab" * 40000)) == 80000
        assert w.write(bytearray(b"cd")) == 2
    assert gzip.decompress(out.getvalue()) == b"ab" * 40000 + b"cd"


@pytest.mark.parametrize("cpus", [1, 2])
def test_the_factory_picks_by_cpu_count(monkeypatch: pytest.MonkeyPatch, cpus: int) -> None:
    monkeypatch.setattr(pgzip, "available_cpus", lambda: cpus)
    out = io.BytesIO()
    writer = open_gzip_writer(out, 6)
    expected = ParallelGzipWriter if cpus > 1 else gzip.GzipFile
    assert isinstance(writer, expected)
    writer.write(b"payload")
    writer.close()
    assert not out.closed
    assert out.getvalue()[4:8] == b"\x00\x00\x00\x00"
    assert gzip.decompress(out.getvalue()) == b"payload"


@pytest.mark.slow  # fuzzing
@given(st.binary(max_size=300), st.binary(max_size=300))
def test_crc32_combine_matches_crc32_of_the_concatenation(a: bytes, b: bytes) -> None:
    assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="level"):
        ParallelGzipWriter(io.BytesIO(), level=10)
    with pytest.raises(ValueError, match="block size"):
        ParallelGzipWriter(io.BytesIO(), block_size=1000)
