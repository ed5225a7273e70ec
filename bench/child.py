"""The measured workloads, each run in a process of its own by bench/run.py.

Each prints one JSON line; ``seconds`` is the time inside the library call (the process's
own wall time and peak RSS are measured by the parent).

    child.py put URL PATH SIZE hash|nohash|early [CAFILE]
    child.py put-hashing-sent URL PATH SIZE

``early`` starts the hash (atlas_ci.digest) first thing, before requests is imported, as
the upload command can: the imports then overlap the hash instead of adding to it.
    child.py sha256 PATH
    child.py archive OUT DIR NAME...
    child.py ingest-from-memory OUT SIZE

``ingest-from-memory`` is the registry's receive pipeline (atlas_ci.registry.ingest, fsync
at the end as the registry does) fed from memory instead of a socket: the disk's floor for
a durable ingest, with no HTTP in it.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def put(url: str, path: str, size: str, hashing: str, cafile: str = "") -> dict[str, object]:
    digest = None
    if hashing == "early":
        from atlas_ci.digest import FileDigest

        digest = FileDigest.start(path, int(size))

    import requests

    from atlas_ci.transfer import put_file

    session = requests.Session()
    session.trust_env = False
    started = time.perf_counter()
    outcome = put_file(
        url,
        Path(path),
        int(size),
        session=session,
        verify=cafile or True,
        timeout=(10.0, 120.0),
        hash_file=hashing != "nohash",
        digest=digest,
    )
    seconds = time.perf_counter() - started
    if outcome.response.status != 201 or outcome.size != int(size):
        raise SystemExit(f"upload failed: {outcome.response.status}, {outcome.size} bytes sent")
    result: dict[str, object] = {"seconds": seconds, "sha256": outcome.sha256}
    if digest is not None:
        result["hash_seconds"] = digest.seconds
    return result


def put_hashing_sent(url: str, path: str, size: str) -> dict[str, object]:
    """The alternative to sendfile + a hash thread: each 1 MiB chunk is read into a buffer,
    hashed, and that buffer sent (the hash is of the sent bytes by construction)."""
    import hashlib
    import mmap
    import os
    import socket
    import urllib.parse

    length = int(size)
    parts = urllib.parse.urlsplit(url)
    started = time.perf_counter()
    digest = hashlib.sha256()
    buf = mmap.mmap(-1, 1 << 20)
    with socket.create_connection((parts.hostname, parts.port or 80)) as sock:
        head = f"PUT {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        head += f"Content-Length: {length}\r\nConnection: close\r\n\r\n"
        sock.sendall(head.encode("latin-1"))
        fd = os.open(path, os.O_RDONLY)
        with memoryview(buf) as view:
            offset = 0
            while offset < length:
                n = os.preadv(fd, [view[: min(len(view), length - offset)]], offset)
                digest.update(view[:n])
                sock.sendall(view[:n])
                offset += n
        os.close(fd)
        status = sock.makefile("rb").readline().split()[1]
    if status != b"201":
        raise SystemExit(f"upload failed: {status!r}")
    return {"seconds": time.perf_counter() - started, "sha256": digest.hexdigest()}


def sha256(path: str) -> dict[str, object]:
    """One core of hashlib over the file, as the upload's hash thread reads it."""
    import hashlib
    import mmap

    started = time.perf_counter()
    digest = hashlib.sha256()
    buf = mmap.mmap(-1, 1 << 20)
    with open(path, "rb", buffering=0) as f, memoryview(buf) as view:
        while n := f.readinto(view):
            digest.update(view[:n])
    return {"seconds": time.perf_counter() - started, "sha256": digest.hexdigest()}


def archive(out: str, directory: str, *names: str) -> dict[str, object]:
    """A tar.gz of the files through the parallel gzip writer, entries in the given order."""
    import tarfile

    from atlas_ci.pgzip import open_gzip_writer

    started = time.perf_counter()
    with open(out, "wb") as raw:
        gz = open_gzip_writer(raw, 6)
        with tarfile.open(fileobj=gz, mode="w") as tar:
            for name in names:
                tar.add(Path(directory) / name, arcname=name, recursive=False)
        gz.close()
    return {"seconds": time.perf_counter() - started, "size": Path(out).stat().st_size}


def ingest_from_memory(out: str, size: str) -> dict[str, object]:
    """SIZE bytes through the registry's Ingest into OUT from a 4 MiB buffer; then fsync."""
    import os

    from atlas_ci.registry.ingest import Ingest, reserve

    length = int(size)
    source = memoryview(os.urandom(4 << 20))

    def read_into(view: memoryview) -> int:
        count = min(len(view), len(source))
        view[:count] = source[:count]
        return count

    started = time.perf_counter()
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        reserve(fd, length)
        job = Ingest(fd, length)
        written = job.run(read_into)
        os.fsync(fd)
    finally:
        os.close(fd)
    return {"seconds": time.perf_counter() - started, "size": written}


def main(argv: list[str]) -> None:
    commands = {
        "put": put,
        "put-hashing-sent": put_hashing_sent,
        "sha256": sha256,
        "archive": archive,
        "ingest-from-memory": ingest_from_memory,
    }
    result = commands[argv[0]](*argv[1:])
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
