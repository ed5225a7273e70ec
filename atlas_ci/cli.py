"""Argument parsing and the single error boundary of ``atlas-ci``.

Only argparse is imported at start-up; what a subcommand needs is imported when it runs,
so ``atlas-ci --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, NoReturn

from atlas_ci import __version__
from atlas_ci.errors import AtlasCIError, ExitStatus, exit_process, exit_status_rows

if TYPE_CHECKING:
    from atlas_ci.console import Console
    from atlas_ci.result import Result
    from atlas_ci.settings import Settings


def _exit_codes() -> str:
    """The ``--help`` epilog: the exit-code table of :class:`~atlas_ci.errors.ExitStatus`."""
    lines = ["exit codes:"]
    for codes, meaning in exit_status_rows():
        lines += textwrap.wrap(
            meaning.replace("`", ""),
            width=90,
            initial_indent=f"  {codes:<9} ",
            subsequent_indent=" " * 12,
        )
    return "\n".join(lines) + "\n"


EXIT_CODES = _exit_codes()


def _debug_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--debug", action="store_true", help="debug lines on stderr [env RUNNER_DEBUG=1]"
    )


def build_parser() -> argparse.ArgumentParser:
    from atlas_ci.settings import Inputs

    parser = argparse.ArgumentParser(
        prog="atlas-ci",
        description="Upload Packer artifacts to an Atlas-compatible registry.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"atlas-ci {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    up = sub.add_parser(
        "upload",
        help="register a new version of a Packer artifact and upload its file",
        description="Do what Packer's atlas post-processor did, for the builds of the "
        "manifest's last run (or an artifact JSON). The token comes from env ATLAS_TOKEN.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    Inputs.add_connection_arguments(up)
    Inputs.add_upload_arguments(up)
    _debug_flag(up)

    se = sub.add_parser(
        "search",
        help="find versions of an artifact (what Terraform's atlas_artifact read)",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    Inputs.add_connection_arguments(se)
    _debug_flag(se)
    se.add_argument("--artifact-type", metavar="TYPE", help="the version type (required)")
    se.add_argument(
        "--version", dest="version", default="latest", help="latest (default), any, or N"
    )
    se.add_argument("--build", dest="build", help="the build id the version was made by")
    se.add_argument(
        "--pending",
        action="store_true",
        help="also list versions whose file never arrived (a registry extension; "
        "atlas-ci serve has it)",
    )
    se.add_argument(
        "--metadata",
        metavar="KEY[=VALUE]",
        action="append",
        dest="filters",
        default=[],
        help="match a metadata entry; KEY alone matches any value (repeatable)",
    )

    sub.add_parser("serve", help="run the embedded Atlas-compatible registry (see serve --help)")
    sub.add_parser(
        "registry",
        help="administer the embedded registry: users, organizations, tokens, visibility; "
        "migrate, export or import its database (see registry --help)",
    )
    return parser


def entry() -> NoReturn:
    """The ``atlas-ci`` command and ``python -m atlas_ci``: :func:`main`, then exit."""
    exit_process(main())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``atlas-ci``; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "serve":
        from atlas_ci.registry.serve import main as serve_main

        return serve_main(args[1:])
    if args and args[0] == "registry":
        from atlas_ci.registry.admin import main as admin_main

        return admin_main(args[1:])
    parser = build_parser()
    ns = parser.parse_args(args)
    if ns.command is None:
        parser.print_help(sys.stderr)
        return ExitStatus.CONFIG
    return run(ns)


def run(ns: argparse.Namespace) -> int:
    """Run a parsed command inside the error boundary; return the exit status."""
    from atlas_ci.boundary import guarded
    from atlas_ci.console import Console

    console = Console(debug=ns.debug or os.environ.get("RUNNER_DEBUG") == "1")
    command = _upload if ns.command == "upload" else _search
    return guarded(lambda: command(ns, console), _StderrReport(console))


class _StderrReport:
    """Failures as one ``error: ...`` line on stderr (the traceback of a bug with --debug)."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def failed(self, error: AtlasCIError) -> None:
        self.console.error(error.one_line())

    def interrupted(self, signum: int) -> None:
        self.console.error("interrupted")

    def bug(self, error: Exception) -> None:
        self.console.error(
            f"internal error ({type(error).__name__}); this is a bug in atlas-ci, please report "
            "it with the output of --debug"
        )
        if self.console.debug_enabled:
            import traceback

            from atlas_ci.redaction import redact

            self.console.stream.write(redact("".join(traceback.format_exception(error))))


def _settings(ns: argparse.Namespace, console: Console) -> Settings:
    from atlas_ci.settings import Inputs, Settings

    settings = Settings.from_inputs(Inputs.from_argparse(ns), os.environ)
    for line in settings.describe_sources():
        console.debug(f"setting {line}")
    if settings.verify is False:
        console.warn("TLS certificate verification is off (--insecure / ATLAS_TLS_NOVERIFY)")
    return settings


def _upload(ns: argparse.Namespace, console: Console) -> int:
    from atlas_ci import reporters
    from atlas_ci.upload import run_upload

    try:
        settings = _settings(ns, console)
        if settings.dotenv:
            # Everything the outputs need, checked before the first request: found
            # afterwards, a version would be made and not reported.
            reporters.check_writable(settings.dotenv, "--dotenv", stream_ok=True)
            reporters.check_dotenv_values(settings)
    except KeyboardInterrupt as exc:
        raise reporters.interrupted_before_upload(exc) from None
    result = run_upload(
        settings, console.info, debug=console.debug, interactive=console.interactive
    )
    try:
        _report(settings, result, console)
    except KeyboardInterrupt as exc:
        raise reporters.interrupted_after_upload(exc, result) from None
    return ExitStatus.OK


def _report(settings: Settings, result: Result, console: Console) -> None:
    """The outputs of a run whose versions are made: nothing here may end in exit 1."""
    from atlas_ci import reporters

    if settings.dotenv:
        try:
            reporters.write_dotenv(settings.dotenv, result)
        except OSError as exc:
            raise reporters.written_after_upload("--dotenv", settings.dotenv, result, exc) from None
    if settings.json:
        from atlas_ci.redaction import redact_data

        # Cut before encoding: JSON escapes a secret holding " or \\ out of the redactor's sight.
        line = json.dumps(redact_data(result.to_json()), separators=(",", ":"))
        try:
            print(line, flush=True)
        except OSError as exc:  # /dev/full, a closed pipe (| head, | true)
            _drop_stdout()
            console.warn(
                f"uploaded {reporters.created(result)} but the --json line could not be "
                f"written to stdout ({exc.strerror or type(exc).__name__}); the versions "
                "exist: do not re-run the upload"
            )


def _drop_stdout() -> None:
    """Point stdout at /dev/null: the interpreter's last flush would fail again (exit 120)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass  # a stream without a descriptor (a test's): nothing is flushed at exit


def _search(ns: argparse.Namespace, console: Console) -> int:
    from atlas_ci.errors import ConfigError
    from atlas_ci.search import search_params

    settings = _settings(ns, console)
    if not settings.artifact_type:
        raise ConfigError("--artifact-type must be set for search", "pass --artifact-type TYPE")
    params = search_params(ns.version, ns.build, ns.filters)
    if ns.pending:
        params["include_pending"] = "1"
    from atlas_ci.client import AtlasClient

    with AtlasClient(settings, log=console.info, debug=console.debug) as client:
        answer = client.search(settings.user, settings.name, settings.artifact_type, params)
    if answer is None:
        from atlas_ci.errors import RegistryRefused

        raise RegistryRefused(
            f"the registry has no versions of {settings.artifact}/{settings.artifact_type} "
            "(or no search endpoint)",
            "check the artifact, its type and atlas_url",
        )
    # An upload_path is a credential: never printed, not even for a pending version.
    versions = [
        {k: v for k, v in found.items() if str(k).lower() != "upload_path"}
        for found in answer.versions
    ]
    if ns.pending and not answer.pending_listed:
        console.warn("the registry does not list pending versions; only ready ones are shown")
    if settings.json:
        from atlas_ci.redaction import redact_data

        # What the registry echoes back (metadata, ids) may quote a secret: cut it from the
        # data, before JSON escapes a secret holding " or \\ out of the redactor's sight.
        print(json.dumps(redact_data({"versions": versions}), separators=(",", ":")), flush=True)
    else:
        for v in versions:
            console.info(_version_line(v))
        if not versions:
            console.info("no version matches")
    if not versions:
        return ExitStatus.REFUSED
    return ExitStatus.OK


def _version_line(v: Mapping[str, object]) -> str:
    meta = v.get("metadata") or {}
    pairs = " ".join(f"{k}={meta[k]}" for k in sorted(meta)) if isinstance(meta, dict) else ""
    state = f" ({v['state']})" if v.get("state") == "pending" else ""
    return f"{v.get('slug') or v.get('version')}{state} id={v.get('id', '')} {pairs}".rstrip()
