"""Argument parsing and the single error boundary of ``atlas-ci``.

Only argparse is imported at start-up; what a subcommand needs is imported when it runs,
so ``atlas-ci --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Sequence
from types import FrameType
from typing import Any, NoReturn

from atlas_ci import __version__
from atlas_ci.errors import AtlasCIError, ExitCode, exit_process

EXIT_CODES = """exit codes:
  0  success
  2  configuration or usage (a flag, input or environment variable)
  3  input files (the manifest, the artifact JSON, an artifact file)
  4  authentication (401/403: check ATLAS_TOKEN)
  5  the registry refused the request or answered outside the contract
  6  the registry was unreachable or failing (network, timeouts, 5xx)
  130/143 interrupted (SIGINT/SIGTERM)
  1  a bug: please report it
"""


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the main thread is, so context managers clean up."""

    signum = signal.SIGTERM


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise _Terminated()


def _connection_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--artifact", metavar="USER/NAME", help="the artifact slug (required)")
    p.add_argument(
        "--atlas-url",
        metavar="URL",
        help="registry base URL [env ATLAS_ADDRESS; default https://atlas.hashicorp.com]",
    )
    p.add_argument(
        "--no-token",
        action="store_true",
        help="send no token (the token is read only from env ATLAS_TOKEN, never a flag)",
    )
    p.add_argument(
        "--ca-file", metavar="PEM", help="CA bundle to trust [env ATLAS_CAFILE, ATLAS_CAPATH]"
    )
    p.add_argument(
        "--insecure",
        action="store_true",
        help="do not verify TLS certificates [env ATLAS_TLS_NOVERIFY]; warns every run",
    )
    p.add_argument("--retries", metavar="N", help="retries of a failed request (default 5)")
    p.add_argument(
        "--max-wait", metavar="SECONDS", help="longest wait between retries (default 60)"
    )
    p.add_argument("--timeout", metavar="SECONDS", help="read timeout of a request (default 60)")
    p.add_argument("--json", action="store_true", help="print one JSON result line on stdout")
    p.add_argument(
        "--debug", action="store_true", help="debug lines on stderr [env RUNNER_DEBUG=1]"
    )


def build_parser() -> argparse.ArgumentParser:
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
    _connection_flags(up)
    up.add_argument(
        "--artifact-type",
        metavar="TYPE",
        help="amazon.ami, vagrant.box, ... (inferred from the builder when omitted)",
    )
    up.add_argument(
        "--metadata",
        metavar="KEY=VALUE",
        action="append",
        dest="metadata_pairs",
        default=[],
        help="metadata entry (repeatable); wins over the builder's and the file's",
    )
    up.add_argument(
        "--metadata-file", metavar="PATH", help="YAML or JSON mapping of metadata entries"
    )
    up.add_argument(
        "--manifest", metavar="PATH", help="Packer manifest (default packer-manifest.json)"
    )
    up.add_argument(
        "--artifact-json",
        metavar="PATH",
        help='artifact JSON instead of a manifest: {"id", "files", "metadata", "builder_type"}',
    )
    up.add_argument(
        "--build",
        metavar="NAME",
        action="append",
        dest="builds",
        default=[],
        help="build of the manifest's last run to upload (repeatable; default all)",
    )
    up.add_argument(
        "--dry-run",
        action="store_true",
        help="check the token and build the archive; create nothing",
    )
    up.add_argument("--dotenv", metavar="FILE", help="write ATLAS_VERSION=... lines (GitLab)")
    up.add_argument("--workspace", metavar="DIR", help="refuse artifact files outside DIR")
    up.add_argument(
        "--allow-outside-workspace",
        action="store_true",
        help="accept artifact files outside --workspace",
    )

    se = sub.add_parser(
        "search",
        help="find versions of an artifact (what Terraform's atlas_artifact read)",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _connection_flags(se)
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
        dest="metadata_pairs",
        default=[],
        help="match a metadata entry; KEY alone matches any value (repeatable)",
    )

    sub.add_parser("serve", help="run the embedded Atlas-compatible registry (see serve --help)")
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
    parser = build_parser()
    ns = parser.parse_args(args)
    if ns.command is None:
        parser.print_help(sys.stderr)
        return ExitCode.CONFIG
    return run(ns)


def run(ns: argparse.Namespace) -> int:
    """The error boundary: every failure becomes one line and a documented code."""
    from atlas_ci.console import Console

    console = Console(debug=ns.debug or os.environ.get("RUNNER_DEBUG") == "1")
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        if ns.command == "upload":
            return _upload(ns, console)
        return _search(ns, console)
    except AtlasCIError as exc:
        console.error(exc.one_line())
        return int(exc.exit_code)
    except KeyboardInterrupt as exc:
        signum = int(getattr(exc, "signum", signal.SIGINT))
        console.error("interrupted")
        return 128 + signum
    except Exception as exc:  # the one place a bug is turned into a line
        console.error(
            f"internal error ({type(exc).__name__}); this is a bug in atlas-ci, please report "
            "it with the output of --debug"
        )
        if console.debug_enabled:
            import traceback

            from atlas_ci.redaction import redact

            console.stream.write(redact(traceback.format_exc()))
        return ExitCode.BUG
    finally:
        signal.signal(signal.SIGTERM, previous)


def _flags(ns: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in vars(ns).items() if k != "command"}


def _settings(ns: argparse.Namespace, console: Any) -> Any:
    from atlas_ci.settings import Settings

    flags = _flags(ns)
    if ns.command == "search":
        flags["metadata_pairs"] = []  # search filters, not version metadata
        flags["manifest"] = None
    settings = Settings.from_sources(flags=flags, env=os.environ)
    for line in settings.describe_sources():
        console.debug(f"setting {line}")
    if settings.verify is False:
        console.warn("TLS certificate verification is off (--insecure / ATLAS_TLS_NOVERIFY)")
    return settings


def _upload(ns: argparse.Namespace, console: Any) -> int:
    from atlas_ci import reporters
    from atlas_ci.upload import run_upload

    settings = _settings(ns, console)
    if settings.dotenv:
        reporters.check_writable(settings.dotenv, "--dotenv")
    result = run_upload(
        settings, console.info, debug=console.debug, interactive=console.interactive
    )
    if settings.dotenv:
        try:
            reporters.write_dotenv(settings.dotenv, result)
        except OSError as exc:
            raise reporters.written_after_upload("--dotenv", settings.dotenv, result, exc) from None
    if settings.json:
        from atlas_ci.redaction import redact_data

        # Cut before encoding: JSON escapes a secret holding " or \\ out of the redactor's sight.
        print(json.dumps(redact_data(result.to_json()), separators=(",", ":")), flush=True)
    return ExitCode.OK


def _search(ns: argparse.Namespace, console: Any) -> int:
    from atlas_ci.errors import ConfigError
    from atlas_ci.search import search_params

    settings = _settings(ns, console)
    if not settings.artifact_type:
        raise ConfigError("--artifact-type must be set for search", "pass --artifact-type TYPE")
    params = search_params(ns.version, ns.build, ns.metadata_pairs)
    if ns.pending:
        params["include_pending"] = "1"
    from atlas_ci.client import AtlasClient

    client = AtlasClient(settings, log=console.info, debug=console.debug)
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
        return ExitCode.REFUSED
    return ExitCode.OK


def _version_line(v: Any) -> str:
    meta = v.get("metadata") or {}
    pairs = " ".join(f"{k}={meta[k]}" for k in sorted(meta)) if isinstance(meta, dict) else ""
    state = f" ({v['state']})" if v.get("state") == "pending" else ""
    return f"{v.get('slug') or v.get('version')}{state} id={v.get('id', '')} {pairs}".rstrip()
