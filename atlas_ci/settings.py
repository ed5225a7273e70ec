"""The one settings object, and where each of its values came from.

CLI flags and GitHub Action inputs both fill one typed :class:`Inputs` (the CLI's flags are
registered and read here, twine's way), under the seed's own key names (``artifact``,
``artifact_type``, ``token``, ``atlas_url``, ``metadata``); :meth:`Settings.from_inputs`
lays them over the environment, validates and freezes. Precedence: flag / input >
environment > default. ``Settings.sources`` records which one won for every field, so
``--debug`` can say it without ever showing a secret's value.
"""

from __future__ import annotations

import math
import os
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import quote, urlsplit, urlunsplit

from atlas_ci.errors import ConfigError
from atlas_ci.redaction import Secret, redact_url, register
from atlas_ci.textfile import control_character, quoted, unsendable

if TYPE_CHECKING:
    import argparse

DEFAULT_ATLAS_URL = "https://atlas.hashicorp.com"
DEFAULT_MANIFEST = "packer-manifest.json"
_PATH_SAFE = "/$&+,:;=@"
_INT64 = (-(1 << 63), (1 << 63) - 1)
# The documented ranges (docs/settings.md) of the number settings: (minimum, maximum).
RETRIES_RANGE = (0, 100)
MAX_WAIT_RANGE = (0.0, 3600.0)
TIMEOUT_RANGE = (0.1, 86400.0)
_GO_INT = re.compile(r"[+-]?(0[xX][0-9a-fA-F]+|0[bB][01]+|0[oO][0-7]+|0[0-7]*|[1-9][0-9]*)")


@dataclass(frozen=True, kw_only=True)
class Inputs:
    """What the user gave, as given: the CLI's flags or the action's inputs, not yet validated.

    Text is as written (numbers too: the message of a bad one quotes it); ``None`` or an
    empty value means "not given".
    """

    given_as: Literal["flag", "input"] = "flag"  # what --debug calls a value given here
    artifact: str | None = None
    artifact_type: str | None = None
    atlas_url: str | None = None
    token: str | None = None  # the action's input; the CLI has no flag (ps would show it)
    no_token: bool = False
    ca_file: str | None = None
    insecure: bool = False
    retries: str | None = None
    max_wait: str | None = None
    timeout: str | None = None
    json: bool = False
    metadata_pairs: Sequence[str] = ()
    metadata_file: str | None = None
    metadata_text: str | None = None  # the action's metadata input (YAML or JSON)
    manifest: str | None = None
    artifact_json: str | None = None
    builds: Sequence[str] = ()
    dry_run: bool = False
    dotenv: str | None = None
    workspace: Path | str | None = None
    allow_outside_workspace: bool | None = None  # None: allowed unless a workspace is set

    @classmethod
    def from_argparse(cls, ns: argparse.Namespace) -> Inputs:
        """The flags :meth:`add_connection_arguments` and :meth:`add_upload_arguments` read."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in vars(ns).items() if k in names})

    @staticmethod
    def add_connection_arguments(p: argparse.ArgumentParser) -> None:
        """The flags every command that talks to a registry takes."""
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
        p.add_argument(
            "--timeout", metavar="SECONDS", help="time limit of each try of a request (default 60)"
        )
        p.add_argument("--json", action="store_true", help="print one JSON result line on stdout")

    @staticmethod
    def add_upload_arguments(p: argparse.ArgumentParser) -> None:
        """The flags of ``atlas-ci upload`` beyond the connection's."""
        p.add_argument(
            "--artifact-type",
            metavar="TYPE",
            help="amazon.ami, vagrant.box, ... (inferred from the builder when omitted)",
        )
        p.add_argument(
            "--metadata",
            metavar="KEY=VALUE",
            action="append",
            dest="metadata_pairs",
            default=[],
            help="metadata entry (repeatable); wins over the builder's and the file's",
        )
        p.add_argument(
            "--metadata-file", metavar="PATH", help="YAML or JSON mapping of metadata entries"
        )
        p.add_argument(
            "--manifest", metavar="PATH", help="Packer manifest (default packer-manifest.json)"
        )
        p.add_argument(
            "--artifact-json",
            metavar="PATH",
            help='artifact JSON instead of a manifest: {"id", "files", "metadata", "builder_type"}',
        )
        p.add_argument(
            "--build",
            metavar="NAME",
            action="append",
            dest="builds",
            default=[],
            help="build of the manifest's last run to upload (repeatable; default all)",
        )
        p.add_argument(
            "--dry-run",
            action="store_true",
            help="check the token and build the archive; create nothing",
        )
        p.add_argument("--dotenv", metavar="FILE", help="write ATLAS_VERSION=... lines (GitLab)")
        p.add_argument("--workspace", metavar="DIR", help="refuse artifact files outside DIR")
        p.add_argument(
            "--allow-outside-workspace",
            action="store_true",
            help="accept artifact files outside --workspace",
        )


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything one run needs, validated; build it with :meth:`from_inputs`."""

    artifact: str
    artifact_type: str | None = None
    token: Secret | None = None
    atlas_url: str = DEFAULT_ATLAS_URL
    metadata: dict[str, str] | None = None
    manifest: str | None = DEFAULT_MANIFEST
    artifact_json: str | None = None
    builds: tuple[str, ...] = ()
    build_id: int = 0
    compile_id: int = 0
    verify: bool | str = True
    dry_run: bool = False
    json: bool = False
    dotenv: str | None = None
    workspace: Path | None = None
    allow_outside_workspace: bool = True
    retries: int = 5
    max_wait: float = 60.0
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def user(self) -> str:
        return self.artifact.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.artifact.split("/", 1)[1]

    @property
    def timeout(self) -> tuple[float, float]:
        return (self.connect_timeout, self.read_timeout)

    def endpoint(self, *parts: str) -> str:
        """The absolute URL of ``/api/v1/<parts...>`` under the configured base."""
        return api_url(self.atlas_url, *parts)

    def describe_sources(self) -> list[str]:
        """``field: source`` lines for ``--debug``; never a value of a secret."""
        return [f"{name} from {where}" for name, where in sorted(self.sources.items())]

    @classmethod
    def from_inputs(cls, inputs: Inputs, env: Mapping[str, str] | None = None) -> Settings:
        """Lay the inputs over the environment, validate, freeze."""
        return _build(inputs, os.environ if env is None else env)


# --- building -------------------------------------------------------------------------


def _build(inputs: Inputs, env: Mapping[str, str]) -> Settings:
    sources: dict[str, str] = {}
    artifact = _artifact(inputs, sources)
    artifact_type = _text(inputs.artifact_type)
    if artifact_type is not None:
        check_artifact_type(artifact_type)
    sources["artifact_type"] = inputs.given_as if artifact_type else "inferred"
    token = _token_of(inputs, env, sources)
    atlas_url = _atlas_url(inputs, env, sources)
    metadata = _metadata(inputs, sources)
    manifest, artifact_json = _packer_output(inputs, sources)
    workspace = Path(str(inputs.workspace)) if inputs.workspace else None
    allow_outside = inputs.allow_outside_workspace
    timeout = _number(inputs.timeout, "--timeout", float, 60.0, *TIMEOUT_RANGE)
    check_proxies(env)
    return Settings(
        artifact=artifact,
        artifact_type=artifact_type,
        token=token,
        atlas_url=atlas_url,
        metadata=metadata,
        manifest=manifest,
        artifact_json=artifact_json,
        builds=tuple(str(b) for b in inputs.builds or ()),
        build_id=parse_go_int("ATLAS_BUILD_ID", env.get("ATLAS_BUILD_ID")),
        compile_id=parse_go_int("ATLAS_COMPILE_ID", env.get("ATLAS_COMPILE_ID")),
        verify=_verify(inputs, env, sources),
        dry_run=bool(inputs.dry_run),
        json=bool(inputs.json),
        dotenv=_text(inputs.dotenv),
        workspace=workspace,
        allow_outside_workspace=workspace is None if allow_outside is None else allow_outside,
        retries=int(_number(inputs.retries, "--retries", int, 5, *RETRIES_RANGE)),
        max_wait=float(_number(inputs.max_wait, "--max-wait", float, 60.0, *MAX_WAIT_RANGE)),
        connect_timeout=min(10.0, float(timeout)),
        read_timeout=float(timeout),
        sources=sources,
    )


def _artifact(inputs: Inputs, sources: dict[str, str]) -> str:
    artifact = _text(inputs.artifact)
    if artifact is None:
        raise ConfigError(
            "artifact must be set (--artifact USER/NAME)", "see atlas-ci upload --help"
        )
    _check_slug(artifact)
    sources["artifact"] = inputs.given_as
    return artifact


def _token_of(inputs: Inputs, env: Mapping[str, str], sources: dict[str, str]) -> Secret | None:
    # Never a CLI flag (it would show in the process list): the action's input, else the env.
    if inputs.no_token:
        sources["token"] = "none (--no-token)"  # noqa: S105 - a source name
        return None
    if inputs.token and inputs.token.strip():
        sources["token"] = inputs.given_as
        return _token(inputs.token)
    if env.get("ATLAS_TOKEN", "").strip():
        sources["token"] = "env ATLAS_TOKEN"  # noqa: S105 - a source name
        return _token(env["ATLAS_TOKEN"])
    raise ConfigError(
        "no token: ATLAS_TOKEN is not set",
        "export ATLAS_TOKEN (or pass the action's token input); use --no-token for a "
        "registry that needs none",
    )


def _atlas_url(inputs: Inputs, env: Mapping[str, str], sources: dict[str, str]) -> str:
    given = _text(inputs.atlas_url)
    if given:
        raw, sources["atlas_url"] = given, inputs.given_as
    elif env.get("ATLAS_ADDRESS"):
        raw, sources["atlas_url"] = env["ATLAS_ADDRESS"], "env ATLAS_ADDRESS"
    else:
        raw, sources["atlas_url"] = DEFAULT_ATLAS_URL, "default"
    return normalise_base_url(raw, sources["atlas_url"])


def _packer_output(inputs: Inputs, sources: dict[str, str]) -> tuple[str | None, str | None]:
    """``(manifest, artifact_json)``: at most one given; the default manifest otherwise."""
    manifest = _text(inputs.manifest)
    artifact_json = _text(inputs.artifact_json)
    if manifest and artifact_json:
        raise ConfigError("--manifest and --artifact-json were both given", "pass only one of them")
    if artifact_json:
        sources["artifact_json"] = inputs.given_as
        return None, artifact_json
    sources["manifest"] = inputs.given_as if manifest else "default"
    return manifest or DEFAULT_MANIFEST, None


def _token(raw: str) -> Secret:
    """The token as an HTTP header can carry it; a copy-paste's surrounding blanks dropped."""
    secret = Secret(raw.strip())
    register(raw)  # the raw form is never printed either
    value = secret.reveal()
    if not all(33 <= ord(ch) <= 126 for ch in value):
        raise ConfigError(
            "ATLAS_TOKEN holds a space, a control or a non-ASCII character, which an HTTP "
            "header cannot carry",
            "set the token (the secret) to the exact value the registry issued",
        )
    return secret


def _text(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


_SLUG_HINT = (
    "give the artifact as USER/NAME: exactly one '/', neither part empty, '.' or '..', "
    "no control characters"
)
_TYPE_HINT = "give the type as one word with no '/', such as vagrant.box or amazon.ami"


def segment_problem(text: str) -> str | None:
    """Why ``text`` cannot be one segment of an API path, or None when it can.

    The user, name and type become path segments of every request: a ``/`` or a ``..`` would
    send the request elsewhere (``x/../search`` made a version of type ``search``), and a
    control character or a lone surrogate cannot be sent at all.
    """
    if not text:
        return "is empty"
    if text in (".", ".."):
        return f"is {text!r}, which a URL path resolves away"
    if "/" in text:
        return "holds a '/'"
    return unsendable(text) or control_character(text)


def _check_slug(artifact: str) -> None:
    user, sep, name = artifact.partition("/")
    shown = f'"{artifact}"' if artifact.isprintable() else repr(artifact)
    if not sep or "/" in name or not user or not name:
        raise ConfigError(f"malformed slug {shown}", _SLUG_HINT)
    for part, value in (("user", user), ("name", name)):
        problem = segment_problem(value)
        if problem:
            raise ConfigError(f"malformed slug {shown}: the {part} {problem}", _SLUG_HINT)


def check_artifact_type(artifact_type: str) -> None:
    """The type is one segment of the version's path (atlas-wire section 8)."""
    problem = segment_problem(artifact_type)
    if problem:
        raise ConfigError(f"artifact_type {quoted(artifact_type)} {problem}", _TYPE_HINT)


def _metadata(inputs: Inputs, sources: dict[str, str]) -> dict[str, str] | None:
    """The file, then the input text, then the pairs, each laid over the one before."""
    file_arg = _text(inputs.metadata_file)
    text = inputs.metadata_text if inputs.metadata_text and inputs.metadata_text.strip() else None
    if not (file_arg or text or inputs.metadata_pairs):
        return None
    from atlas_ci import metadata as parse

    merged: dict[str, str] = {}
    if file_arg:
        merged = dict(parse.load_metadata_file(file_arg))
        sources["metadata"] = "metadata file"
    if text:
        merged = {**merged, **parse.parse_metadata_text(text, "the metadata input")}
        sources["metadata"] = "input"
    if inputs.metadata_pairs:
        merged = {**merged, **parse.parse_metadata_pairs([str(p) for p in inputs.metadata_pairs])}
        sources["metadata"] = inputs.given_as
    return merged


def _verify(inputs: Inputs, env: Mapping[str, str], sources: dict[str, str]) -> bool | str:
    if inputs.insecure:
        sources["verify"] = "--insecure"
        return False
    if env.get("ATLAS_TLS_NOVERIFY"):
        sources["verify"] = "env ATLAS_TLS_NOVERIFY"
        return False
    for where, value in (
        ("flag --ca-file", _text(inputs.ca_file)),
        ("env ATLAS_CAFILE", env.get("ATLAS_CAFILE") or None),
        ("env ATLAS_CAPATH", env.get("ATLAS_CAPATH") or None),
    ):
        if value:
            path = Path(value)
            wants_dir = where.endswith("CAPATH")
            ok = path.is_dir() if wants_dir else path.is_file()
            if not ok:
                kind = "directory" if wants_dir else "file"
                raise ConfigError(
                    f"CA {kind} {value!r} ({where}) does not exist",
                    f"point it at a readable PEM {kind}",
                )
            if not wants_dir:
                from atlas_ci.cafile import check_ca_file

                check_ca_file(str(path), f"CA file {value!r} ({where})")
            sources["verify"] = where
            return str(path)
    sources["verify"] = "system CA bundle"
    return True


def _number(
    value: object,
    name: str,
    kind: type[int] | type[float],
    default: float,
    minimum: float,
    maximum: float,
) -> float:
    """A number setting within ``[minimum, maximum]``; ``inf``, ``nan`` and ``1e309`` are not.

    Every number has an upper bound: an unbounded one reached ``time.sleep`` or a thread's
    wait as ``inf`` (``OverflowError``, exit 1) or ``nan`` (every try timed out at once).
    """
    if value is None or value == "":
        return default
    try:
        number = kind(str(value).strip())
    except ValueError:
        raise ConfigError(f"{name} {value!r} is not a number", f"give {name} a number") from None
    if not (math.isfinite(number) and minimum <= number <= maximum):
        raise ConfigError(
            f"{name} {value!r} is out of range",
            f"give {name} a value between {minimum:g} and {maximum:g}",
        )
    return number


# --- URL and number rules of the wire contract ------------------------------------------


def normalise_base_url(raw: str, source: str = "atlas_url") -> str:
    """Validate the base URL; drop its query and one trailing ``/api/v1`` (atlas-wire §1)."""
    text = raw.strip()
    authority = (text.split("://", 1)[1] if "://" in text else text).split("/", 1)[0]
    userinfo = authority.rpartition("@")[0]
    if userinfo:
        # Credentials in the URL, with or without a scheme: cut from every line.
        register(userinfo)
        register(userinfo.partition(":")[2])
    if "://" in text:
        shown = redact_url(text)
    else:
        shown = text.replace(userinfo + "@", "***@", 1) if userinfo else text
    problem = unsendable(text) or control_character(text)
    if problem:
        raise ConfigError(
            f"atlas_url {shown!r} ({source}) {problem}",
            "write it as https://atlas.example.com (punycode for an international host)",
        )
    if "://" not in text:
        raise ConfigError(
            f"atlas_url {shown!r} ({source}) has no scheme",
            "write it as https://atlas.example.com or http://127.0.0.1:8080",
        )
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ConfigError(
            f"atlas_url {shown!r} ({source}) is not a valid URL",
            "write it as https://atlas.example.com[:port][/prefix]",
        ) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"atlas_url {shown!r} ({source}) must be an http:// or https:// URL with a host",
            "write it as https://atlas.example.com",
        )
    path = _clean_path(parts.path)
    if path.endswith("/api/v1"):
        path = path[: -len("/api/v1")]
    return urlunsplit((parts.scheme, parts.netloc, path.rstrip("/"), "", ""))


_PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")
_PROXY_SCHEMES = ("http", "https", "socks4", "socks4a", "socks5", "socks5h")


def check_proxies(env: Mapping[str, str]) -> None:
    """Every proxy variable requests would read is a URL it can use, else exit 2 naming it.

    requests reads them lazily, at the first request, and a bad port or scheme then surfaced
    as "the registry's answer is malformed" (exit 5). The password is never shown.
    """
    for upper in _PROXY_VARIABLES:
        for variable in (upper, upper.lower()):
            value = (env.get(variable) or "").strip()
            if value:
                _check_proxy(variable, value)


def _check_proxy(variable: str, value: str) -> None:
    text = value if "://" in value else "http://" + value  # as requests reads it
    scheme, _, rest = text.partition("://")
    authority, slash, path = rest.partition("/")
    userinfo, at, host = authority.rpartition("@")
    if at:
        register(userinfo)
        register(userinfo.partition(":")[2])
    shown = value.replace(userinfo + "@", "***@", 1) if at else value
    hint = f"set {variable} to http://HOST:PORT (user:password@ may precede the host) or unset it"
    problem = unsendable(value) or control_character(value)
    if problem is None and scheme.lower() not in _PROXY_SCHEMES:
        problem = f"has the scheme {scheme!r}, not one of {', '.join(_PROXY_SCHEMES)}"
    if problem is None:
        try:
            parts = urlsplit(f"{scheme}://{host}{slash}{path}")
            port = parts.port
        except ValueError as exc:
            problem = f"is not a valid URL ({exc})"
        else:
            if not parts.hostname:
                problem = "names no host"
            elif port == 0:
                problem = "has port 0"
    if problem:
        raise ConfigError(f"{variable} {quoted(shown)} {problem}", hint)


def api_url(base: str, *parts: str) -> str:
    """``base`` + ``/api/v1/<parts>``, joined and cleaned like Go's ``path.Join``, escaped."""
    split = urlsplit(base)
    joined = _clean_path("/".join([split.path, "api/v1", *parts]))
    return urlunsplit((split.scheme, split.netloc, quote(joined, safe=_PATH_SAFE), "", ""))


def _clean_path(path: str) -> str:
    if not path:
        return ""
    cleaned = posixpath.normpath("/" + path)
    # POSIX keeps a leading "//"; Go's path.Clean does not.
    return "/" + cleaned.lstrip("/") if cleaned != "/" else ""


def parse_go_int(name: str, value: str | None) -> int:
    """An integer by Go's base-0 rules (``0x10`` = 16, ``010`` = 8); 0 when unset."""
    if value is None or value == "":
        return 0
    if not _GO_INT.fullmatch(value):
        raise ConfigError(
            f"{name}={value!r} is not an integer",
            f"set {name} to a whole number such as 42 (0x2a and 052 also work), or unset it",
        )
    sign = -1 if value.startswith("-") else 1
    digits = value.lstrip("+-")
    lower = digits.lower()
    if lower.startswith("0x"):
        number = int(digits[2:], 16)
    elif lower.startswith("0b"):
        number = int(digits[2:], 2)
    elif lower.startswith("0o"):
        number = int(digits[2:], 8)
    elif len(digits) > 1 and digits.startswith("0"):
        number = int(digits[1:], 8)
    else:
        number = int(digits, 10)
    number *= sign
    if not _INT64[0] <= number <= _INT64[1]:
        raise ConfigError(f"{name}={value!r} is out of range", f"{name} must fit in 64 bits")
    return number


def split_lines(values: Sequence[str]) -> list[str]:
    """Names given one per line (the action's ``build`` input), blanks dropped."""
    return [line.strip() for value in values for line in value.splitlines() if line.strip()]
