"""The post-processor's flow for one or more builds: validate all, then upload each.

Order (atlas-wire §3): token check, artifact get/create, then per build: archive, version
create, file PUT. Every selected build is validated before the first request that changes
anything, and an archive error aborts before its version is created.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from atlas_ci import archive, manifest, plan
from atlas_ci.digest import FileDigest
from atlas_ci.errors import (
    AtlasCIError,
    ConfigError,
    Interrupted,
    RegistryRefused,
    RegistryUnavailable,
)
from atlas_ci.manifest import Artifact
from atlas_ci.settings import Settings

if TYPE_CHECKING:
    from atlas_ci.result import BuildResult, Result

# What only the upload itself needs (tempfile, tarfile, the result classes) is imported
# where it is used: the hash of a pass-through file starts ~12 ms sooner without it.

Log = Callable[[str], None]
_INFERRED = (
    "amazon-* -> amazon.ami, a single .box file -> vagrant.box, docker -> docker.image, "
    "googlecompute -> googlecompute.image"
)


@dataclass(frozen=True)
class Job:
    """One build to upload: what Packer built plus what we will send for it."""

    artifact: Artifact
    artifact_type: str
    metadata: dict[str, str] | None

    @property
    def label(self) -> str:
        return self.artifact.build or self.artifact.id or "artifact"


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


def version_body(settings: Settings, job: Job, has_file: bool) -> dict[str, Any]:
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
    """One background sha256 per payload, started as early as its file is known.

    On two cores the hash is the slowest part of an upload over plain http, so it starts
    before the HTTP stack is imported when it can, runs while the registry calls do, and
    serves the PUT, the dry run and every later check of the same file.
    """

    def __init__(self) -> None:
        self._running: dict[tuple[str, int], FileDigest] = {}

    def start(self, path: Path, size: int) -> FileDigest:
        key = (str(path), size)
        if key not in self._running:
            self._running[key] = FileDigest.start(path, size)
        return self._running[key]

    def start_passthrough(self, files: tuple[Path, ...]) -> None:
        """Start now if the file will be uploaded as is (one gzip file): no archive to wait for."""
        if len(files) == 1 and archive.is_gzip(files[0]):
            self.start(files[0], files[0].stat().st_size)

    def cancel(self) -> None:
        for digest in self._running.values():
            digest.cancel()


def run_upload(
    settings: Settings,
    log: Log | None = None,
    *,
    debug: Log | None = None,
    interactive: bool = False,
    client: Any = None,
) -> Result:
    """Do what Packer's atlas post-processor did, for every selected build."""
    say: Log = log or (lambda _line: None)
    state = _State()
    artifacts = load_artifacts(settings)
    jobs = plan_jobs(settings, artifacts, say)
    digests = Digests()
    try:
        if jobs:
            digests.start_passthrough(jobs[0].artifact.files)
        return _run(settings, jobs, digests, say, debug, interactive, client, state)
    finally:
        digests.cancel()


def _run(
    settings: Settings,
    jobs: list[Job],
    digests: Digests,
    say: Log,
    debug: Log | None,
    interactive: bool,
    client: Any,
    state: _State,
) -> Result:
    import tempfile

    from atlas_ci.client import AtlasClient  # imports requests: after the hash has started
    from atlas_ci.result import Result

    api = client or AtlasClient(settings, log=say, debug=debug)
    api.policy.for_builds(len(jobs))
    user, name = settings.user, settings.name
    try:
        api.authenticate()
        if settings.dry_run:
            exists = api.get_artifact(user, name) is not None
            say(f"Artifact {settings.artifact} {'exists' if exists else 'would be created'}")
        elif api.create_artifact(user, name):
            state.created_artifact = True
        builds = []
        with tempfile.TemporaryDirectory(prefix="atlas-ci-") as tmp:
            for job in jobs:
                builds.append(_one(settings, api, job, Path(tmp), say, interactive, state, digests))
    except KeyboardInterrupt as exc:
        signum = int(getattr(exc, "signum", 2))
        raise Interrupted(f"interrupted; {state.describe(settings)}", signum=signum) from None
    return Result(builds=tuple(builds), dry_run=settings.dry_run)


def _latest_number(api: Any, settings: Settings, artifact_type: str) -> int | None:
    """The newest version number the registry lists (0 for none); None if it cannot tell."""
    found = api.search(
        settings.user, settings.name, artifact_type, {"version": "latest", "include_pending": "1"}
    )
    if found is None:
        return None
    numbers = [v.get("version") for v in found.versions]
    return max((n for n in numbers if isinstance(n, int)), default=0)


def create_version_once(
    settings: Settings, api: Any, job: Job, body: dict[str, Any], has_file: bool, say: Log
) -> Any:
    """The version POST, which is not idempotent: never sent a second time on a guess.

    It carries an ``Idempotency-Key`` (one per build per run). A registry that announced
    it honours the key (atlas-wire §11) gets the POST again after an ambiguous failure,
    with the same key, and answers with the version the first one created.

    Otherwise: before it, remember the newest version; after a failure that leaves unknown
    whether the registry acted (reset or timeout after sending, 500/502/504, a 2xx we
    cannot read), look for a version newer than that which may be ours. Exactly one, and
    it matches every field the POST sent: adopt it. None, the registry listed every
    version (pending ones too) and the failure was the server's own answer (so nothing is
    still running): nothing was created, and the POST may go again (within ``--retries``).
    Otherwise stop and say what may exist.
    """
    import secrets

    from atlas_ci.client import Ambiguous

    key = secrets.token_urlsafe(24)  # a credential of sorts: never logged
    tries = api.tries("version creation")
    if api.idempotent:
        return _create_with_key(settings, api, job, body, has_file, key, tries)
    slug = f"{settings.artifact}/{job.artifact_type}"
    try:
        baseline = _latest_number(api, settings, job.artifact_type)
    except AtlasCIError:
        baseline = None  # a registry without search: adoption will not be possible
    while True:
        try:
            return api.create_version(
                settings.user,
                settings.name,
                job.artifact_type,
                body,
                file=has_file,
                idempotency_key=key,
                tries=tries,
            )
        except Ambiguous as exc:
            failure = exc
        say(f"Version creation for {slug} failed ({failure.reason}); checking the registry")
        adopted = _adopt_or_retry(settings, api, job, body, has_file, baseline, failure, tries)
        if adopted is not None:
            say(f"Adopting {slug} version {adopted.version}, created by the failed request")
            return adopted


def _create_with_key(
    settings: Settings,
    api: Any,
    job: Job,
    body: dict[str, Any],
    has_file: bool,
    key: str,
    tries: Any,
) -> Any:
    """The version POST to a registry that honours ``Idempotency-Key``: replayed as is."""
    from atlas_ci.client import Ambiguous

    slug = f"{settings.artifact}/{job.artifact_type}"
    look = _look(settings, job)
    while True:
        try:
            return api.create_version(
                settings.user,
                settings.name,
                job.artifact_type,
                body,
                file=has_file,
                idempotency_key=key,
                tries=tries,
            )
        except Ambiguous as exc:
            failure: AtlasCIError = exc
            tries.maybe_processed = True
            if tries.again(f"{exc.reason}; sending it again with its Idempotency-Key"):
                continue
        except RegistryUnavailable as exc:
            failure = exc
        if not tries.maybe_processed:
            raise failure from None  # every try was refused unprocessed (429, 503)
        cls = RegistryRefused if getattr(failure, "unreadable", False) else RegistryUnavailable
        raise cls(
            f"{failure.message}; a version of {slug} with id {job.artifact.id!r} may exist",
            f"check with: {look}, before re-running",
        ) from None


def _matches(found: dict[str, Any], sent: dict[str, Any]) -> bool | None:
    """Whether version ``found`` is the one ``sent`` asked for: True, False (a field differs),
    or None (the registry does not show every field, so it cannot be told)."""
    fields = {str(k).lower(): v for k, v in found.items()}
    unknown = False
    for key, want in sent.items():
        if key not in fields:
            unknown = True
            continue
        got = fields[key]
        if key == "metadata":
            same = (got or None) == (want or None)
        else:
            same = type(got) is type(want) and got == want  # True is not 1
        if not same:
            return False
    return None if unknown else True


def _adopt_or_retry(
    settings: Settings,
    api: Any,
    job: Job,
    body: dict[str, Any],
    has_file: bool,
    baseline: int | None,
    failure: Any,
    tries: Any,
) -> Any:
    """After an ambiguous POST: the version to adopt, or None to POST again; else raise."""
    from atlas_ci.client import Version

    slug = f"{settings.artifact}/{job.artifact_type}"
    try:
        found = api.search(
            settings.user,
            settings.name,
            job.artifact_type,
            {"version": "any", "include_pending": "1"},
        )
    except AtlasCIError:
        found = None
    sent = body.get("artifact_version") or {}
    # Every newer version that may be ours: same fields, or fields the registry hides.
    newer = [
        (v, verdict)
        for v in (found.versions if found else [])
        if isinstance(v.get("version"), int)
        and not isinstance(v.get("version"), bool)
        and v["version"] > (baseline or 0)
        and (verdict := _matches(v, sent)) is not False
    ]
    if found is not None and baseline is not None and len(newer) == 1 and newer[0][1]:
        v = newer[0][0]
        # A version with a file can only be finished if the registry hands its upload_path
        # back (ours does for the token holder when asked for pending versions).
        if not has_file or (v.get("state") == "pending" and isinstance(v.get("upload_path"), str)):
            return Version(version=v["version"], upload_path=v.get("upload_path"), raw=v)
    complete = found is not None and (found.pending_listed or not has_file)
    since = f"newer than version {baseline}" if baseline is not None else "new"
    look = _look(settings, job)
    if complete and baseline is not None and not newer:
        if failure.settled:
            # The server answered, so it is done, and it lists every version with none
            # of ours: the POST did not happen and sending it again makes no second one.
            if tries.again(f"{failure.reason}; not created"):
                return None
            raise RegistryUnavailable(
                f"version creation failed ({failure.reason}) after {tries.text}; the "
                f"registry holds no new version of {slug}",
                "nothing was created; re-run when the registry is healthy",
            ) from None
        # A timeout, a reset, a 502/504: the request may still be running on the
        # server, so absence now proves nothing and a second POST could make a twin.
        raise RegistryUnavailable(
            f"version creation failed ({failure.reason}); no new version of {slug} is "
            "listed yet, but the request may still complete",
            f"wait a minute, then check with: {look}, and re-run only if none has id "
            f"{job.artifact.id!r}",
        ) from None
    cls = RegistryRefused if failure.unreadable else RegistryUnavailable
    raise cls(
        f"{failure.message}; a {since} version of {slug} with id {job.artifact.id!r} may "
        "exist and the registry cannot tell",
        f"check with: {look}, before re-running",
    ) from None


def _look(settings: Settings, job: Job) -> str:
    return (
        f"atlas-ci search --artifact {settings.artifact} --artifact-type "
        f"{job.artifact_type} --version any --pending"
    )


def confirm_file(settings: Settings, api: Any, job: Job, number: int, sha256: str, say: Log) -> str:
    """What the registry says of version ``number``'s file.

    ``ready`` or ``pending``; ``unsupported`` when the registry has no way to say (no search,
    a plain search that does not list the version); ``unknown`` when asking kept failing
    (an unusable answer is asked again, within ``--retries`` for the whole check). A ready
    file whose sha256 the registry reports and that differs from ``sha256`` is an error:
    the stored file is not ours.
    """
    tries = api.tries(f"checking the file of version {number}")
    while True:
        state = _file_state(settings, api, job, number, sha256, tries)
        if state == "failing":
            return "unknown"
        if state != "unknown" or not tries.again("no usable answer"):
            return state


def _file_state(
    settings: Settings, api: Any, job: Job, number: int, sha256: str, tries: Any
) -> str:
    try:
        found = api.search(
            settings.user,
            settings.name,
            job.artifact_type,
            {"version": str(number), "include_pending": "1"},
            tries=tries,
        )
    except RegistryUnavailable:
        return "failing"  # the search already used up its retries
    except AtlasCIError:
        return "unknown"
    if found is None:
        return "unsupported"
    listed = [v for v in found.versions if v.get("version") == number]
    if len(listed) != 1:
        # A registry that lists pending versions must list ours; a plain one hides it
        # until its file is there, which is what we are asking.
        return "unknown" if found.pending_listed else "unsupported"
    v = listed[0]
    state = v.get("state")
    if state is None and not found.pending_listed:
        state = "ready"  # a plain search lists only versions whose file is there
    if state not in ("ready", "pending"):
        return "unknown"
    stored = v.get("sha256")
    if state == "ready" and isinstance(stored, str) and stored and stored != sha256:
        raise RegistryRefused(
            f"the registry holds a file for {settings.artifact}/{job.artifact_type} version "
            f"{number} with sha256 {stored}, not the {sha256} uploaded",
            "the file was changed on the way; re-run to upload a new version",
        )
    return str(state)


def put_confirmed(
    settings: Settings,
    api: Any,
    job: Job,
    version: Any,
    payload: Any,
    digest: FileDigest,
    progress: Any,
    say: Log,
) -> str:
    """PUT the file, then ask the registry whether it holds it; returns the sha256 sent.

    A 2xx the registry did not act on (it still waits for the file) is sent again; a
    failure after which the registry holds our file (a try that went through but whose
    answer was lost) is a success. The PUT is one request: all its tries, for whatever
    reason, count against ``--retries`` together.
    """
    from atlas_ci.client import UploadConflict, UploadFailed

    slug = f"{settings.artifact}/{job.artifact_type} version {version.version}"
    tries = api.tries("file upload")
    while True:
        try:
            sha = api.upload(
                version.upload_path,
                payload.path,
                payload.size,
                progress=progress,
                digest=digest,
                tries=tries,
            )
        except (UploadConflict, UploadFailed) as exc:
            return _after_failed_put(settings, api, job, version, digest, exc, say)
        if sha is None:
            sha = digest.result()
        state = confirm_file(settings, api, job, version.version, sha, say)
        if state in ("ready", "unsupported"):
            return str(sha)
        if state == "unknown":
            raise RegistryUnavailable(
                f"the file upload of {slug} was answered with success but the registry could "
                "not confirm it holds the file",
                _check_hint(settings, job, version.version),
            )
        if not tries.again("answered, but the registry has no file"):
            raise RegistryUnavailable(
                f"the file upload of {slug} was answered with success but the registry "
                f"never stored the file ({tries.text})",
                "the version stays pending; check what sits between you and the registry",
            )


def _after_failed_put(
    settings: Settings,
    api: Any,
    job: Job,
    version: Any,
    digest: FileDigest,
    exc: Any,
    say: Log,
) -> str:
    """The sha256 sent when the registry holds our file after all; else the error to raise."""
    from atlas_ci.client import UploadConflict, UploadFailed

    slug = f"{settings.artifact}/{job.artifact_type} version {version.version}"
    local = digest.result()
    state = confirm_file(settings, api, job, version.version, local, say)
    if state == "ready":
        say(f"The registry holds the file of {slug}: an earlier try went through")
        return local
    running = isinstance(exc, UploadFailed) and exc.maybe_delivered
    if state == "pending" and not running:
        raise exc from None  # nothing can still arrive: "stays pending" is the truth
    if isinstance(exc, UploadConflict) and exc.after_retry:
        # Only this run has the upload URL, and the registry keeps no partial file:
        # the 409 says one of our whole tries was stored.
        say(
            f"The registry says the file of {slug} arrived with an earlier try (409); "
            "it cannot confirm the checksum"
        )
        return local
    if state == "pending":
        # A try that timed out or was reset may still be finishing on the server.
        raise type(exc)(
            f"{exc.message}; {slug} is still pending, but a try may still complete",
            "wait a minute, then " + _check_hint(settings, job, version.version),
        ) from None
    if isinstance(exc, UploadConflict) or running:
        raise type(exc)(
            f"{exc.message}; the file of {slug} may have arrived and the registry cannot tell",
            _check_hint(settings, job, version.version),
        ) from None
    raise exc from None


def _check_hint(settings: Settings, job: Job, number: int) -> str:
    return (
        f"check with: atlas-ci search --artifact {settings.artifact} --artifact-type "
        f"{job.artifact_type} --version {number} --pending, before re-running"
    )


class _State:
    """What the server holds so far, for the line printed on an interrupt."""

    def __init__(self) -> None:
        self.created_artifact = False
        self.creating: str | None = None
        self.pending: str | None = None
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
        if self.pending:
            parts.append(f"{self.pending} was created but its file did not arrive (pending)")
        if not parts:
            created = "only the artifact was created" if self.created_artifact else ""
            parts.append(created or "nothing was created on the registry")
        return "; ".join(parts) + "; re-run to upload what is missing"


def _one(
    settings: Settings,
    api: Any,
    job: Job,
    tmp: Path,
    say: Log,
    interactive: bool,
    state: _State,
    digests: Digests,
) -> BuildResult:
    started = time.monotonic()
    slug = f"{settings.artifact}/{job.artifact_type}"
    from atlas_ci.pgzip import open_gzip_writer
    from atlas_ci.progress import Progress, human_bytes
    from atlas_ci.result import BuildResult, FileInfo

    payload = archive.prepare_payload(
        job.artifact.files, tmp, level=6, gzip_writer=open_gzip_writer
    )
    file_info: FileInfo | None = None
    digest = digests.start(payload.path, payload.size) if payload is not None else None
    if settings.dry_run:
        if payload is not None and digest is not None:
            file_info = FileInfo(size=payload.size, sha256=digest.result())
            say(f"Dry run: would upload {slug} ({payload.size} bytes, sha256 {file_info.sha256})")
        else:
            say(f"Dry run: would create a version of {slug} without a file")
        return BuildResult(
            build=job.label,
            artifact=settings.artifact,
            artifact_type=job.artifact_type,
            version=None,
            file=file_info,
            seconds=time.monotonic() - started,
            metadata=job.metadata,
        )
    body = version_body(settings, job, payload is not None)
    if payload is not None:
        say(f"Uploading artifact {slug} ({payload.size} bytes)")
    state.creating = slug
    version = create_version_once(settings, api, job, body, payload is not None, say)
    state.creating = None
    if payload is not None:
        state.pending = f"{slug} version {version.version}"
        assert version.upload_path is not None
        progress = Progress(payload.size, say, interactive=interactive)
        put_started = time.monotonic()
        assert digest is not None
        sha = put_confirmed(settings, api, job, version, payload, digest, progress, say)
        seconds = max(time.monotonic() - put_started, 1e-9)
        file_info = FileInfo(size=payload.size, sha256=sha)
        rate = human_bytes(payload.size / seconds)
        say(f"  sent {human_bytes(payload.size)} in {seconds:.1f}s ({rate}/s), sha256 {sha}")
        if payload.temporary:
            payload.path.unlink(missing_ok=True)
        state.pending = None
    say(f"Uploaded {slug} version {version.version}")
    state.done.append(f"{slug} version {version.version}")
    return BuildResult(
        build=job.label,
        artifact=settings.artifact,
        artifact_type=job.artifact_type,
        version=version.version,
        file=file_info,
        seconds=time.monotonic() - started,
        metadata=job.metadata,
    )
