"""CPU per GiB of two ways to send a file and report the sha256 of the bytes sent.

    python3 bench/sent_hash.py [--runs 11] [--size-mib 1024]

``sendfile``: put_file as the uploader runs it over plain http (``sendfile`` from the
file's descriptor while a thread hashes the same descriptor; the last byte waits for the
hash and a check that the file is unchanged). ``hash the sent buffer``: each 1 MiB chunk
``pread`` into a buffer, hashed, and that buffer sent with ``sendall`` (the hash is of the
sent bytes by construction, with no check needed). Both send to bench/sink.py, alternated;
each is a process of its own (``launch.py``: CPU is user + system of all its threads).
Prints medians: wall seconds and CPU seconds per GiB. Asserts nothing.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from run import CHILD, MIB, Sink, alternate, make_box, median, run_proc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=11, help="runs per contender (default 11)")
    parser.add_argument("--size-mib", type=int, default=1024, help="the file (default 1024)")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="atlas-sent-hash-"))
    sink: Sink | None = None
    try:
        box = work / "test.box"
        make_box(box, args.size_mib * MIB)
        size = box.stat().st_size
        sink = Sink(work)
        url = f"http://127.0.0.1:{sink.port}/upload/test.box?X-Sig=bench"
        child = [sys.executable, str(CHILD)]
        runs = {
            "sendfile": [*child, "put", url, str(box), str(size), "hash"],
            "hash the sent buffer": [*child, "put-hashing-sent", url, str(box), str(size)],
        }

        def contender(argv: list[str], name: str):  # type: ignore[no-untyped-def]
            def go():  # type: ignore[no-untyped-def]
                proc = run_proc(argv)
                assert sink is not None
                sink.check(size, name)
                return proc

            return go

        results = alternate({k: contender(v, k) for k, v in runs.items()}, args.runs)
        gib = size / (1024 * MIB)
        print(f"{size / MIB:.0f} MiB file, {args.runs} runs each, medians of whole processes")
        for name, procs in results.items():
            walls = [p.wall for p in procs]
            cpus = [p.cpu / gib for p in procs]
            print(
                f"  {name:>20}: {median(walls):.3f} s;  CPU {median(cpus):.3f} s per GiB"
                f" (runs {min(cpus):.2f}-{max(cpus):.2f})"
            )
    finally:
        if sink is not None:
            sink.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
