"""Packer's rules for what a version carries: its artifact type, a vagrant box's provider,
the metadata a builder provides, and how that metadata meets the user's (the user's wins).

Metadata the user gives is parsed in :mod:`atlas_ci.metadata`; what Packer built is read in
:mod:`atlas_ci.manifest`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from atlas_ci.textfile import quoted

if TYPE_CHECKING:
    from atlas_ci.manifest import Artifact


_AMAZON_PIECE = re.compile(r"([A-Za-z0-9-]+):([^\s:,]+)")


def _amazon_regions(artifact_id: str) -> dict[str, str] | None:
    """``us-east-1:ami-1,us-west-2:ami-2`` -> region map; None if the id has another shape."""
    regions: dict[str, str] = {}
    for piece in artifact_id.split(","):
        piece = piece.strip()
        if not piece:
            continue
        match = _AMAZON_PIECE.fullmatch(piece)
        if match is None:
            return None
        regions[f"region.{match.group(1)}"] = match.group(2)
    return regions


def builder_metadata(artifact: Artifact) -> dict[str, str] | None:
    """Metadata the builder provides: the artifact's own, else amazon's ``region.<r>`` -> AMI.

    Amazon metadata is derived only for a file-less artifact whose id has the
    ``region:ami[,region:ami...]`` shape, so a vagrant box built from an AMI (id ``aws``,
    one ``.box`` file) gets none.
    """
    if artifact.metadata is not None:
        return dict(artifact.metadata)
    if artifact.builder_type.startswith("amazon-") and not artifact.files:
        return _amazon_regions(artifact.id)
    return None


def infer_artifact_type(artifact: Artifact) -> str | None:
    """The Atlas artifact type the artifact most likely is, or None when it cannot be told.

    A single ``.box`` file wins over the builder type: a vagrant post-processor keeps the
    builder's type in the manifest.
    """
    if len(artifact.files) == 1 and artifact.files[0].name.lower().endswith(".box"):
        return "vagrant.box"
    builder = artifact.builder_type
    if builder.startswith("amazon-"):
        return "amazon.ami"
    if builder == "docker":
        return "docker.image"
    if builder == "googlecompute":
        return "googlecompute.image"
    return None


VAGRANT_PROVIDERS = frozenset(
    {
        "aws",
        "azure",
        "digitalocean",
        "docker",
        "google",
        "hyperv",
        "libvirt",
        "lxc",
        "parallels",
        "qemu",
        "scaleway",
        "virtualbox",
        "vmware",
        "vmware_desktop",
        "vmware_fusion",
        "vmware_workstation",
    }
)

_PROVIDER_BY_BUILDER_PREFIX = (
    ("virtualbox-", "virtualbox"),
    ("vmware-", "vmware_desktop"),
    ("parallels-", "parallels"),
    ("hyperv-", "hyperv"),
)


def vagrant_provider(artifact: Artifact) -> tuple[str, str] | None:
    """``(provider, reason)`` for a vagrant box: from the artifact id, else the builder type.

    The vagrant post-processor's artifact id is the provider name, so it is trusted first.
    """
    artifact_id = artifact.id.strip()
    if artifact_id.lower() in VAGRANT_PROVIDERS:
        provider = artifact_id.lower()
        return provider, f"from the artifact id {quoted(artifact.id)}"
    builder = artifact.builder_type
    reason = f"from the builder type {quoted(builder)}"
    if builder == "qemu":
        return "libvirt", reason
    for prefix, provider in _PROVIDER_BY_BUILDER_PREFIX:
        if builder.startswith(prefix):
            return provider, reason
    return None


def merge_metadata(
    builder: dict[str, str] | None, config: dict[str, str] | None
) -> dict[str, str] | None:
    """Builder metadata with the config laid over it (config wins).

    None only when neither gave any (sent as JSON ``null``); ``{}`` when one gave an empty map.
    """
    if builder is None and config is None:
        return None
    return {**(builder or {}), **(config or {})}
