"""A build's version created once and its file delivered once, whatever fails on the way.

The version POST is not idempotent and the file PUT's answer can be lost: after a failure
that leaves unknown what the registry did, :class:`Delivery` asks the registry instead of
guessing (or, with a registry that honours ``Idempotency-Key``, sends the same POST again),
and never makes a second version or stores a file under another job's version. Every try it
makes is counted by the run's one :class:`~atlas_ci.retry.RetryPolicy`
(``docs/failures.md`` says what each failure leaves behind).

:class:`Job` is imported by the flow before the HTTP stack is (the hash of a file starts
first): nothing here imports it.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypedDict

from atlas_ci.answers import Ambiguous, UploadConflict, UploadFailed, Version
from atlas_ci.errors import AtlasCIError, RegistryRefused, RegistryUnavailable
from atlas_ci.sourcefile import FileChanged

if TYPE_CHECKING:
    from atlas_ci.archive import Payload
    from atlas_ci.client import AtlasClient
    from atlas_ci.digest import FileDigest
    from atlas_ci.manifest import Artifact
    from atlas_ci.retry import Tries
    from atlas_ci.settings import Settings
    from atlas_ci.transfer import ProgressFn

Log = Callable[[str], None]


class VersionFields(TypedDict):
    """What the version POST asks for (atlas-wire §3.5): what a found version must match."""

    build_id: int
    compile_id: int
    file: bool
    id: str
    metadata: dict[str, str] | None


class VersionBody(TypedDict):
    """``{"artifact_version": {...}}``, the version POST's body (atlas-wire §3.5)."""

    artifact_version: VersionFields


@dataclass(frozen=True)
class Job:
    """One build to upload: what Packer built plus what we will send for it."""

    artifact: Artifact
    artifact_type: str
    metadata: dict[str, str] | None

    @property
    def label(self) -> str:
        return self.artifact.build or self.artifact.id or "artifact"


class Delivery:
    """The version POST and the file PUT of each build, against one registry."""

    def __init__(self, settings: Settings, api: AtlasClient, say: Log) -> None:
        self.settings = settings
        self.api = api
        self.say = say

    # --- the version ---------------------------------------------------------------------

    def create_version(self, job: Job, body: VersionBody, has_file: bool) -> Version:
        """The version POST, which is not idempotent: never sent a second time on a guess.

        It carries an ``Idempotency-Key`` (one per build per run). A registry that announced
        it honours the key (atlas-wire §11) gets the POST again after an ambiguous failure,
        with the same key, and answers with the version the first one created.

        Otherwise: before it, remember the newest version; after a failure that leaves
        unknown whether the registry acted (reset or timeout after sending, 500/502/504, a
        2xx we cannot read), look for a version newer than that which may be ours. Exactly
        one, and it matches every field the POST sent: adopt it. None, the registry listed
        every version (pending ones too) and the failure was the server's own answer (so
        nothing is still running): nothing was created, and the POST may go again (within
        ``--retries``). Otherwise stop and say what may exist.
        """
        key = secrets.token_urlsafe(24)  # a capability for one version: never logged
        tries = self.api.tries("version creation")
        if self.api.idempotent:
            return self._create_with_key(job, body, has_file, key, tries)
        slug = f"{self.settings.artifact}/{job.artifact_type}"
        try:
            baseline = self._latest_number(job.artifact_type)
        except AtlasCIError:
            baseline = None  # a registry without search: adoption will not be possible
        while True:
            try:
                return self._post(job, body, has_file, key, tries)
            except Ambiguous as exc:
                failure = exc
            self.say(
                f"Version creation for {slug} failed ({failure.reason}); checking the registry"
            )
            adopted = self._adopt_or_retry(job, body, has_file, baseline, failure, tries)
            if adopted is not None:
                self.say(
                    f"Adopting {slug} version {adopted.version}, created by the failed request"
                )
                return adopted

    def _post(self, job: Job, body: VersionBody, has_file: bool, key: str, tries: Tries) -> Version:
        s = self.settings
        return self.api.create_version(
            s.user, s.name, job.artifact_type, body, file=has_file, idempotency_key=key, tries=tries
        )

    def _create_with_key(
        self, job: Job, body: VersionBody, has_file: bool, key: str, tries: Tries
    ) -> Version:
        """The version POST to a registry that honours ``Idempotency-Key``: replayed as is."""
        while True:
            try:
                return self._post(job, body, has_file, key, tries)
            except Ambiguous as exc:
                failure: AtlasCIError = exc
                tries.maybe_processed = True
                if tries.again(f"{exc.reason}; sending it again with its Idempotency-Key"):
                    continue
            except RegistryUnavailable as exc:
                failure = exc
            if not tries.maybe_processed:
                raise failure from None  # every try was refused unprocessed (429, 503)
            unreadable = isinstance(failure, Ambiguous) and failure.unreadable
            cls = RegistryRefused if unreadable else RegistryUnavailable
            raise cls(
                f"{failure.message}; a version of {self.settings.artifact}/{job.artifact_type} "
                f"with id {job.artifact.id!r} may exist",
                f"check with: {self._look(job)}, before re-running",
            ) from None

    def _latest_number(self, artifact_type: str) -> int | None:
        """The newest version number the registry lists (0 for none); None if it cannot tell."""
        s = self.settings
        found = self.api.search(
            s.user, s.name, artifact_type, {"version": "latest", "include_pending": "1"}
        )
        if found is None:
            return None
        numbers = [v.get("version") for v in found.versions]
        return max((n for n in numbers if isinstance(n, int)), default=0)

    def _adopt_or_retry(
        self,
        job: Job,
        body: VersionBody,
        has_file: bool,
        baseline: int | None,
        failure: Ambiguous,
        tries: Tries,
    ) -> Version | None:
        """After an ambiguous POST: the version to adopt, or None to POST again; else raise."""
        s = self.settings
        try:
            found = self.api.search(
                s.user, s.name, job.artifact_type, {"version": "any", "include_pending": "1"}
            )
        except AtlasCIError:
            found = None
        sent = body["artifact_version"]
        # Every newer version that may be ours: same fields, or fields the registry hides.
        newer = [
            (v, number, verdict)
            for v in (found.versions if found else [])
            if (number := _number_of(v)) is not None
            and number > (baseline or 0)
            and (verdict := _matches(v, sent)) is not False
        ]
        if found is not None and baseline is not None and len(newer) == 1 and newer[0][2]:
            v, number, _ = newer[0]
            upload_path = v.get("upload_path")
            # A version with a file can only be finished if the registry hands its
            # upload_path back (ours does for the token holder when asked for pending ones).
            if not has_file or (v.get("state") == "pending" and isinstance(upload_path, str)):
                path = upload_path if isinstance(upload_path, str) else None
                return Version(version=number, upload_path=path, raw=v)
        if found is not None and baseline is not None and not newer:
            complete = found.pending_listed or not has_file
            if complete:
                self._post_again_or_raise(job, failure, tries)
                return None
        cls = RegistryRefused if failure.unreadable else RegistryUnavailable
        since = f"newer than version {baseline}" if baseline is not None else "new"
        raise cls(
            f"{failure.message}; a {since} version of {s.artifact}/{job.artifact_type} with id "
            f"{job.artifact.id!r} may exist and the registry cannot tell",
            f"check with: {self._look(job)}, before re-running",
        ) from None

    def _post_again_or_raise(self, job: Job, failure: Ambiguous, tries: Tries) -> None:
        """The registry lists every version and none is ours: return to POST again, or raise."""
        slug = f"{self.settings.artifact}/{job.artifact_type}"
        if failure.settled:
            # The server answered, so it is done, and it lists every version with none
            # of ours: the POST did not happen and sending it again makes no second one.
            if tries.again(f"{failure.reason}; not created"):
                return
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
            f"wait a minute, then check with: {self._look(job)}, and re-run only if none has "
            f"id {job.artifact.id!r}",
        ) from None

    def _look(self, job: Job) -> str:
        return (
            f"atlas-ci search --artifact {self.settings.artifact} --artifact-type "
            f"{job.artifact_type} --version any --pending"
        )

    # --- the file ------------------------------------------------------------------------

    def put_file(
        self,
        job: Job,
        version: Version,
        payload: Payload,
        digest: FileDigest,
        progress: ProgressFn | None,
    ) -> str:
        """PUT the file, then ask the registry whether it holds it; returns the sha256 sent.

        A 2xx the registry did not act on (it still waits for the file) is sent again; a
        failure after which the registry holds our file (a try that went through but whose
        answer was lost) is a success. The PUT is one request: all its tries, for whatever
        reason, count against ``--retries`` together.
        """
        slug = f"{self.settings.artifact}/{job.artifact_type} version {version.version}"
        assert version.upload_path is not None
        tries = self.api.tries("file upload")
        while True:
            try:
                sha = self.api.upload(
                    version.upload_path,
                    payload.file,
                    payload.size,
                    progress=progress,
                    digest=digest,
                    tries=tries,
                )
            except (UploadConflict, UploadFailed) as exc:
                return self._after_failed_put(job, version.version, digest, exc)
            except FileChanged as exc:
                return self._after_change(job, version.version, digest, exc)
            sha = sha or digest.result()
            state = self.file_state(job, version.version, sha)
            if state in ("ready", "unsupported"):
                return sha
            if state == "unknown":
                raise RegistryUnavailable(
                    f"the file upload of {slug} was answered with success but the registry "
                    "could not confirm it holds the file",
                    self._check_hint(job, version.version),
                )
            if not tries.again("answered, but the registry has no file"):
                raise RegistryUnavailable(
                    f"the file upload of {slug} was answered with success but the registry "
                    f"never stored the file ({tries.text})",
                    "the version stays pending; check what sits between you and the registry",
                )

    def _after_failed_put(
        self, job: Job, number: int, digest: FileDigest, exc: UploadConflict | UploadFailed
    ) -> str:
        """The sha256 sent when the registry holds our file after all; else raise."""
        slug = f"{self.settings.artifact}/{job.artifact_type} version {number}"
        local = digest.result()
        state = self.file_state(job, number, local)
        if state == "ready":
            self.say(f"The registry holds the file of {slug}: an earlier try went through")
            return local
        running = isinstance(exc, UploadFailed) and exc.maybe_delivered
        if state == "pending" and not running:
            raise exc from None  # nothing can still arrive: "stays pending" is the truth
        if isinstance(exc, UploadConflict) and exc.after_retry:
            # Only this run has the upload URL, and the registry keeps no partial file:
            # the 409 says one of our whole tries was stored.
            self.say(
                f"The registry says the file of {slug} arrived with an earlier try (409); "
                "it cannot confirm the checksum"
            )
            return local
        if state == "pending":
            # A try that timed out or was reset may still be finishing on the server.
            raise type(exc)(
                f"{exc.message}; {slug} is still pending, but a try may still complete",
                "wait a minute, then " + self._check_hint(job, number),
            ) from None
        if isinstance(exc, UploadConflict) or running:
            raise type(exc)(
                f"{exc.message}; the file of {slug} may have arrived and the registry cannot tell",
                self._check_hint(job, number),
            ) from None
        raise exc from None

    def _after_change(self, job: Job, number: int, digest: FileDigest, exc: FileChanged) -> str:
        """The sha256 sent when the registry holds exactly the bytes hashed; else raise,
        saying what the registry holds now."""
        slug = f"{self.settings.artifact}/{job.artifact_type} version {number}"
        hint = f"{exc.hint}, then re-run (a re-run makes a new version)"
        if not exc.delivered:  # the body was stopped short: the registry kept nothing
            raise FileChanged(
                f"{exc.message}; {slug} was created and stays pending (the registry did not "
                "get the whole file)",
                hint,
                path=exc.path,
            ) from None
        local = digest.result()
        try:
            state = self.file_state(job, number, local)
        except RegistryRefused:  # it holds a file whose sha256 is not the one hashed
            raise FileChanged(
                f"{exc.message}; {slug} is ready on the registry with a file that is not the "
                f"one hashed (sha256 {local}): do not use it",
                hint,
                path=exc.path,
            ) from None
        if state == "ready" and self._stored_sha256(job, number) == local:
            self.say(
                f"warning: {exc.message}, after the registry had read it: {slug} holds the "
                f"file as it was hashed (sha256 {local})"
            )
            return local
        held = {"ready": "is ready on the registry", "pending": "stays pending"}.get(
            state, "may have its file on the registry"
        )
        raise FileChanged(
            f"{exc.message}; {slug} {held}, and whether its file is the one hashed (sha256 "
            f"{local}) cannot be told",
            f"{self._check_hint(job, number)}; {exc.hint}",
            path=exc.path,
        ) from None

    def _stored_sha256(self, job: Job, number: int) -> str | None:
        """The sha256 the registry reports for version ``number``'s file, if it does."""
        s = self.settings
        params = {"version": str(number), "include_pending": "1"}
        try:
            found = self.api.search(s.user, s.name, job.artifact_type, params)
        except AtlasCIError:
            return None
        listed = [v for v in (found.versions if found else []) if v.get("version") == number]
        stored = listed[0].get("sha256") if len(listed) == 1 else None
        return stored if isinstance(stored, str) else None

    def file_state(self, job: Job, number: int, sha256: str) -> str:
        """What the registry says of version ``number``'s file.

        ``ready`` or ``pending``; ``unsupported`` when the registry has no way to say (no
        search, a plain search that does not list the version); ``unknown`` when asking kept
        failing (an unusable answer is asked again, within ``--retries`` for the whole
        check). A ready file whose sha256 the registry reports and that differs from
        ``sha256`` is an error: the stored file is not ours.
        """
        tries = self.api.tries(f"checking the file of version {number}")
        while True:
            state = self._file_state(job, number, sha256, tries)
            if state == "failing":
                return "unknown"
            if state != "unknown" or not tries.again("no usable answer"):
                return state

    def _file_state(self, job: Job, number: int, sha256: str, tries: Tries) -> str:
        s = self.settings
        params = {"version": str(number), "include_pending": "1"}
        try:
            found = self.api.search(s.user, s.name, job.artifact_type, params, tries=tries)
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
                f"the registry holds a file for {s.artifact}/{job.artifact_type} version "
                f"{number} with sha256 {stored}, not the {sha256} uploaded",
                "the file was changed on the way; re-run to upload a new version",
            )
        return str(state)

    def _check_hint(self, job: Job, number: int) -> str:
        return (
            f"check with: atlas-ci search --artifact {self.settings.artifact} --artifact-type "
            f"{job.artifact_type} --version {number} --pending, before re-running"
        )


def _number_of(found: Mapping[str, object]) -> int | None:
    """A found version's number: an integer (a JSON ``true`` is not 1), else None."""
    number = found.get("version")
    return number if isinstance(number, int) and not isinstance(number, bool) else None


def _matches(found: Mapping[str, object], sent: Mapping[str, object]) -> bool | None:
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
