"""The Atlas v1 API's calls: what each asks the registry, and what its answer means.

Every request is sent through :class:`~atlas_ci.api_session.ApiSession` (timeouts, retries,
redirects, the status table), which :class:`AtlasClient` extends; the file PUT's body is
streamed by :mod:`atlas_ci.transfer`, called from here. Errors leave this module as
:mod:`atlas_ci.errors` classes whose messages hold neither the token nor an upload URL.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from atlas_ci.answers import (
    IDEMPOTENCY_HEADER,
    SUCCESS_STATUSES,
    WRITE_CHECK_EXTENSION,
    Ambiguous,
    NotFound,
    SearchAnswer,
    UploadConflict,
    UploadFailed,
    Version,
    extensions_of,
    first_json,
    first_json_or_none,
    parse_search,
    parse_version,
)
from atlas_ci.api_session import MAX_ANSWER, ApiSession
from atlas_ci.digest import FileDigest
from atlas_ci.errors import (
    AtlasCIError,
    InputFileError,
    RegistryRefused,
    RegistryUnavailable,
    TransportError,
)
from atlas_ci.retry import NOT_PROCESSED_STATUSES, RETRY_STATUSES, Tries
from atlas_ci.transport import tls_verify_argument

# The answers' classes are used through this module by callers that speak to a registry.
__all__ = [
    "MAX_ANSWER",
    "Ambiguous",
    "AtlasClient",
    "NotFound",
    "SearchAnswer",
    "UploadConflict",
    "UploadFailed",
    "Version",
    "first_json",
    "parse_version",
    "tls_verify_argument",
]

if TYPE_CHECKING:
    from atlas_ci.sourcefile import SourceFile
    from atlas_ci.transfer import PutOutcome, PutResponse


@dataclass(frozen=True)
class TokenInfo:
    """What ``GET /api/v1/authenticate`` told of the token (nothing, from Atlas itself)."""

    username: str | None = None
    read_only: bool = False
    write_check: bool = False
    """The registry announced the write-check extension (atlas-wire §12)."""


class AtlasClient(ApiSession):
    """One registry, one session; methods named after the calls of atlas-wire §3."""

    def __enter__(self) -> AtlasClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the calls ------------------------------------------------------------------

    def authenticate(self) -> TokenInfo:
        """``GET /api/v1/authenticate``: 200, 201, 202 or 204 is success; what the answer
        says of the token, as far as it says anything (Atlas sent no body)."""
        answer = self._call("GET", self.settings.endpoint("authenticate"), what="token check")
        body = first_json_or_none(answer.content)
        user = body.get("user") if isinstance(body, dict) else None
        user = user if isinstance(user, dict) else {}
        name = user.get("username")
        return TokenInfo(
            username=name if isinstance(name, str) else None,
            read_only=user.get("read_only") is True,
            write_check=WRITE_CHECK_EXTENSION in extensions_of(answer.headers),
        )

    def check_write(self, user: str, token: TokenInfo, what: str) -> None:
        """Raise the :class:`AuthError` a write into namespace ``user`` would, when the
        registry can tell before anything is written (a dry run asks): by the write-check
        extension (atlas-wire §12) if announced, else by the token check's ``read_only``.
        ``what`` names the call the real run would be refused on, for the same message."""
        if token.write_check:
            try:
                self._call(
                    "GET", self.settings.endpoint("namespaces", user, "write-access"), what=what
                )
                return
            except NotFound:
                pass  # announced but not served here (a mixed fleet): what the token says
        if token.read_only:
            who = token.username or "this token"
            refusal = json.dumps({"errors": [f"the token of user {who} is read-only"]})
            raise self._status_error(403, "Forbidden", refusal.encode(), what)

    def get_artifact(self, user: str, name: str) -> Mapping[str, object] | None:
        """The artifact object, or None on 404 exactly."""
        try:
            answer = self._call(
                "GET", self.settings.endpoint("artifacts", user, name), what="artifact lookup"
            )
        except NotFound:
            return None
        body = self._json(answer, "artifact lookup")
        if not isinstance(body, dict):
            raise RegistryRefused(
                "the registry answered the artifact lookup with something other than a JSON object",
                "check that atlas_url points at an Atlas-compatible registry",
            )
        return body

    def create_artifact(self, user: str, name: str) -> bool:
        """Create ``user/name`` if missing; True if this call created it.

        The POST is not replayed blindly: after a failure that may or may not have been
        processed, the artifact GET decides, and only a confirmed absence sends it again.
        """
        if self.get_artifact(user, name) is not None:
            return False
        self._log(f"Creating artifact: {user}/{name}")
        payload = {"artifact": {"username": user, "name": name}}
        tries = self.tries("artifact creation")
        while True:
            try:
                answer = self._call(
                    "POST",
                    self.settings.endpoint("artifacts"),
                    body=payload,
                    what="artifact creation",
                    replayable=False,
                    tries=tries,
                )
                if isinstance(first_json_or_none(answer.content), dict):
                    return True
                # A 2xx we cannot read (a proxy's page?): as unknown as a lost answer.
                raise Ambiguous(
                    f"the registry's answer to the artifact creation is not JSON ({answer.status})",
                    "check that atlas_url points at an Atlas-compatible registry",
                    reason="answer not JSON",
                    unreadable=True,
                )
            except RegistryRefused:
                # A parallel job may have won the race: ask the API, not the error text.
                if self.get_artifact(user, name) is not None:
                    return False
                raise
            except Ambiguous as exc:
                if self.get_artifact(user, name) is not None:
                    return False  # our own request went through
                if not tries.again(f"{exc.reason}; not created"):
                    cls = RegistryRefused if exc.unreadable else RegistryUnavailable
                    raise cls(
                        f"artifact creation failed ({exc.reason}) after {tries.text}; the "
                        f"registry holds no artifact {user}/{name}",
                        exc.hint if exc.unreadable else "nothing was created; re-run later",
                    ) from None

    def create_version(
        self,
        user: str,
        name: str,
        artifact_type: str,
        body: Mapping[str, object],
        *,
        file: bool,
        idempotency_key: str | None = None,
        tries: Tries | None = None,
    ) -> Version:
        """``POST /api/v1/artifacts/{user}/{name}/{type}``: never sent twice on a guess.

        With ``idempotency_key`` and a registry that honours it (atlas-wire §11) the POST
        is replayed like a read: the registry answers a repeat with the version the first
        one created.
        """
        url = self.settings.endpoint("artifacts", user, name, artifact_type)
        headers = {IDEMPOTENCY_HEADER: idempotency_key} if idempotency_key else {}
        answer = self._call(
            "POST",
            url,
            body=body,
            what="version creation",
            replayable=bool(idempotency_key) and self.idempotent,
            headers=headers,
            tries=tries,
        )
        try:
            return parse_version(self._json(answer, "version creation"), file=file)
        except RegistryRefused as exc:
            # 2xx: the registry says it created a version we cannot use; the caller looks
            # for it rather than posting a second one.
            raise Ambiguous(
                exc.message, exc.hint, reason="answer not usable", unreadable=True
            ) from None

    def search(
        self,
        user: str,
        name: str,
        artifact_type: str,
        params: Mapping[str, str],
        *,
        tries: Tries | None = None,
    ) -> SearchAnswer | None:
        """Terraform's read-back (atlas-wire §10); None when the server has no search."""
        url = self.settings.endpoint("artifacts", user, name, artifact_type, "search")
        try:
            answer = self._call("GET", url, params=params, what="version search", tries=tries)
        except NotFound:
            return None
        return parse_search(self._json(answer, "version search"))

    def upload(
        self,
        upload_path: str,
        path: Path | SourceFile,
        size: int,
        *,
        progress: Callable[[int], None] | None = None,
        digest: FileDigest | None = None,
        tries: Tries | None = None,
    ) -> str | None:
        """PUT the file to ``upload_path`` (no token, streamed, retried from offset 0).

        Returns the sha256 of the bytes sent (from ``digest`` when the caller started one).
        ``tries`` is shared with the caller's own re-sends: the PUT is one request.
        """
        tries = tries or self.tries("file upload")
        # Whether some try may have left the whole file with the registry (its answer lost):
        # then "the version stays pending" would be a guess, and the caller asks instead.
        # Progress is reported too sparsely to tell a cut body from a lost answer, so any
        # failure after the connection was made counts.
        maybe_delivered = False
        while True:
            try:
                outcome = self._put_once(upload_path, path, size, progress, digest)
            except TransportError as exc:
                maybe_delivered |= exc.sent
                if tries.again(exc.reason):
                    continue
                raise UploadFailed(
                    f"file upload failed: {exc.reason} (after {tries.text})",
                    "the version stays pending; check the network and re-run",
                    maybe_delivered=maybe_delivered,
                ) from None
            status = outcome.response.status
            if status in SUCCESS_STATUSES:
                return outcome.sha256
            if status in RETRY_STATUSES:
                maybe_delivered |= status not in NOT_PROCESSED_STATUSES
                reason = f"{status} {outcome.response.reason}"
                if tries.again(reason, outcome.response.headers.get("Retry-After")):
                    continue
                raise UploadFailed(
                    f"the file upload failed: {reason} (after {tries.text})",
                    "the version stays pending; try again later",
                    maybe_delivered=maybe_delivered,
                )
            raise self._put_refused(outcome.response, after_retry=tries.count > 1)

    def _put_once(
        self,
        upload_path: str,
        path: Path | SourceFile,
        size: int,
        progress: Callable[[int], None] | None,
        digest: FileDigest | None,
    ) -> PutOutcome:
        """One try of the PUT; a TransportError other than TLS is the caller's to retry."""
        from atlas_ci import transfer

        try:
            return transfer.put_file(
                upload_path,
                path,
                size,
                session=self.session,
                verify=self.verify_for(upload_path),
                timeout=self.settings.timeout,
                progress=progress,
                digest=digest,
            )
        except TransportError as exc:
            if exc.tls:
                raise UploadFailed(
                    f"file upload failed: {exc.reason} for {exc.where}",
                    "pass the upload host's CA with --ca-file or ATLAS_CAFILE; the version "
                    "stays pending",
                ) from None
            raise
        except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
            raise InputFileError(
                f"cannot read the file to upload: {exc.strerror or type(exc).__name__}",
                "the archive must stay in place until the upload ends; re-run",
            ) from None

    def _put_refused(self, response: PutResponse, *, after_retry: bool) -> AtlasCIError:
        status = response.status
        if status == 409:
            return UploadConflict(
                "the upload URL answered 409: the registry already holds a file for this version",
                "look at the version with atlas-ci search before re-running",
                after_retry=after_retry,
            )
        if 300 <= status < 400:
            return RegistryRefused(
                f"the upload URL answered {status} (a redirect), which is not followed "
                "for a file upload",
                "the registry must return the final upload URL in upload_path",
            )
        return self._status_error(status, response.reason, response.body, "file upload")
