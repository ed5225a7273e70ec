"""The container's entrypoint: the action, the ``atlas-ci`` command, or any other program.

The image starts ``entrypoint.sh`` first, which execs a program on PATH (``cat``, ``sh``)
without starting Python and hands everything else to this file. The same rules live here, so
this file alone behaves the same:

- no arguments and ``GITHUB_ACTIONS=true``: the GitHub Action (``atlas_ci.action``);
- a subcommand of ``atlas-ci`` or an option (``upload ...``, ``--help``): ``atlas-ci`` itself;
- any other program (``cat`` from Jenkins' ``docker.image().inside``, ``sh -c`` from GitLab):
  replaced by that program, so the image works as a plain tool box too.

The image runs this as ``python -I``: PYTHONPATH and other PYTHON* variables a CI job sets
cannot change what is imported. It imports only the installed package.
"""

from __future__ import annotations

import os
import shutil
import sys

SUBCOMMANDS = ("upload", "search", "serve", "registry")


def main(args: list[str]) -> int:
    """Dispatch on the arguments; returns the exit code (unless replaced by another program)."""
    if not args and os.environ.get("GITHUB_ACTIONS") == "true":
        from atlas_ci.action import run

        return run(os.environ)
    if not args or args[0] in SUBCOMMANDS or args[0].startswith("-"):
        from atlas_ci.cli import main as cli_main

        return cli_main(args)  # no arguments: the usage, exit 2
    first = args[0]
    if "/" in first or shutil.which(first):
        try:
            os.execvp(first, args)  # noqa: S606 - handing over is the point
        except OSError as exc:
            print(f"error: cannot run {first!r}: {exc.strerror}", file=sys.stderr)
            return 126
    print(
        f"error: {first!r} is neither an atlas-ci command ({', '.join(SUBCOMMANDS)}) nor a "
        "program on PATH; try: atlas-ci --help",
        file=sys.stderr,
    )
    return 127


if __name__ == "__main__":
    from atlas_ci.errors import exit_process

    exit_process(main(sys.argv[1:]))
