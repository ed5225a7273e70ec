"""A run's result in the files other CI systems read: GitLab's dotenv report.

(GitHub's outputs and job summary are in :mod:`atlas_ci.github`.)
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from atlas_ci.errors import AtlasCIError, ConfigError, InputFileError
from atlas_ci.redaction import redact
from atlas_ci.textfile import describe_mode, open_output, quoted

if TYPE_CHECKING:
    from atlas_ci.result import Result
    from atlas_ci.settings import Settings

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
    text = format_dotenv(values)
    with open_output(target, append=False) as fh:
        fh.write(text)
    if not target.is_file():
        return  # /dev/stdout, a terminal: nothing to hand over
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        owner = target.resolve().parent.stat()
        if (owner.st_uid, owner.st_gid) != (0, 0):
            os.chown(target, owner.st_uid, owner.st_gid)


def check_writable(path: str | Path, what: str, *, stream_ok: bool = False) -> None:
    """Before any request: an output file that cannot be written is a configuration error.

    Found after the upload, it would leave a version made but not reported; said now, the
    user fixes the path and nothing was created. What exists must be a regular file: a FIFO
    blocks the write until a reader comes (for ever, in a CI job). With ``stream_ok`` (a
    report meant for a terminal or a pipe, ``--dotenv /dev/stdout``) a character device or
    one of this process's own standard streams is accepted too.
    """
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    check_kind(target, what, stream_ok=stream_ok)
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


def check_kind(path: str | Path, what: str, *, stream_ok: bool = False) -> None:
    """What ``path`` names, if anything, is a regular file (or, with ``stream_ok``, a stream)."""
    target = Path(path)
    if target.is_dir():
        raise ConfigError(f"{what} {str(path)!r} is a directory", f"give {what} a file path")
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise ConfigError(
            f"{what} {str(path)!r} cannot be used: {exc.strerror}", f"give {what} a file path"
        ) from None
    if mode is not None and not stat.S_ISREG(mode) and not (stream_ok and _a_stream(target)):
        raise ConfigError(
            f"{what} {str(path)!r} is {describe_mode(mode)}, not a regular file",
            f"give {what} the path of a regular file",
        )


def _a_stream(target: Path) -> bool:
    """A character device (a terminal, /dev/null) or this process's stdout/stderr pipe."""
    info = os.stat(target)
    if stat.S_ISCHR(info.st_mode):
        return True
    for fd in (1, 2):
        try:
            mine = os.fstat(fd)
        except OSError:
            continue
        if (mine.st_dev, mine.st_ino) == (info.st_dev, info.st_ino):
            return True
    return False


def check_dotenv_values(settings: Settings) -> None:
    """Before any request: the names the dotenv report will carry fit its format.

    GitLab's dotenv has no quoting: a value must be one plain line of printable text. An
    artifact name holding a no-break space passed the settings and failed the writer after
    the versions were made (exit 1); an inferred type is always one of a few plain words.
    """
    for name, value in (
        ("ATLAS_ARTIFACT", settings.artifact),
        ("ATLAS_ARTIFACT_TYPE", settings.artifact_type or ""),
    ):
        try:
            format_dotenv({name: redact(value)})
        except ValueError:
            bad = next((ch for ch in value if not ch.isprintable()), value[:1])
            raise ConfigError(
                f"--dotenv cannot carry {name}={quoted(value)}: it holds {bad!r}, which a "
                "dotenv line cannot (no quoting, printable text only)",
                "rename it without that character, or drop --dotenv",
            ) from None


def created(result: Result) -> str:
    """The versions a run made, for a line said after it: ``a/b/t/1, a/b/t/2`` or nothing."""
    return ", ".join(b.id for b in result.builds if b.id) or "nothing"


def written_after_upload(what: str, path: str | Path, result: Result, exc: OSError) -> AtlasCIError:
    """The error for an output file that failed after the versions were made."""
    return InputFileError(
        f"uploaded {created(result)} but could not write {what} {str(path)!r}: "
        f"{exc.strerror or type(exc).__name__}",
        "the versions exist: do not re-run the upload; take them from the log or --json",
        path=str(path),
    )


def interrupted_before_upload(exc: KeyboardInterrupt) -> AtlasCIError:
    """A signal while the settings and outputs were checked: no request was sent yet."""
    from atlas_ci.errors import Interrupted

    signum = int(getattr(exc, "signum", 2))
    return Interrupted("interrupted; nothing was created on the registry", signum=signum)


def interrupted_after_upload(exc: KeyboardInterrupt, result: Result) -> AtlasCIError:
    """A signal while the outputs were written: the versions are made, and the line says so."""
    from atlas_ci.errors import Interrupted

    signum = int(getattr(exc, "signum", 2))
    return Interrupted(
        f"interrupted while writing the outputs; uploaded {created(result)}",
        "the versions exist: do not re-run the upload; take them from the log",
        signum=signum,
    )
