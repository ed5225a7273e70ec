"""A run's result in the files other CI systems read: GitLab's dotenv report.

(GitHub's outputs and job summary are in :mod:`atlas_ci.github`.)
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from atlas_ci.result import Result

_NAME = re.compile(r"[A-Za-z0-9_]+")


def dotenv_values(result: Result) -> dict[str, str]:
    """``ATLAS_*`` name -> value; empty values in a dry run, where nothing was created."""
    last = result.builds[-1] if result.builds else None
    file = last.file if last else None
    return {
        "ATLAS_VERSION": "" if result.version is None else str(result.version),
        "ATLAS_ARTIFACT_ID": result.id or "",
        "ATLAS_ARTIFACT": result.artifact,
        "ATLAS_ARTIFACT_TYPE": result.artifact_type,
        "ATLAS_FILE_SHA256": file.sha256 if file else "",
    }


def format_dotenv(values: dict[str, str]) -> str:
    """``NAME=value`` lines as GitLab's dotenv report reads them: no quotes, no comments.

    A name outside ``[A-Za-z0-9_]`` or a value that is not one plain line is a bug, not
    something to quote around: GitLab has no quoting to rely on.
    """
    lines = []
    for name, value in values.items():
        if not _NAME.fullmatch(name):
            raise ValueError(f"invalid dotenv name {name!r}")
        if any(not ch.isprintable() for ch in value) or value != value.strip():
            raise ValueError(f"dotenv value of {name} is not one plain line")
        lines.append(f"{name}={value}\n")
    return "".join(lines)


def write_dotenv(path: str | Path, result: Result) -> None:
    """Write the dotenv report (replacing the file: one report per job).

    Run as root in a container, the file takes the owner of its directory, so the job's
    later steps on the host can still replace or delete it.
    """
    target = Path(path)
    target.write_text(format_dotenv(dotenv_values(result)), encoding="utf-8")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        owner = target.resolve().parent.stat()
        if (owner.st_uid, owner.st_gid) != (0, 0):
            os.chown(target, owner.st_uid, owner.st_gid)
