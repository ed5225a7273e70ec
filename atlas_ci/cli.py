"""Argument parsing and the single error boundary (placeholder until the core lands)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``atlas-ci``; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "serve":
        from atlas_ci.registry.serve import main as serve_main

        return serve_main(args[1:])
    print("error: not implemented yet", file=sys.stderr)
    return 1
