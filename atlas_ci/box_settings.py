"""The settings of ``atlas-ci upload --to vagrant-cloud``, mapped as Packer maps its
``vagrant-cloud`` post-processor's (issue 19).

``--artifact`` is Packer's ``box_tag``, ``--box-version`` its ``version``, ``--atlas-url`` its
``vagrant_cloud_url`` (the API root, used as given: ``https://vagrantcloud.com/api/v1`` by
default), and the token comes from ``VAGRANT_CLOUD_TOKEN``, else ``ATLAS_TOKEN`` with the
warning Packer prints. The rest of a run's settings (retries, timeouts, CA, manifest) are the
Atlas target's, built by :func:`atlas_ci.settings._build`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit, urlunsplit

from atlas_ci.errors import ConfigError
from atlas_ci.textfile import control_character, quoted, unsendable

if TYPE_CHECKING:
    import argparse

TARGETS = ("atlas", "vagrant-cloud")
DEFAULT_VAGRANT_CLOUD_URL = "https://vagrantcloud.com/api/v1"
FALLBACK_WARNING = (
    "Warning: using the Vagrant Cloud token found in ATLAS_TOKEN; make sure it is correct, "
    "or set VAGRANT_CLOUD_TOKEN"
)
# What Vagrant accepts as a box version: dot-separated, numeric first (1.2.0, 2026.12.07,
# 1.0.0.rc1). Anything else would be refused by the API after the box was created.
_VERSION = re.compile(r"[0-9]+(\.[0-9A-Za-z]+)*")


@dataclass(frozen=True)
class BoxSettings:
    """What only the Vagrant Cloud target needs."""

    version: str
    description: str = ""
    release: bool = True
    direct_upload: bool = True
    private: bool = False
    api_root: str = DEFAULT_VAGRANT_CLOUD_URL
    """Every path is appended to it, as Packer appends to ``vagrant_cloud_url``."""
    token_warning: str | None = None

    def endpoint(self, *parts: str) -> str:
        """``<api_root>/<parts...>``, each part escaped as one path segment."""
        return "/".join([self.api_root, *(quote(p, safe="") for p in parts)])


def add_box_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of the Vagrant Cloud target (``atlas-ci upload --to vagrant-cloud``)."""
    p.add_argument(
        "--to",
        metavar="TARGET",
        help="atlas (default) or vagrant-cloud: publish each build's .box as a provider of "
        "one box version, as Packer's vagrant-cloud post-processor does",
    )
    p.add_argument(
        "--box-version", metavar="VERSION", help="the box version, e.g. 1.2.0 (vagrant-cloud)"
    )
    p.add_argument("--version-description", metavar="TEXT", help="the new version's description")
    p.add_argument(
        "--no-release", action="store_true", help="leave the version unreleased (vagrant-cloud)"
    )
    p.add_argument(
        "--no-direct-upload",
        action="store_true",
        help="upload through the API instead of straight to storage (vagrant-cloud)",
    )
    p.add_argument(
        "--private", action="store_true", help="create a missing box private (vagrant-cloud)"
    )


def target_of(to: str | None, given_as: str, box_values: Mapping[str, object]) -> str:
    """``atlas`` or ``vagrant-cloud``; box settings (``box_values``) given for Atlas are a
    usage error, not silently ignored."""
    given = (to or "").strip() or "atlas"
    option = "the to input" if given_as == "input" else "--to"
    if given not in TARGETS:
        raise ConfigError(
            f"{option} {quoted(given)} is not a target", "give atlas or vagrant-cloud"
        )
    stray = [name for name, value in box_values.items() if value]
    if given == "atlas" and stray:
        raise ConfigError(
            f"{', '.join(stray)} given for the atlas target",
            f"these settings are for vagrant-cloud: add {option} vagrant-cloud, or drop them",
        )
    return given


def box_version(text: str | None, given_as: str) -> str:
    """The box version as given, checked as Vagrant would check it."""
    version = (text or "").strip()
    option = "the version input" if given_as == "input" else "--box-version"
    if not version:
        raise ConfigError(
            f"{option} must be set for the vagrant-cloud target",
            f"give {option} the box version to publish, e.g. 1.2.0",
        )
    if not _VERSION.fullmatch(version):
        raise ConfigError(
            f"{option} {quoted(version)} is not a box version Vagrant accepts",
            "write it as numbers and words separated by dots, numeric first: 1.2.0, "
            "2026.12.07, 1.0.0.rc1",
        )
    return version


def box_token(
    given: str | None, given_as: str, env: Mapping[str, str], sources: dict[str, str]
) -> tuple[str, str | None]:
    """The token (the input, else VAGRANT_CLOUD_TOKEN, else ATLAS_TOKEN) and the warning
    Packer prints for the last."""
    if given and given.strip():
        sources["token"] = given_as
        return given, None
    for name in ("VAGRANT_CLOUD_TOKEN", "ATLAS_TOKEN"):
        if env.get(name, "").strip():
            sources["token"] = f"env {name}"
            return env[name], FALLBACK_WARNING if name == "ATLAS_TOKEN" else None
    raise ConfigError(
        "no token: neither VAGRANT_CLOUD_TOKEN nor ATLAS_TOKEN is set",
        "export VAGRANT_CLOUD_TOKEN (or pass the action's token input); use --no-token for "
        "a registry that needs none",
    )


def api_root(raw: str) -> str:
    """The API root as given (validated by the common settings): no query, no trailing /."""
    text = raw.strip()
    if unsendable(text) or control_character(text):
        return text  # the common settings have refused it already
    parts = urlsplit(text)
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
