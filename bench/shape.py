"""The shape figures of a commit: ``typing.Any`` lines outside the registry, long functions.

    python3 bench/shape.py               # this checkout
    python3 bench/shape.py 7794b0a HEAD  # commits, read with ``git archive``

Counts with the same ``ast`` counters as ``tests/unit/test_shape.py`` (the test pins the
figures of this checkout; this prints them for any commit, so a before/after can be shown).
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.unit.test_shape import LONG, any_uses, function_lengths  # noqa: E402


def figures(package: Path) -> tuple[int, dict[str, int]]:
    anys, long = 0, {}
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if "registry" not in path.relative_to(package).parts:
            anys += len(any_uses(tree))
        for name, lines in function_lengths(tree).items():
            if lines > LONG:
                long[f"{path.relative_to(package.parent)}:{name}"] = lines
    return anys, long


def show(label: str, package: Path) -> None:
    anys, long = figures(package)
    print(f"{label}: {anys} lines naming Any outside atlas_ci/registry")
    for name, lines in sorted(long.items(), key=lambda item: -item[1]):
        print(f"  {lines:4d} lines  {name}")


def main(argv: list[str]) -> int:
    if not argv:
        show("this checkout", ROOT / "atlas_ci")
    for rev in argv:
        with tempfile.TemporaryDirectory(prefix="atlas-shape-") as tmp:
            archive = subprocess.run(
                ["git", "-C", str(ROOT), "archive", rev, "atlas_ci"],
                check=True,
                capture_output=True,
            ).stdout
            tar_path = Path(tmp) / "src.tar"
            tar_path.write_bytes(archive)
            with tarfile.open(tar_path) as tar:
                tar.extractall(tmp, filter="data")
            show(rev, Path(tmp) / "atlas_ci")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
