"""Terraform's ``atlas_artifact`` query parameters (atlas-wire §10)."""

from __future__ import annotations

from collections.abc import Sequence

from atlas_ci.errors import ConfigError
from atlas_ci.textfile import quoted, unsendable

_INT64_MAX = (1 << 63) - 1


def search_params(version: str, build: str | None, metadata: Sequence[str]) -> dict[str, str]:
    """``version``, ``build`` and ``metadata.N.key``/``metadata.N.value`` pairs."""
    version = version.strip() or "latest"
    # isascii: str.isdigit() also takes other scripts' digits ("٣"), which no registry parses.
    if version not in ("latest", "any") and not (version.isascii() and version.isdigit()):
        raise ConfigError(
            f"--version {version!r} is not latest, any or a number", "pass --version latest"
        )
    if version.isdigit() and (len(version) > 19 or int(version) > _INT64_MAX):
        # A version number is a 64-bit integer on the registry (a larger one is its 400).
        raise ConfigError(
            f"--version {version!r} is out of range", f"give --version a number up to {_INT64_MAX}"
        )
    params = {"version": version}
    if build:
        problem = unsendable(build)
        if problem:
            raise ConfigError(f"--build {quoted(build)} {problem}", "pass the build id as text")
        params["build"] = build
    for index, pair in enumerate(metadata, start=1):
        key, sep, value = pair.partition("=")
        if not key:
            raise ConfigError(f"--metadata {pair!r} has no key", "write KEY or KEY=VALUE")
        problem = unsendable(pair)
        if problem:
            raise ConfigError(f"--metadata {quoted(pair)} {problem}", "write KEY or KEY=VALUE")
        params[f"metadata.{index}.key"] = key
        if sep:
            params[f"metadata.{index}.value"] = value
    return params
