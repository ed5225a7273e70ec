"""GitHub Action mode: the runner's ``INPUT_*`` variables onto the CLI's settings and flow.

Nothing of the upload lives here. This fills the CLI's own :class:`~atlas_ci.settings.Inputs`
from the inputs, calls :func:`_upload` (the one coupling to the core), and turns the result
into outputs and a job summary; the shared error boundary (:mod:`atlas_ci.boundary`) turns
an error into an annotation, a summary section and the CLI's exit code. Everything goes to
one stream (stdout), so ``::group::`` folds and log lines cannot be reordered by the runner
reading two pipes.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TextIO

from atlas_ci import __version__, github, reporters
from atlas_ci.console import one_line
from atlas_ci.errors import AtlasCIError, ConfigError, ExitStatus, InputFileError
from atlas_ci.redaction import redact_data, redact_url, register
from atlas_ci.result import Result
from atlas_ci.settings import DEFAULT_MANIFEST, Inputs, Settings, split_lines

Log = Callable[[str], None]


def read_input(environ: Mapping[str, str], name: str, *, strip: bool = True) -> str:
    """An input's value, ``""`` when absent; ``INPUT_ARTIFACT_TYPE`` or ``INPUT_ARTIFACT-TYPE``."""
    upper = name.upper().replace(" ", "_")
    for candidate in (upper, upper.replace("_", "-")):
        value = environ.get("INPUT_" + candidate)
        if value:
            return value.strip() if strip else value
    return ""


def token_of(environ: Mapping[str, str]) -> str:
    """The ``token`` input, else ``ATLAS_TOKEN`` from the step's environment."""
    return read_input(environ, "token") or environ.get("ATLAS_TOKEN", "").strip()


def workspace_of(environ: Mapping[str, str]) -> Path:
    """``$GITHUB_WORKSPACE`` (``/github/workspace`` in the container), else the cwd."""
    return Path(environ.get("GITHUB_WORKSPACE") or os.getcwd())


def settings_from_inputs(environ: Mapping[str, str]) -> Settings:
    """The action's inputs as the CLI's :class:`~atlas_ci.settings.Inputs`."""
    artifact = read_input(environ, "artifact")
    if not artifact:
        raise ConfigError(
            "the artifact input is not set",
            "add `artifact: USER/NAME` under the step's `with:`",
        )
    workspace = workspace_of(environ)
    manifest = read_input(environ, "manifest")
    artifact_json = read_input(environ, "artifact_json")
    if artifact_json and manifest and manifest != DEFAULT_MANIFEST:
        raise ConfigError(
            "both the manifest and the artifact_json inputs are set",
            "set only one of them (artifact_json replaces the manifest)",
        )
    if artifact_json:
        manifest = ""  # the input's default, overridden by artifact_json
    inputs = Inputs(
        given_as="input",
        artifact=artifact,
        artifact_type=read_input(environ, "artifact_type") or None,
        atlas_url=read_input(environ, "atlas_url") or None,
        token=read_input(environ, "token") or None,
        metadata_text=read_input(environ, "metadata", strip=False) or None,
        manifest=str(workspace / manifest) if manifest else None,
        artifact_json=str(workspace / artifact_json) if artifact_json else None,
        builds=split_lines([read_input(environ, "build")]),
        dry_run=github.parse_bool("dry_run", read_input(environ, "dry_run") or "false"),
        workspace=workspace,
        allow_outside_workspace=False,
    )
    return Settings.from_inputs(inputs, environ)


def outputs(result: Result) -> dict[str, str]:
    """The action's outputs (``action.yml``); empty strings where a dry run created nothing."""
    last = result.builds[-1]
    return {
        "version": "" if result.version is None else str(result.version),
        "id": result.id or "",
        # Cut before encoding: JSON escapes a secret holding " or \\ out of the redactor's sight.
        "versions": json.dumps(redact_data(result.versions()), separators=(",", ":")),
        "file_sha256": last.file.sha256 if last.file else "",
        "file_size": str(last.file.size) if last.file else "",
    }


def _upload(settings: Settings, log: Log, debug: Log) -> Result:
    """The one call into the core."""
    from atlas_ci.upload import run_upload

    return run_upload(settings, log, debug=debug)


def _relative_to(path: str, workspace: Path) -> str | None:
    """A path as an annotation's ``file=`` wants it: relative to the workspace, or nothing."""
    try:
        return Path(path).resolve().relative_to(workspace.resolve()).as_posix()
    except ValueError:
        return None


class _Stream:
    """The one stream the action writes: workflow commands, log lines, debug lines."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def emit(self, line: str) -> None:
        # A path that is not UTF-8 (a lone surrogate from os.fsdecode) must not crash a
        # strict stdout: show its escape instead.
        line = line.encode("utf-8", "backslashreplace").decode("utf-8")
        self.stream.write(line + "\n")
        self.stream.flush()

    def log(self, line: str) -> None:
        # one_line cuts secrets and line breaks; neutralise keeps a server's words from
        # being read as a workflow command.
        self.emit(github.neutralise(one_line(line)))

    def debug(self, line: str) -> None:
        self.emit(github.debug(one_line(line)))


def run(environ: Mapping[str, str], *, stream: TextIO | None = None) -> int:
    """Run the action from the runner's environment; return the exit code."""
    from atlas_ci.boundary import guarded

    out = _Stream(stream or sys.stdout)
    token = token_of(environ)
    # Before anything else is printed: once masked, the runner hides the token in every line.
    for line in github.add_mask(token):
        out.emit(line)
    if token:
        register(token)
    summary = environ.get("GITHUB_STEP_SUMMARY")
    report = _AnnotationReport(out, summary, workspace_of(environ))
    return guarded(lambda: _run(environ, out, summary), report)


class _AnnotationReport:
    """Failures as one ``::error::`` annotation (titled by the exit status) and a summary."""

    def __init__(self, out: _Stream, summary: str | None, workspace: Path) -> None:
        self.out = out
        self.summary = summary
        self.workspace = workspace

    def failed(self, error: AtlasCIError) -> None:
        path = error.path if isinstance(error, InputFileError) else None
        file = _relative_to(path, self.workspace) if path else None
        title = f"atlas-ci: {error.exit_code.title}"
        self.out.emit(github.error(error.one_line(), title=title, file=file))
        if self.summary:
            write = functools.partial(
                github.write_error_summary, self.summary, error.message, error.hint
            )
            _best_effort_summary(self.out, self.summary, write)

    def interrupted(self, signum: int) -> None:
        title = f"atlas-ci: {ExitStatus.from_signal(signum).title}"
        self.out.emit(github.error(f"interrupted by signal {signum}", title=title))

    def bug(self, error: Exception) -> None:
        message = (
            f"internal error ({type(error).__name__}); this is a bug in atlas-ci, please report "
            "it with the log of a re-run with debug logging on"
        )
        self.out.emit(github.error(message, title=f"atlas-ci: {ExitStatus.BUG.title}"))
        import traceback

        for line in "".join(traceback.format_exception(error)).splitlines():
            self.out.debug(line)


def _best_effort_summary(out: _Stream, path: str, write: Callable[[], None]) -> None:
    """Write the job summary, or say in a warning why it could not be written.

    The summary is a courtesy: the step's result is its exit code and outputs. A summary
    that fails after a version was made must not fail the step (a re-run would make the
    version again), nor turn a failed run's real error into a traceback.
    """
    try:
        write()
    except (OSError, ValueError) as exc:  # ValueError: text the file's encoding refused
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        out.emit(
            github.warning(
                f"the job summary could not be written to GITHUB_STEP_SUMMARY {path!r}: "
                f"{reason}; the step's result and outputs do not depend on it",
                title="atlas-ci: job summary",
            )
        )


def _run(environ: Mapping[str, str], out: _Stream, summary: str | None) -> int:
    output_file = environ.get("GITHUB_OUTPUT")
    try:
        settings = settings_from_inputs(environ)
        if output_file:
            reporters.check_writable(output_file, "GITHUB_OUTPUT")
        if summary:
            # A missing directory stays a warning after the run (the summary is a courtesy);
            # a FIFO would hold the step for ever once the versions are made.
            reporters.check_kind(summary, "GITHUB_STEP_SUMMARY")
    except KeyboardInterrupt as exc:
        raise reporters.interrupted_before_upload(exc) from None
    if settings.verify is False:
        out.emit(github.warning("TLS certificate verification is off (ATLAS_TLS_NOVERIFY)"))
    title = f"atlas-ci {__version__}: {settings.artifact} to {redact_url(settings.atlas_url)}"
    with github.group(title, out.stream):
        for line in settings.describe_sources():
            out.debug("setting " + line)
        result = _upload(settings, out.log, out.debug)
    try:
        return _report(result, out, output_file, summary)
    except KeyboardInterrupt as exc:
        raise reporters.interrupted_after_upload(exc, result) from None


def _report(result: Result, out: _Stream, output_file: str | None, summary: str | None) -> int:
    """The outputs and the summary of a run whose versions are made."""
    values = outputs(result)
    if output_file:
        try:
            github.write_outputs(output_file, values)
        except OSError as exc:
            raise reporters.written_after_upload(
                "GITHUB_OUTPUT", output_file, result, exc
            ) from None
    else:
        out.emit(github.warning("GITHUB_OUTPUT is not set: the step's outputs cannot be written"))
    if summary:
        _best_effort_summary(out, summary, functools.partial(github.write_summary, summary, result))
    for name, value in values.items():
        out.log(f"output {name}={value}")
    return int(ExitStatus.OK)
