"""The Atlas v1 API over one ``requests.Session``: timeouts, retries, the status table.

Every request the tool makes is made here (the file PUT's body is streamed by
:mod:`atlas_ci.transfer`, called from here). Errors leave this module as
:mod:`atlas_ci.errors` classes whose messages hold neither the token nor an upload URL.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from atlas_ci import USER_AGENT
from atlas_ci.digest import FileDigest
from atlas_ci.errors import (
    AtlasCIError,
    AuthError,
    ConfigError,
    InputFileError,
    RegistryRefused,
    RegistryUnavailable,
)
from atlas_ci.redaction import origin_of, redact, redact_url, register_url
from atlas_ci.retry import NOT_PROCESSED_STATUSES, RETRY_STATUSES, RetryPolicy
from atlas_ci.settings import Settings

Log = Callable[[str], None]
_MAX_REDIRECTS = 5


class NotFound(RegistryRefused):
    """404: drives create-if-missing; anywhere else it is a refusal."""


class Ambiguous(RegistryUnavailable):
    """A non-replayable request failed in a way that leaves unknown whether it was processed.

    ``reason`` is the short cause (``500 Internal Server Error``, ``connection reset``) for
    the retry line; ``unreadable`` when the registry said 2xx but its answer was unusable.
    ``settled`` when whatever the server did is over: it answered (500, an unreadable 2xx).
    After a timeout, a reset, a 502 or a 504 the request may still be running behind the
    failure, so a version missing from a search now may appear later.
    """

    def __init__(
        self,
        message: str,
        hint: str = "",
        *,
        reason: str,
        unreadable: bool = False,
        settled: bool = False,
    ):
        super().__init__(message, hint)
        self.reason = reason
        self.unreadable = unreadable
        self.settled = settled or unreadable


class UploadConflict(RegistryRefused):
    """409 to the file PUT: the registry says the file is already there.

    ``after_retry``: an earlier try of this run sent the whole file and lost its answer,
    so the file there is most likely ours.
    """

    def __init__(self, message: str, hint: str = "", *, after_retry: bool = False):
        super().__init__(message, hint)
        self.after_retry = after_retry


class UploadFailed(RegistryUnavailable):
    """The file PUT kept failing; ``maybe_delivered`` if a try may have stored it anyway."""

    def __init__(self, message: str, hint: str = "", *, maybe_delivered: bool = False):
        super().__init__(message, hint)
        self.maybe_delivered = maybe_delivered


@dataclass(frozen=True)
class SearchAnswer:
    """Versions found; ``pending_listed`` when the registry said it included pending ones."""

    versions: list[Mapping[str, Any]]
    pending_listed: bool


@dataclass(frozen=True)
class Version:
    """The part of a version object the flow uses."""

    version: int
    upload_path: str | None
    raw: Mapping[str, Any]


def first_json(body: bytes) -> Any:
    """The first JSON value of ``body`` (atlas-wire §4: trailing data is ignored)."""
    text = body.decode("utf-8", errors="replace").lstrip()
    value, _ = json.JSONDecoder().raw_decode(text)
    return value


def _transport_was_sent(exc: BaseException) -> bool:
    """Whether a transport failure may have happened after the request reached the server."""
    if isinstance(exc, requests.ConnectTimeout):
        return False
    if isinstance(exc, requests.ConnectionError):
        text = repr(exc.args)
        never_sent = (
            "NewConnectionError",
            "NameResolutionError",
            "Failed to establish a new connection",
            "ConnectTimeoutError",
            "cannot connect to",  # transfer's own sendfile path
        )
        return not any(marker in text for marker in never_sent)
    return True


def _describe_transport(exc: BaseException) -> str:
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS verification failed"
    text = repr(exc)
    for marker, words in (
        ("Connection refused", "connection refused"),
        ("NameResolutionError", "host name not found"),
        ("Connection reset", "connection reset"),
        ("RemoteDisconnected", "connection closed without a response"),
        ("BrokenPipe", "connection closed while sending"),
        ("Broken pipe", "connection closed while sending"),
        ("IncompleteRead", "response cut short"),
    ):
        if marker in text:
            return words
    return type(exc).__name__


class AtlasClient:
    """One registry, one session; methods named after the calls of atlas-wire §3."""

    def __init__(
        self,
        settings: Settings,
        *,
        session: requests.Session | None = None,
        policy: RetryPolicy | None = None,
        log: Log | None = None,
        debug: Log | None = None,
    ) -> None:
        self.settings = settings
        self.session = session or requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        # Accept-Encoding/Accept are requests' defaults; the contract sends no Accept.
        self.session.headers.pop("Accept", None)
        self.policy = policy or RetryPolicy(retries=settings.retries, max_wait=settings.max_wait)
        self._log = log or (lambda _line: None)
        self._debug = debug or (lambda _line: None)
        base = urlsplit(settings.atlas_url)
        self._origin = (base.scheme, base.hostname, base.port)
        self._verify = tls_verify_argument(settings.verify)

    # --- the calls ------------------------------------------------------------------

    def authenticate(self) -> None:
        """``GET /api/v1/authenticate``: any 2xx is success."""
        self._call("GET", self.settings.endpoint("authenticate"), what="token check")

    def get_artifact(self, user: str, name: str) -> Mapping[str, Any] | None:
        """The artifact object, or None on 404 exactly."""
        try:
            resp = self._call(
                "GET", self.settings.endpoint("artifacts", user, name), what="artifact lookup"
            )
        except NotFound:
            return None
        body = self._json(resp, "artifact lookup")
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
        attempt = 0
        while True:
            attempt += 1
            try:
                resp = self._call(
                    "POST",
                    self.settings.endpoint("artifacts"),
                    body=payload,
                    what="artifact creation",
                    replayable=False,
                )
                if isinstance(_first_json_or_none(resp.content), dict):
                    return True
                # A 2xx we cannot read (a proxy's page?): as unknown as a lost answer.
                raise Ambiguous(
                    f"the registry's answer to the artifact creation is not JSON "
                    f"({resp.status_code})",
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
                if attempt > self.policy.retries:
                    cls = RegistryRefused if exc.unreadable else RegistryUnavailable
                    raise cls(
                        f"artifact creation failed ({exc.reason}) {_tries(attempt)}; the "
                        f"registry holds no artifact {user}/{name}",
                        exc.hint if exc.unreadable else "nothing was created; re-run later",
                    ) from None
                self._retry_line("artifact creation", f"{exc.reason}; not created", attempt, None)

    def create_version(
        self, user: str, name: str, artifact_type: str, body: Mapping[str, Any], *, file: bool
    ) -> Version:
        """``POST /api/v1/artifacts/{user}/{name}/{type}``: never sent twice on a guess."""
        url = self.settings.endpoint("artifacts", user, name, artifact_type)
        resp = self._call("POST", url, body=body, what="version creation", replayable=False)
        try:
            return parse_version(self._json(resp, "version creation"), file=file)
        except RegistryRefused as exc:
            # 2xx: the registry says it created a version we cannot use; the caller looks
            # for it rather than posting a second one.
            raise Ambiguous(
                exc.message, exc.hint, reason="answer not usable", unreadable=True
            ) from None

    def search(
        self, user: str, name: str, artifact_type: str, params: Mapping[str, str]
    ) -> SearchAnswer | None:
        """Terraform's read-back (atlas-wire §10); None when the server has no search."""
        url = self.settings.endpoint("artifacts", user, name, artifact_type, "search")
        try:
            resp = self._call("GET", url, params=params, what="version search")
        except NotFound:
            return None
        body = self._json(resp, "version search")
        versions = body.get("versions") if isinstance(body, dict) else None
        if not isinstance(versions, list) or not all(isinstance(v, dict) for v in versions):
            raise RegistryRefused(
                "the registry's search answer has no list of versions",
                "check that atlas_url points at an Atlas-compatible registry",
            )
        for v in versions:
            for key, value in v.items():
                if str(key).lower() == "upload_path" and isinstance(value, str) and value:
                    register_url(value)  # a pending version's upload URL is a credential
        return SearchAnswer(versions, body.get("pending_listed") is True)

    def upload(
        self,
        upload_path: str,
        path: Path,
        size: int,
        *,
        progress: Callable[[int], None] | None = None,
        digest: FileDigest | None = None,
    ) -> str | None:
        """PUT the file to ``upload_path`` (no token, streamed, retried from offset 0).

        Returns the sha256 of the bytes sent (from ``digest`` when the caller started one).
        """
        from atlas_ci import transfer

        # Whether some try may have left the whole file with the registry (its answer lost):
        # then "the version stays pending" would be a guess, and the caller asks instead.
        # Progress is reported too sparsely to tell a cut body from a lost answer, so any
        # failure after the connection was made counts.
        maybe_delivered = False
        attempt = 0
        while True:
            attempt += 1
            try:
                outcome = transfer.put_file(
                    upload_path,
                    path,
                    size,
                    session=self.session,
                    verify=self._verify,
                    timeout=self.settings.timeout,
                    progress=progress,
                    digest=digest,
                )
            except (requests.RequestException, OSError) as exc:
                if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError):
                    raise InputFileError(
                        f"cannot read the file to upload: {exc.strerror or type(exc).__name__}",
                        "the archive must stay in place until the upload ends; re-run",
                    ) from None
                reason = _describe_transport(exc)
                if isinstance(exc, requests.exceptions.SSLError):
                    raise UploadFailed(
                        f"file upload failed: {reason} for {origin_of(upload_path)}",
                        "pass the upload host's CA with --ca-file or ATLAS_CAFILE; the version "
                        "stays pending",
                    ) from None
                maybe_delivered |= _transport_was_sent(exc)
                if attempt <= self.policy.retries:
                    self._retry_line("file upload", reason, attempt, None)
                    continue
                raise UploadFailed(
                    f"file upload failed: {reason} (after {_tries(attempt)})",
                    "the version stays pending; check the network and re-run",
                    maybe_delivered=maybe_delivered,
                ) from None
            status = outcome.response.status
            if 200 <= status < 300:
                return outcome.sha256
            if status in RETRY_STATUSES:
                maybe_delivered |= status not in NOT_PROCESSED_STATUSES
                if attempt <= self.policy.retries:
                    self._retry_line(
                        "file upload",
                        f"{status} {outcome.response.reason}",
                        attempt,
                        outcome.response.headers.get("Retry-After"),
                    )
                    continue
                raise UploadFailed(
                    f"the file upload failed: {status} {outcome.response.reason} "
                    f"(after {_tries(attempt)})",
                    "the version stays pending; try again later",
                    maybe_delivered=maybe_delivered,
                )
            if status == 409:
                raise UploadConflict(
                    "the upload URL answered 409: the registry already holds a file for "
                    "this version",
                    "look at the version with atlas-ci search before re-running",
                    after_retry=attempt > 1,
                )
            if 300 <= status < 400:
                raise RegistryRefused(
                    f"the upload URL answered {status} (a redirect), which is not followed "
                    "for a file upload",
                    "the registry must return the final upload URL in upload_path",
                )
            raise self._status_error(
                status, outcome.response.reason, outcome.response.body, "file upload"
            )

    # --- one request, with the status table and retries ------------------------------

    def _call(
        self,
        method: str,
        url: str,
        *,
        what: str,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        replayable: bool = True,
    ) -> requests.Response:
        data = None
        headers: dict[str, str] = {}
        if body is not None:
            data = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        attempt = 0
        while True:
            attempt += 1
            try:
                resp = self._send(method, url, data, headers, params)
            except requests.RequestException as exc:
                if isinstance(
                    exc, requests.exceptions.InvalidHeader | requests.exceptions.InvalidURL
                ):
                    # Nothing was sent and nothing will change on a retry: it is our input.
                    raise ConfigError(
                        f"{what}: the request cannot be made ({type(exc).__name__})",
                        "check atlas_url and ATLAS_TOKEN for stray characters",
                    ) from None
                reason = _describe_transport(exc)
                if isinstance(exc, requests.exceptions.SSLError):
                    raise RegistryUnavailable(
                        f"{what} failed: {reason} for {redact_url(url)}",
                        "pass the registry's CA with --ca-file or ATLAS_CAFILE",
                    ) from None
                sent = _transport_was_sent(exc)
                if (replayable or not sent) and attempt <= self.policy.retries:
                    self._retry_line(what, reason, attempt, None)
                    continue
                message = f"{what} failed: {reason} ({redact_url(url)}, {_tries(attempt)})"
                hint = "check that the registry is up and reachable, then re-run"
                if sent and not replayable:
                    raise Ambiguous(message, hint, reason=reason) from None
                raise RegistryUnavailable(message, hint) from None
            status = resp.status_code
            if 200 <= status < 300:
                return resp
            if status in RETRY_STATUSES:
                safe = replayable or status in NOT_PROCESSED_STATUSES
                if safe and attempt <= self.policy.retries:
                    self._retry_line(
                        what, f"{status} {resp.reason}", attempt, resp.headers.get("Retry-After")
                    )
                    continue
                if not safe:
                    raise Ambiguous(
                        f"{what} failed: {status} {resp.reason}; the registry may or may not "
                        "have processed it",
                        "check the registry before re-running",
                        reason=f"{status} {resp.reason}",
                        settled=status == 500,  # the server's own answer; gateways say 502/504
                    )
            raise self._status_error(status, resp.reason, resp.content, what)

    def _send(
        self,
        method: str,
        url: str,
        data: bytes | None,
        headers: dict[str, str],
        params: Mapping[str, str] | None,
    ) -> requests.Response:
        """One request; follows redirects itself so the token never leaves the origin."""
        for _ in range(_MAX_REDIRECTS + 1):
            send_headers = dict(headers)
            token = self.settings.token
            if token and self._same_origin(url):
                send_headers["X-Atlas-Token"] = token.reveal()
            self._debug(f"{method} {redact_url(url)}")
            resp = self.session.request(
                method,
                url,
                data=data,
                headers=send_headers,
                params=params,
                timeout=self.settings.timeout,
                verify=self._verify,
                allow_redirects=False,
            )
            self._debug(f"{method} {redact_url(url)} -> {resp.status_code}")
            if not resp.is_redirect:
                return resp
            location = resp.headers.get("Location", "")
            target = urljoin(url, location)
            if method != "GET" or resp.status_code not in (301, 302, 303, 307, 308):
                raise RegistryRefused(
                    f"the registry redirected {method} {redact_url(url)} to "
                    f"{redact_url(target)}; writes are not redirected",
                    "set atlas_url to the registry's final address",
                )
            resp.close()
            url, params = target, None
        raise RegistryRefused(
            f"too many redirects from {redact_url(url)}", "set atlas_url to the final address"
        )

    def _same_origin(self, url: str) -> bool:
        parts = urlsplit(url)
        return (parts.scheme, parts.hostname, parts.port) == self._origin

    def retry_line(self, what: str, reason: str, attempt: int) -> None:
        """Log why ``what`` is tried again and when, then wait (for the flow's own retries)."""
        self._retry_line(what, reason, attempt, None)

    def _retry_line(self, what: str, reason: str, attempt: int, retry_after: str | None) -> None:
        wait = self.policy.delay(attempt, retry_after)
        self._log(f"{what} failed ({reason}); retry {attempt}/{self.policy.retries} in {wait:.1f}s")
        self.policy.pause(wait)

    def _json(self, resp: requests.Response, what: str) -> Any:
        try:
            return first_json(resp.content)
        except ValueError:
            raise RegistryRefused(
                f"the registry's answer to the {what} is not JSON ({resp.status_code})",
                "check that atlas_url points at an Atlas-compatible registry",
            ) from None

    def _status_error(self, status: int, reason: str, content: bytes, what: str) -> AtlasCIError:
        if status == 403:
            # The namespace is the slug's first part: a user, or an organization to join.
            namespace = self.settings.user
            return AuthError(
                f"permission denied (403) during the {what}: {_errors_text(content)}",
                f"the token's user needs write access to {namespace!r} (its own name, or a "
                f"write member of organization {namespace}) and a token that is not read-only",
            )
        if status == 401:
            return AuthError(
                f"authentication failed ({status}) during the {what}",
                "check ATLAS_TOKEN (or the action's token input) and its rights on the artifact",
            )
        if status == 404:
            return NotFound(
                f"{what}: not found (404)",
                "check the artifact name and that atlas_url points at the registry's API",
            )
        if status in (400, 422):
            detail = _errors_text(content)
            return RegistryRefused(
                f"the registry refused the {what}: {detail}",
                "fix what the registry names and re-run",
            )
        if status == 429:
            return RegistryUnavailable(
                f"the registry kept refusing the {what} as too many requests (429)",
                "the registry is rate limiting; try again later or raise --retries/--max-wait",
            )
        if status >= 500:
            return RegistryUnavailable(
                f"the registry failed the {what}: {status} {reason}",
                "the registry is failing; try again later",
            )
        return RegistryRefused(f"{what}: {status} {reason}", "see the registry's documentation")


_CA_BUNDLES: dict[str, str] = {}


def tls_verify_argument(verify: bool | str) -> bool | str:
    """What requests needs for ``verify``: a CA directory becomes one bundle file.

    OpenSSL reads a CA directory only through hash-named links (``c_rehash``); Go's
    ``ATLAS_CAPATH``, which users bring along, took every PEM file in it. The bundle is a
    private temp file removed at exit. ``False`` also silences urllib3's per-request
    warning: the run already warned once, in one line.
    """
    if verify is False:
        import warnings

        from urllib3.exceptions import InsecureRequestWarning

        warnings.filterwarnings("ignore", category=InsecureRequestWarning)
        return False
    if not isinstance(verify, str) or not Path(verify).is_dir():
        return verify
    if verify in _CA_BUNDLES:
        return _CA_BUNDLES[verify]
    import atexit
    import os
    import tempfile

    pems = []
    for entry in sorted(Path(verify).iterdir()):
        try:
            text = entry.read_text("ascii", errors="replace") if entry.is_file() else ""
        except OSError:
            continue
        if "-----BEGIN CERTIFICATE-----" in text:
            pems.append(text.strip() + "\n")
    if not pems:
        raise ConfigError(
            f"the CA directory {verify!r} holds no PEM certificate",
            "put the registry's CA certificate (PEM) in it, or pass --ca-file",
        )
    fd, bundle = tempfile.mkstemp(prefix="atlas-ci-ca-", suffix=".pem")
    with os.fdopen(fd, "w") as fh:
        fh.write("".join(pems))
    atexit.register(lambda: Path(bundle).unlink(missing_ok=True))
    _CA_BUNDLES[verify] = bundle
    return bundle


def _tries(n: int) -> str:
    return "1 try" if n == 1 else f"{n} tries"


def _first_json_or_none(content: bytes) -> Any:
    try:
        return first_json(content)
    except ValueError:
        return None


def _errors_text(content: bytes) -> str:
    try:
        body = first_json(content)
    except ValueError:
        body = None
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, list) and errors:
        text = ", ".join(str(e) for e in errors)
        return redact(" ".join(text.split()))[:500]
    return "its error body could not be decoded"


def parse_version(body: Any, *, file: bool) -> Version:
    """The version POST's answer: flat (the contract) or wrapped in ``{"version": {...}}``."""
    hint = "the registry does not answer as atlas-wire.md §3.5 says; check atlas_url"
    if not isinstance(body, dict):
        raise RegistryRefused("the version answer is not a JSON object", hint)
    fields = {str(k).lower(): v for k, v in body.items()}
    if isinstance(fields.get("version"), dict):
        fields = {str(k).lower(): v for k, v in fields["version"].items()}
    number = fields.get("version")
    if not isinstance(number, int) or isinstance(number, bool):
        raise RegistryRefused("the version answer has no integer 'version'", hint)
    upload_path = fields.get("upload_path")
    if isinstance(upload_path, str) and upload_path:
        register_url(upload_path)  # a presigned URL is a credential: never print it
    if file:
        if not isinstance(upload_path, str) or not upload_path.strip():
            raise RegistryRefused(
                f"the registry created version {number} but gave no upload_path for its file",
                hint,
            )
        scheme = urlsplit(upload_path).scheme
        if scheme not in ("http", "https") or not urlsplit(upload_path).hostname:
            raise RegistryRefused(
                f"the registry gave version {number} an upload_path that is not an absolute "
                "http(s) URL",
                hint,
            )
    return Version(
        version=number,
        upload_path=upload_path if isinstance(upload_path, str) else None,
        raw=fields,
    )
