"""A run's result in the files other CI systems read: GitLab's dotenv report.

(GitHub's outputs and job summary are in :mod:`atlas_ci.github`.)
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from atlas_ci.errors import AtlasCIError, ConfigError, InputFileError
from atlas_ci.redaction import redact

if TYPE_CHECKING:
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
    values = {name: redact(value) for name, value in dotenv_values(result).items()}
    target.write_text(format_dotenv(values), encoding="utf-8")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        owner = target.resolve().parent.stat()
        if (owner.st_uid, owner.st_gid) != (0, 0):
            os.chown(target, owner.st_uid, owner.st_gid)


def check_writable(path: str | Path, what: str) -> None:
    """Before any request: an output file that cannot be written is a configuration error.

    Found after the upload, it would leave a version made but not reported; said now, the
    user fixes the path and nothing was created.
    """
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise ConfigError(f"{what} {str(path)!r} is a directory", f"give {what} a file path")
    if not parent.is_dir():
        raise ConfigError(
            f"{what} {str(path)!r}: directory {str(parent)!r} does not exist",
            f"create it first or give {what} a path in an existing directory",
        )
    probe = target if target.exists() else parent
    if not os.access(probe, os.W_OK):
        raise ConfigError(
            f"{what} {str(path)!r} cannot be written (permission denied)",
            f"give {what} a path this user can write",
        )


def written_after_upload(what: str, path: str | Path, result: Result, exc: OSError) -> AtlasCIError:
    """The error for an output file that failed after the versions were made."""
    made = ", ".join(b.id for b in result.builds if b.id) or "nothing"
    return InputFileError(
        f"uploaded {made} but could not write {what} {str(path)!r}: "
        f"{exc.strerror or type(exc).__name__}",
        "the versions exist: do not re-run the upload; take them from the log or --json",
        path=str(path),
    )
