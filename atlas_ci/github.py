"""The GitHub Actions runner's protocol: workflow commands, output and summary files.

Everything here is pure or writes only to the file or stream it is given, so it can be
tested without a runner. The rules follow ``actions/runner`` (``ActionCommand.cs``): a line
is a command when it starts with ``::`` after leading whitespace, or holds ``##[`` anywhere
(the legacy form), on stdout *and* stderr; data escapes ``%``, CR and LF; property values
also ``:`` and ``,``.
"""

from __future__ import annotations

import contextlib
import html
import sys
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TextIO

from atlas_ci.errors import ConfigError
from atlas_ci.progress import human_bytes
from atlas_ci.redaction import redact
from atlas_ci.result import BuildResult, Result
from atlas_ci.textfile import open_output

_TRUE = ("true", "True", "TRUE")
_FALSE = ("false", "False", "FALSE")


# --- workflow commands ------------------------------------------------------------------


def escape_data(text: str) -> str:
    """Escape a command's message: ``%`` first, then CR and LF."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """Escape a command's property value: as data, plus ``:`` and ``,``."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def command(name: str, message: str = "", **props: object) -> str:
    """``::name k=v,k=v::message`` with every part escaped; ``None`` properties are left out."""
    shown = ",".join(
        f"{key}={escape_property(str(value))}" for key, value in props.items() if value is not None
    )
    return f"::{name}{' ' + shown if shown else ''}::{escape_data(message)}"


def add_mask(value: str) -> list[str]:
    """The ``add-mask`` commands that hide ``value`` in every later log line.

    The runner masks line by line, so a multi-line value also gets one mask per line. Blank
    values are skipped (the runner rejects them with a warning). Emit these before anything
    that could print the value.
    """
    parts = [value, *value.splitlines()] if ("\n" in value or "\r" in value) else [value]
    seen: list[str] = []
    for part in parts:
        if part.strip() and part not in seen:
            seen.append(part)
    return [command("add-mask", part) for part in seen]


def _annotation(
    kind: str, message: str, title: str | None, file: str | None, line: int | None
) -> str:
    # A secret must not reach an annotation even if a message carried one by mistake; cut
    # before the workflow-command escaping, which would hide a secret holding % : , from it.
    return command(
        kind,
        redact(message),
        title=None if title is None else redact(title),
        file=None if file is None else redact(file),
        line=line,
    )


def error(
    message: str, *, title: str | None = None, file: str | None = None, line: int | None = None
) -> str:
    """An ``::error`` annotation."""
    return _annotation("error", message, title, file, line)


def warning(
    message: str, *, title: str | None = None, file: str | None = None, line: int | None = None
) -> str:
    """A ``::warning`` annotation."""
    return _annotation("warning", message, title, file, line)


def notice(
    message: str, *, title: str | None = None, file: str | None = None, line: int | None = None
) -> str:
    """A ``::notice`` annotation."""
    return _annotation("notice", message, title, file, line)


def debug(message: str) -> str:
    """A ``::debug`` line (shown only when the run has step debugging on)."""
    return command("debug", redact(message))


@contextlib.contextmanager
def group(title: str, stream: TextIO | None = None) -> Iterator[None]:
    """Fold what is written inside into one collapsible log section."""
    out = stream or sys.stdout
    out.write(command("group", redact(title)) + "\n")
    out.flush()
    try:
        yield
    finally:
        out.write(command("endgroup") + "\n")
        out.flush()


def neutralise(line: str) -> str:
    """A log line from an untrusted source, made unable to act as a workflow command.

    Line breaks become spaces (the runner splits on a bare CR too), a leading ``::`` becomes
    ``%3A:`` and every ``##[`` becomes ``##%5B``: the percent forms the runner itself uses, so
    a reader still sees what the server sent.
    """
    text = line.replace("\r\n", " ").replace("\r", " ").replace("\n", " ")
    text = text.replace("##[", "##%5B")
    stripped = text.lstrip()
    if stripped.startswith("::"):
        indent = text[: len(text) - len(stripped)]
        text = indent + "%3A" + stripped[1:]
    return text


# --- inputs -----------------------------------------------------------------------------


def parse_bool(name: str, value: str) -> bool:
    """A boolean input by the toolkit's rules; anything else is a ConfigError naming it."""
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(
        f"input {name!r} is {value!r}, not a boolean",
        f"set {name} to true or false (True, TRUE, False and FALSE also work)",
    )


# --- the output file --------------------------------------------------------------------


def _delimiter(value: str) -> str:
    # A fixed delimiter let a value end the block early and set other outputs
    # (CVE-2022-35954); a fresh random one that the value does not hold cannot.
    while True:
        candidate = f"ghadelimiter_{uuid.uuid4()}"
        if candidate not in value:
            return candidate


def format_output(name: str, value: str) -> str:
    """One output in the ``$GITHUB_OUTPUT`` file format; a secret in ``value`` is cut."""
    value = redact(value)
    if not name or any(ch in name for ch in "=\r\n") or "<<" in name:
        raise ValueError(f"invalid output name {name!r}")
    if "\n" not in value and "\r" not in value:
        return f"{name}={value}\n"
    delimiter = _delimiter(value)
    return f"{name}<<{delimiter}\n{value}\n{delimiter}\n"


def write_outputs(path: str | Path, mapping: Mapping[str, str]) -> None:
    """Append outputs to the file named by ``$GITHUB_OUTPUT``."""
    text = "".join(format_output(name, value) for name, value in mapping.items())
    with open_output(path, append=True) as fh:
        fh.write(text)


# --- the job summary --------------------------------------------------------------------


def _cell(text: str) -> str:
    """Table cell text: no secret, no HTML, no line break, no column break.

    Secrets are cut first: HTML escaping turns a token holding ``&``, ``<`` or ``>`` into a
    form the redactor would not see, and GitHub renders it back as the token.
    """
    flat = " ".join(redact(text).split())
    return html.escape(flat, quote=False).replace("|", "\\|")


def _code(text: str) -> str:
    return f"<code>{html.escape(redact(text))}</code>"


def _row(build: BuildResult, dry_run: bool) -> str:
    version = "dry run" if build.version is None else str(build.version)
    if build.file is None:
        size, sha, rate = "no file", "", ""
    else:
        size = human_bytes(build.file.size)
        sha = _code(build.file.sha256)
        rate = "" if dry_run else f"{human_bytes(build.file.size / max(build.seconds, 1e-9))}/s"
    cells = [
        _cell(build.build),
        _cell(build.artifact),
        _cell(build.artifact_type),
        version,
        size,
        sha,
        f"{build.seconds:.1f} s",
        rate,
    ]
    return "| " + " | ".join(cells) + " |"


def summary_markdown(result: Result) -> str:
    """The Markdown job summary of one run."""
    lines = [
        "### Atlas upload" + (" (dry run)" if result.dry_run else ""),
        "",
        "| build | artifact | type | version | size | sha256 | time | throughput |",
        "| --- | --- | --- | ---: | ---: | --- | ---: | ---: |",
        *(_row(b, result.dry_run) for b in result.builds),
        "",
    ]
    if result.dry_run:
        lines.append("Nothing was created: the token, the inputs and the files were checked.")
    elif result.id is not None:
        lines.append(f"Output id: {_code(result.id)} (the last build's version)")
    lines.append("")
    return redact("\n".join(lines))


def write_summary(path: str | Path, result: Result) -> None:
    """Append the run's table to the file named by ``$GITHUB_STEP_SUMMARY``."""
    with open_output(path, append=True) as fh:
        fh.write(summary_markdown(result))


def error_summary_markdown(message: str, hint: str = "") -> str:
    """The summary section of a failed run: what went wrong, then how to fix it."""
    lines = ["### Atlas upload failed", "", f"**{_cell(message)}**", ""]
    if hint:
        lines += [_cell(hint), ""]
    return redact("\n".join(lines))


def write_error_summary(path: str | Path, message: str, hint: str = "") -> None:
    """Append the failure section to the file named by ``$GITHUB_STEP_SUMMARY``."""
    with open_output(path, append=True) as fh:
        fh.write(error_summary_markdown(message, hint))
