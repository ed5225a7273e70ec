"""The measured workloads, each run in a process of its own by bench/run.py.

Each prints one JSON line; ``seconds`` is the time inside the library call (the process's
own wall time and peak RSS are measured by the parent).

    child.py put URL PATH SIZE hash|nohash|early [CAFILE]

``early`` starts the hash (atlas_ci.digest) first thing, before requests is imported, as
the upload command can: the imports then overlap the hash instead of adding to it.
    child.py sha256 PATH
    child.py archive OUT DIR NAME...
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
    return {"seconds": seconds, "sha256": outcome.sha256}


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


def main(argv: list[str]) -> None:
    commands = {"put": put, "sha256": sha256, "archive": archive}
    result = commands[argv[0]](*argv[1:])
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
