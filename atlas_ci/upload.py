"""The post-processor's flow for one or more builds: validate all, then upload each.

Order (atlas-wire §3): token check, artifact get/create, then per build: archive, version
create, file PUT. Every selected build is validated before the first request that changes
anything, and an archive error aborts before its version is created.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from atlas_ci import archive, manifest, plan
from atlas_ci.delivery import Job, VersionBody
from atlas_ci.digest import FileDigest
from atlas_ci.errors import (
    ConfigError,
    Interrupted,
)
from atlas_ci.manifest import Artifact
from atlas_ci.settings import Settings
from atlas_ci.sourcefile import SourceFile, open_source

if TYPE_CHECKING:
    from atlas_ci.answers import Version
    from atlas_ci.archive import Payload
    from atlas_ci.client import AtlasClient
    from atlas_ci.delivery import Delivery
    from atlas_ci.result import BuildResult, FileInfo, Result

# What only the upload itself needs (tempfile, tarfile, the result classes) is imported
# where it is used: the hash of a pass-through file starts ~12 ms sooner without it.

Log = Callable[[str], None]
_INFERRED = (
    "amazon-* -> amazon.ami, a single .box file -> vagrant.box, docker -> docker.image, "
    "googlecompute -> googlecompute.image"
)


def load_artifacts(settings: Settings) -> list[Artifact]:
    """The builds to upload, from the manifest or the artifact JSON, all validated."""
    cwd = settings.workspace or Path.cwd()
    if settings.artifact_json:
        return manifest.load_artifact_json(
            settings.artifact_json,
            cwd=cwd,
            workspace=settings.workspace,
            allow_outside_workspace=settings.allow_outside_workspace,
        )
    return manifest.load_manifest(
        settings.manifest or "packer-manifest.json",
        settings.builds,
        cwd=cwd,
        workspace=settings.workspace,
        allow_outside_workspace=settings.allow_outside_workspace,
    )


def plan_jobs(settings: Settings, artifacts: list[Artifact], log: Log) -> list[Job]:
    """Type and metadata for every build; any problem is raised before any request."""
    jobs = []
    for art in artifacts:
        artifact_type = settings.artifact_type or plan.infer_artifact_type(art)
        if artifact_type is None:
            raise ConfigError(
                f"cannot infer the artifact type of build {art.build or art.source!r} "
                f"(builder {art.builder_type or 'unknown'!r})",
                f"pass --artifact-type (the action's artifact_type); inferred are {_INFERRED}",
            )
        metadata = plan.merge_metadata(plan.builder_metadata(art), settings.metadata)
        if artifact_type == "vagrant.box" and not (metadata or {}).get("provider"):
            found = plan.vagrant_provider(art)
            if found is None:
                raise ConfigError(
                    f"a vagrant.box needs a 'provider' metadata entry and build "
                    f"{art.build or art.source!r} does not tell which",
                    "pass --metadata provider=virtualbox (or vmware_desktop, libvirt, ...)",
                )
            provider, reason = found
            log(f"Using provider={provider} for {art.build or 'the box'} ({reason})")
            metadata = {**(metadata or {}), "provider": provider}
        jobs.append(Job(artifact=art, artifact_type=artifact_type, metadata=metadata))
    return jobs


def version_body(settings: Settings, job: Job, has_file: bool) -> VersionBody:
    """The exact ``artifact_version`` body of atlas-wire §3.5."""
    return {
        "artifact_version": {
            "build_id": settings.build_id,
            "compile_id": settings.compile_id,
            "file": has_file,
            "id": job.artifact.id,
            "metadata": job.metadata,
        }
    }


class Digests:
    """Each artifact file opened once, and one background sha256 per payload.

    On two cores the hash is the slowest part of an upload over plain http, so it starts
    before the HTTP stack is imported when it can (a pass-through file), runs while the
    registry calls do, and serves the PUT, the dry run and every later check of the same
    descriptor. A file opened early is handed to the archive step, not opened again.
    """

    def __init__(self, inside: Path | None = None) -> None:
        self._inside = inside
        self._early: dict[Path, SourceFile] = {}
        self._running: dict[int, tuple[SourceFile, FileDigest]] = {}

    def open(self, path: Path) -> SourceFile:
        """The artifact file at ``path``: the descriptor opened early, else opened now."""
        early = self._early.pop(path, None)
        return early if early is not None else open_source(path, inside=self._inside)

    def start(self, file: SourceFile) -> FileDigest:
        key = id(file)  # the entry keeps ``file`` alive, so its id is not reused
        if key not in self._running:
            self._running[key] = (file, FileDigest(file.fd, file.size, str(file.path)))
        return self._running[key][1]

    def start_passthrough(self, files: tuple[Path, ...]) -> None:
        """Start now if the file will be uploaded as is (one gzip file): no archive to wait for."""
        if len(files) == 1:
            file = self._early[files[0]] = self.open(files[0])
            if archive.is_gzip(file):
                self.start(file)

    def finish(self, payload: Payload) -> None:
        """Stop hashing ``payload`` (if it still is) and let go of its file."""
        running = self._running.pop(id(payload.file), None)
        if running is not None:
            running[1].cancel()
        payload.close()

    def cancel(self) -> None:
        for _, digest in self._running.values():
            digest.cancel()
        for file in self._early.values():
            file.close()
        self._early.clear()


def run_upload(
    settings: Settings,
    log: Log | None = None,
    *,
    debug: Log | None = None,
    interactive: bool = False,
    client: AtlasClient | None = None,
) -> Result:
    """Do what Packer's atlas post-processor did, for every selected build."""
    say: Log = log or (lambda _line: None)
    try:
        artifacts = load_artifacts(settings)
        jobs = plan_jobs(settings, artifacts, say)
    except KeyboardInterrupt as exc:
        signum = int(getattr(exc, "signum", 2))
        raise Interrupted(
            "interrupted; nothing was created on the registry", signum=signum
        ) from None
    inside = settings.workspace if not settings.allow_outside_workspace else None
    digests = Digests(inside)
    try:
        if jobs:
            digests.start_passthrough(jobs[0].artifact.files)
        from atlas_ci.client import AtlasClient  # imports requests: after the hash has started

        api = client or AtlasClient(settings, log=say, debug=debug)
        try:
            api.policy.for_builds(len(jobs))
            return _Flow(settings, api, say, digests, interactive=interactive).run(jobs)
        finally:
            if client is None:
                api.close()  # a caller's client is the caller's to close
    finally:
        digests.cancel()


class _Flow:
    """One run's uploads: what they share, and what the registry holds so far."""

    def __init__(
        self,
        settings: Settings,
        api: AtlasClient,
        say: Log,
        digests: Digests,
        *,
        interactive: bool,
    ) -> None:
        from atlas_ci.delivery import Delivery

        self.settings = settings
        self.api = api
        self.say = say
        self.digests = digests
        self.interactive = interactive
        self.state = _State()
        self.delivery: Delivery = Delivery(settings, api, say)

    def run(self, jobs: list[Job]) -> Result:
        import tempfile

        from atlas_ci.result import Result

        settings, api, say = self.settings, self.api, self.say
        try:
            token = api.authenticate()
            if settings.dry_run:
                exists = api.get_artifact(settings.user, settings.name) is not None
                say(f"Artifact {settings.artifact} {'exists' if exists else 'would be created'}")
                # Refused as the real run would be, on the call it would be refused on.
                what = "version creation" if exists else "artifact creation"
                api.check_write(settings.user, token, what)
            elif api.create_artifact(settings.user, settings.name):
                self.state.created_artifact = True
            builds = []
            with tempfile.TemporaryDirectory(prefix="atlas-ci-") as tmp:
                for job in jobs:
                    builds.append(self.one(job, Path(tmp)))
        except KeyboardInterrupt as exc:
            signum = int(getattr(exc, "signum", 2))
            where = self.state.describe(settings)
            raise Interrupted(f"interrupted; {where}", signum=signum) from None
        return Result(builds=tuple(builds), dry_run=settings.dry_run)

    def one(self, job: Job, tmp: Path) -> BuildResult:
        """Archive, create the version, deliver the file: one build."""
        from atlas_ci.pgzip import open_gzip_writer

        started = time.monotonic()
        payload = archive.prepare_payload(
            job.artifact.files,
            tmp,
            level=6,
            gzip_writer=open_gzip_writer,
            opener=self.digests.open,
        )
        try:
            return self._send(job, payload, started)
        finally:
            if payload is not None:  # a dry run's archive goes as soon as it is hashed, too
                self.digests.finish(payload)

    def _send(self, job: Job, payload: Payload | None, started: float) -> BuildResult:
        from atlas_ci.result import FileInfo

        slug = f"{self.settings.artifact}/{job.artifact_type}"
        digest = self.digests.start(payload.file) if payload is not None else None
        if self.settings.dry_run:
            file_info = None
            if payload is not None and digest is not None:
                file_info = FileInfo(size=payload.size, sha256=digest.result())
                payload.file.check("while it was hashed")
                self.say(
                    f"Dry run: would upload {slug} ({payload.size} bytes, "
                    f"sha256 {file_info.sha256})"
                )
            else:
                self.say(f"Dry run: would create a version of {slug} without a file")
            return self._result(job, None, file_info, started)
        body = version_body(self.settings, job, payload is not None)
        if payload is not None:
            payload.file.check("before its version was created")
        self.state.creating = slug
        version = self.delivery.create_version(job, body, payload is not None)
        self.state.creating = None
        file_info = None
        if payload is not None and digest is not None:
            # Only now, with the version created and its upload URL in hand, is a file sent.
            self.say(f"Uploading {slug} version {version.version} ({payload.size} bytes)")
            self.state.pending = f"{slug} version {version.version}"
            file_info = self._deliver(job, version, payload, digest)
            self.state.pending = None
        self.say(f"Uploaded {slug} version {version.version}")
        self.state.done.append(f"{slug} version {version.version}")
        return self._result(job, version.version, file_info, started)

    def _deliver(
        self, job: Job, version: Version, payload: Payload, digest: FileDigest
    ) -> FileInfo:
        from atlas_ci.progress import Progress, human_bytes
        from atlas_ci.result import FileInfo

        shown = Progress(payload.size, self.say, interactive=self.interactive)

        def progress(sent: int) -> None:
            if sent >= payload.size:
                self.state.body_sent = True  # from now on the file may have arrived
            shown(sent)

        put_started = time.monotonic()
        self.state.body_sent = False
        sha = self.delivery.put_file(job, version, payload, digest, progress)
        seconds = max(time.monotonic() - put_started, 1e-9)
        rate = human_bytes(payload.size / seconds)
        self.say(f"  sent {human_bytes(payload.size)} in {seconds:.1f}s ({rate}/s), sha256 {sha}")
        return FileInfo(size=payload.size, sha256=sha)

    def _result(
        self, job: Job, version: int | None, file_info: FileInfo | None, started: float
    ) -> BuildResult:
        from atlas_ci.result import BuildResult

        return BuildResult(
            build=job.label,
            artifact=self.settings.artifact,
            artifact_type=job.artifact_type,
            version=version,
            file=file_info,
            seconds=time.monotonic() - started,
            metadata=job.metadata,
        )


class _State:
    """What the server holds so far, for the line printed on an interrupt."""

    def __init__(self) -> None:
        self.created_artifact = False
        self.creating: str | None = None
        self.pending: str | None = None
        self.body_sent = False  # a try of the pending version's PUT sent its whole body
        self.done: list[str] = []

    def describe(self, settings: Settings) -> str:
        parts = []
        if self.done:
            parts.append("uploaded: " + ", ".join(self.done))
        if self.creating:
            parts.append(
                f"a version of {self.creating} may have been created (its request was in "
                f"flight); see atlas-ci search --artifact {settings.artifact} --artifact-type "
                f"{self.creating.rsplit('/', 1)[1]} --version any --pending"
            )
        if self.pending and self.body_sent:
            slug, _, number = self.pending.partition(" version ")
            # The registry may have stored it and only the answer is missing: a blind re-run
            # would make a second version of a build that is already there.
            return "; ".join(parts) + (
                f"; {self.pending} was created and its whole file was sent, so it may have "
                f"arrived; check with: atlas-ci search --artifact {settings.artifact} "
                f"--artifact-type {slug.rsplit('/', 1)[1]} --version {number} --pending, "
                "and re-run only if it is still pending"
            ).lstrip("; ")
        if self.pending:
            parts.append(f"{self.pending} was created but its file did not arrive (pending)")
        if not parts:
            created = "only the artifact was created" if self.created_artifact else ""
            parts.append(created or "nothing was created on the registry")
        return "; ".join(parts) + "; re-run to upload what is missing"
