"""``atlas-ci upload --to vagrant-cloud``: every build's ``.box`` as a provider of one box
version, published as Packer 1.6.6's ``vagrant-cloud`` post-processor does, and safer.

Steps (vagrant-cloud-wire.md §5): authenticate; read the box, and create it when missing
(Packer stops there); create the version unless it is listed; for each build, create its
provider unless it exists and upload its box; release the version once, after every provider
is uploaded (Packer's post-processor runs per build and releases after the first).

A re-run after a failure at any step finishes the job and creates nothing twice: the box and
the version are reused, a provider holding the same sha256 is done, a provider without a
file gets it, and a provider holding another file is exit 5 naming both checksums, never
overwritten. Every build is checked (its box file, its provider) before the first request.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from atlas_ci import plan
from atlas_ci.box_settings import BoxSettings
from atlas_ci.digest import FileDigest
from atlas_ci.errors import ConfigError, InputFileError, Interrupted, RegistryRefused
from atlas_ci.manifest import Artifact
from atlas_ci.settings import Settings, segment_problem
from atlas_ci.textfile import quoted

if TYPE_CHECKING:
    from atlas_ci.result import BuildResult, Result
    from atlas_ci.vagrant_cloud import Object, VagrantCloudClient

Log = Callable[[str], None]
# Packer's providerFromBuilderName: the names it changes (the others pass through).
_PACKER_PROVIDER_NAMES = {"vmware": "vmware_desktop"}


@dataclass(frozen=True)
class BoxJob:
    """One build's box: its file, and the provider it is published as."""

    build: str
    path: Path
    size: int
    provider: str


def plan_boxes(artifacts: list[Artifact], log: Log) -> list[BoxJob]:
    """The box and provider of every build; any problem is raised before any request."""
    jobs: list[BoxJob] = []
    for art in artifacts:
        label = art.build or art.id or art.source
        boxes = [f for f in art.files if f.name.lower().endswith(".box")]
        if not boxes:
            raise InputFileError(
                f"build {quoted(label)} has no .box file to publish",
                "the vagrant-cloud target publishes Vagrant boxes: run Packer's vagrant "
                "post-processor (or artifice with a .box) in the build",
                art.source,
            )
        path = boxes[0]
        provider, reason = provider_of(art, path)
        log(f"Using provider {provider} for {label} ({reason})")
        problem = segment_problem(provider)
        if problem:
            raise InputFileError(f"the provider {quoted(provider)} of {label} {problem}", "")
        if any(job.provider == provider for job in jobs):
            raise ConfigError(
                f"two builds are both provider {provider!r}: one box version holds one box "
                "per provider",
                "select the builds to publish with --build (the action's build input)",
            )
        jobs.append(BoxJob(build=label, path=path, size=path.stat().st_size, provider=provider))
    return jobs


def provider_of(art: Artifact, box: Path) -> tuple[str, str]:
    """``(provider, reason)``: from the build, as Packer derives it, else the box's metadata."""
    found = plan.vagrant_provider(art)
    if found is not None:
        provider, reason = found
        return _PACKER_PROVIDER_NAMES.get(provider, provider), reason
    from atlas_ci.box_file import provider_from_box

    return provider_from_box(box), "from the box's metadata.json"


def run_publish(
    settings: Settings,
    log: Log | None = None,
    *,
    debug: Log | None = None,
    interactive: bool = False,
    client: VagrantCloudClient | None = None,
) -> Result:
    """Publish every selected build's box as a provider of ``--box-version``."""
    from atlas_ci.upload import load_artifacts

    say: Log = log or (lambda _line: None)
    box = settings.box
    if box is None:
        raise ValueError("run_publish needs the vagrant-cloud target's settings")
    jobs = plan_boxes(load_artifacts(settings), say)
    digests = {job.provider: FileDigest.start(job.path, job.size) for job in jobs}
    try:
        from atlas_ci.vagrant_cloud import VagrantCloudClient

        api = client or VagrantCloudClient(settings, log=say, debug=debug)
        try:
            api.policy.for_builds(len(jobs))
            flow = _Publish(settings, box, api, say, interactive=interactive)
            return flow.run(jobs, digests)
        finally:
            if client is None:
                api.close()
    finally:
        for digest in digests.values():
            digest.cancel()


class _Publish:
    """One run: the box, its version, then a provider per build, then the release."""

    def __init__(
        self,
        settings: Settings,
        box: BoxSettings,
        api: VagrantCloudClient,
        say: Log,
        *,
        interactive: bool,
    ) -> None:
        self.settings = settings
        self.box = box
        self.api = api
        self.say = say
        self.interactive = interactive
        self.user, self.name = settings.user, settings.name
        self.done: list[str] = []
        self.step = "nothing was created yet"

    def run(self, jobs: list[BoxJob], digests: dict[str, FileDigest]) -> Result:
        from atlas_ci.result import Result

        try:
            version = self._prepare()
            builds = []
            for job in jobs:
                started = time.monotonic()
                sha = self._provider(job, version, digests[job.provider])
                builds.append(self._result(job, sha, started))
            self._release(version)
        except KeyboardInterrupt as exc:
            signum = int(getattr(exc, "signum", 2))
            done = f"published: {', '.join(self.done)}; " if self.done else ""
            raise Interrupted(
                f"interrupted while {self.step}; {done}re-run to finish: nothing is created twice",
                signum=signum,
            ) from None
        return Result(builds=tuple(builds), dry_run=self.settings.dry_run)

    def _prepare(self) -> Object | None:
        """Token, box, version: what every provider needs. None in a dry run without them."""
        from atlas_ci.vagrant_cloud import find_version

        api, tag, version = self.api, self.settings.artifact, self.box.version
        if self.box.token_warning:
            self.say(self.box.token_warning)
        self.step = "checking the token"
        api.authenticate()
        self.step = f"reading box {tag}"
        self.say(f"Verifying box is accessible: {tag}")
        box = api.get_box(self.user, self.name)
        if box is None:
            kind = "private" if self.box.private else "public"
            if self.settings.dry_run:
                self.say(f"Dry run: would create {kind} box {tag} and its version {version}")
                return None
            self.step = f"creating box {tag}"
            self.say(f"Creating {kind} box: {tag}")
            box = api.create_box(self.user, self.name)
        elif box.get("tag") not in (None, tag):
            raise RegistryRefused(
                f"the API answered the lookup of box {tag} with another box",
                "check that atlas_url is the Vagrant Cloud API root",
            )
        found = find_version(box, version)
        if found is not None:
            self.say(f"Version {version} exists ({found.get('status') or 'unknown status'})")
            return found
        if self.settings.dry_run:
            self.say(f"Dry run: would create version {version} of {tag}")
            return None
        self.step = f"creating version {version}"
        self.say(f"Creating version: {version}")
        return api.create_version(self.user, self.name, version)

    def _provider(self, job: BoxJob, version: Object | None, digest: FileDigest) -> str:
        """The provider of ``job`` holding its box: created, uploaded or found done."""
        from atlas_ci.vagrant_cloud import listed_providers

        api, number, name = self.api, self.box.version, job.provider
        where = f"{self.settings.artifact} {number} {name}"
        existing = None
        if name in listed_providers(version):
            self.step = f"reading provider {name}"
            existing = api.get_provider(self.user, self.name, number, name)
        sha = digest.result()
        if existing is not None and _holds(existing, job.path, sha, where):
            self.say(f"Provider {name} of {number} already holds this box (sha256 {sha})")
            self.done.append(where)
            return sha
        if self.settings.dry_run:
            self.say(f"Dry run: would upload {job.path.name} as {where} ({job.size} bytes)")
            return sha
        if existing is None:
            self.step = f"creating provider {name}"
            self.say(f"Creating provider: {name}")
            created = api.create_provider(self.user, self.name, number, name)
            if _holds(created, job.path, sha, where):  # a lost try of ours made it and got the file
                self.done.append(where)
                return sha
        self._upload(job, digest)
        self.done.append(where)
        return sha

    def _upload(self, job: BoxJob, digest: FileDigest) -> None:
        from atlas_ci.answers import Ambiguous
        from atlas_ci.progress import Progress, human_bytes

        api, number, name = self.api, self.box.version, job.provider
        self.step = f"uploading the box of provider {name} (the provider stays without a file)"
        target = api.upload_target(self.user, self.name, number, name)
        self.say(f"Uploading box: {job.path.name} ({human_bytes(job.size)})")
        progress = Progress(job.size, self.say, interactive=self.interactive)
        headers = None if target.callback else api.bearer_for(target.upload_path)
        api.upload(
            target.upload_path,
            job.path,
            job.size,
            progress=progress,
            digest=digest,
            headers=headers,
        )
        if target.callback is None:
            return
        self.step = f"confirming the upload of provider {name}"
        self.say("Confirming direct box upload completion")
        try:
            api.confirm_upload(target.callback)
        except (Ambiguous, RegistryRefused):
            # A lost answer, or a refused replay of a callback that went through: the
            # provider's checksum says whether the box arrived.
            found = api.get_provider(self.user, self.name, number, name)
            if found is None or not _holds(found, job.path, digest.result(), f"{number} {name}"):
                raise

    def _release(self, version: Object | None) -> None:
        number = self.box.version
        if not self.box.release:
            self.say(f"Not releasing version {number} (--no-release)")
            return
        if version is not None and version.get("status") == "active":
            self.say(f"Version {number} is released already")
            return
        if self.settings.dry_run:
            self.say(f"Dry run: would release version {number}")
            return
        self.step = f"releasing version {number} (every provider is uploaded)"
        self.say(f"Releasing version: {number}")
        if self.api.release(self.user, self.name, number):
            self.say(f"Version {number} released")
        else:
            self.say(f"Version {number} was released already")

    def _result(self, job: BoxJob, sha: str, started: float) -> BuildResult:
        from atlas_ci.result import BuildResult, FileInfo

        return BuildResult(
            build=job.build,
            artifact=self.settings.artifact,
            artifact_type="vagrant.box",
            version=None if self.settings.dry_run else self.box.version,
            file=FileInfo(size=job.size, sha256=sha),
            seconds=time.monotonic() - started,
            metadata={"provider": job.provider},
            provider=job.provider,
        )


def _holds(provider: Object, path: Path, sha: str, where: str) -> bool:
    """Whether ``provider`` holds the box at ``path`` (sha256 ``sha``); another box is exit 5.

    A provider without a checksum holds no file yet (its upload failed or never began); nor
    does one that says ``"hosted": false`` and has no external url. A checksum of another
    type (``vagrant cloud publish -C md5``) is compared in its own kind.
    """
    checksum = provider.get("checksum")
    kind = str(provider.get("checksum_type") or "sha256").lower()
    if not isinstance(checksum, str) or not checksum:
        return False
    ours = sha if kind == "sha256" else _file_hash(path, kind)
    if ours is not None and checksum.lower() == ours.lower():
        # Our checksum declared (by `vagrant cloud publish -c`, say) but not hosted yet: the
        # box still has to be sent. An API that does not say is taken at its checksum.
        return provider.get("hosted") is not False or bool(provider.get("url"))
    raise RegistryRefused(
        f"provider {where} already holds another box ({kind} {checksum.lower()}; this box "
        f"has sha256 {sha})",
        "publish it as a new version (--box-version), or delete that provider first; it is "
        "never overwritten",
    )


def _file_hash(path: Path, kind: str) -> str | None:
    """The ``kind`` digest of ``path`` (md5, sha1, sha512, ...), None for a kind not known."""
    import hashlib

    if kind not in hashlib.algorithms_guaranteed or kind.startswith("shake"):
        return None
    hasher = hashlib.new(kind)
    with path.open("rb") as fh:
        while piece := fh.read(1 << 20):
            hasher.update(piece)
    return hasher.hexdigest()
