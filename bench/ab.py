"""A/B of the `atlas-ci upload` row: this checkout against an earlier commit, same hour.

    python3 bench/ab.py REV [--runs 11] [--size-mib 1024]

Day-to-day speed on these shared machines moves by up to 2x, so "before" and "after"
figures from two full runs of bench/run.py cannot be compared. This runs the real command
of both checkouts against the same bench/sink.py, alternated with a one-core hashlib
process of the same file (the row's reference), and prints medians and ratios, and each
process's CPU seconds (user + system, all threads) per GiB uploaded. REV is
checked out in a temporary worktree (removed at the end); both trees get their bytecode
compiled first, as the image's pip does.
"""

from __future__ import annotations

import argparse
import compileall
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from run import CHILD, MIB, ROOT, Proc, Sink, alternate, make_box, median, run_proc


def upload(tree: Path, sink: Sink, spec: Path, size: int) -> Callable[[], Proc]:
    argv = ["env", "ATLAS_TOKEN=bench", f"PYTHONPATH={tree}", sys.executable, "-m", "atlas_ci"]
    argv += ["upload", "--artifact", "bench/box", "--atlas-url", f"http://127.0.0.1:{sink.port}"]
    argv += ["--artifact-json", str(spec), "--artifact-type", "vagrant.box", "--json"]
    argv += ["--metadata", "provider=virtualbox"]

    def go() -> Proc:
        proc = run_proc(argv, cwd=spec.parent)
        sink.check(size, f"atlas-ci upload ({tree})")
        return proc

    return go


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rev", help="the commit to compare with (e.g. HEAD~3)")
    parser.add_argument("--runs", type=int, default=11, help="runs per contender (default 11)")
    parser.add_argument("--size-mib", type=int, default=1024, help="the .box (default 1024)")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="atlas-ab-"))
    base = work / "base"
    sink: Sink | None = None
    try:
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(base), args.rev],
            check=True,
        )
        for tree in (ROOT, base):
            compileall.compile_dir(str(tree / "atlas_ci"), quiet=1)
        box = work / "test.box"
        make_box(box, args.size_mib * MIB)
        size = box.stat().st_size
        spec = work / "artifact.json"
        spec.write_text(json.dumps({"id": "virtualbox", "files": [str(box)]}))
        sink = Sink(work)
        results = alternate(
            {
                "hashlib": lambda: run_proc([sys.executable, str(CHILD), "sha256", str(box)]),
                args.rev: upload(base, sink, spec, size),
                "this checkout": upload(ROOT, sink, spec, size),
            },
            args.runs,
        )
        reference = median([p.wall for p in results["hashlib"]])
        print(f"{size / MIB:.0f} MiB .box, {args.runs} runs each, medians of whole processes")
        gib = size / (1024 * MIB)
        for name, procs in results.items():
            walls = [p.wall for p in procs]
            cpus = [p.cpu / gib for p in procs]  # user + system, all threads of the process
            print(
                f"  {name:>16}: {median(walls):.3f} s  {median(walls) / reference:.3f}x hashlib"
                f"  (runs {min(walls):.2f}-{max(walls):.2f} s);"
                f"  CPU {median(cpus):.3f} s per GiB (runs {min(cpus):.2f}-{max(cpus):.2f})"
            )
    finally:
        if sink is not None:
            sink.stop()
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
