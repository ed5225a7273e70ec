"""The file PUT of any API client: streamed by :mod:`atlas_ci.transfer`, tried again within
the run's budget, and its failure mapped onto :mod:`atlas_ci.errors` with no URL in it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from atlas_ci.answers import SUCCESS_STATUSES, UploadConflict, UploadFailed
from atlas_ci.errors import AtlasCIError, InputFileError, RegistryRefused, TransportError
from atlas_ci.retry import NOT_PROCESSED_STATUSES, RETRY_STATUSES, Tries

if TYPE_CHECKING:
    import requests

    from atlas_ci.digest import FileDigest
    from atlas_ci.settings import Settings
    from atlas_ci.sourcefile import SourceFile
    from atlas_ci.transfer import PutOutcome, PutResponse


class ApiSession(Protocol):
    """What the PUT needs of :class:`atlas_ci.api_session.ApiSession` (which imports this)."""

    settings: Settings
    session: requests.Session

    def verify_for(self, url: str) -> bool | str: ...

    def status_error(
        self, status: int, reason: str, content: bytes, what: str, tries: str = ""
    ) -> AtlasCIError: ...


def put_with_retries(
    api: ApiSession,
    upload_path: str,
    path: Path | SourceFile,
    size: int,
    *,
    progress: Callable[[int], None] | None,
    digest: FileDigest | None,
    tries: Tries,
    headers: Mapping[str, str] | None = None,
) -> str | None:
    """PUT ``path`` to ``upload_path`` until it is stored or the tries run out; its sha256."""
    # Whether some try may have left the whole file with the registry (its answer lost):
    # then "the version stays pending" would be a guess, and the caller asks instead.
    # Progress is reported too sparsely to tell a cut body from a lost answer, so any
    # failure after the connection was made counts.
    maybe_delivered = False
    while True:
        try:
            outcome = _put_once(api, upload_path, path, size, progress, digest, headers)
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
        raise _put_refused(api, outcome.response, after_retry=tries.count > 1)


def _put_once(
    api: ApiSession,
    upload_path: str,
    path: Path | SourceFile,
    size: int,
    progress: Callable[[int], None] | None,
    digest: FileDigest | None,
    headers: Mapping[str, str] | None,
) -> PutOutcome:
    """One try of the PUT; a TransportError other than TLS is the caller's to retry."""
    from atlas_ci import transfer

    try:
        return transfer.put_file(
            upload_path,
            path,
            size,
            session=api.session,
            verify=api.verify_for(upload_path),
            timeout=api.settings.timeout,
            progress=progress,
            digest=digest,
            headers=headers,
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


def _put_refused(api: ApiSession, response: PutResponse, *, after_retry: bool) -> AtlasCIError:
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
    return api.status_error(status, response.reason, response.body, "file upload")
