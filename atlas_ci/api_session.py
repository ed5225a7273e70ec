"""One registry session: every API request the tool makes, with the status table and retries.

:class:`ApiSession` holds the ``requests.Session`` and sends one call at a time: the token only
to the registry's own origin, redirects followed by hand (GET only), each answer read whole
within ``--timeout`` and a cap, retried as :mod:`atlas_ci.retry` says, and a refusal turned
into an :mod:`atlas_ci.errors` class whose message holds neither the token nor an upload URL.
The calls themselves (what is asked, what an answer means) are
:class:`~atlas_ci.client.AtlasClient`'s.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from urllib.parse import urljoin, urlsplit

import requests
import requests.adapters

from atlas_ci import USER_AGENT
from atlas_ci.answers import (
    IDEMPOTENCY_EXTENSION,
    SUCCESS_STATUSES,
    Ambiguous,
    Answer,
    NotFound,
    errors_text,
    extensions_of,
    first_json,
    printable,
)
from atlas_ci.errors import (
    AtlasCIError,
    AuthError,
    ConfigError,
    RegistryRefused,
    RegistryUnavailable,
    TransportError,
)
from atlas_ci.redaction import redact_url
from atlas_ci.retry import NOT_PROCESSED_STATUSES, RETRY_STATUSES, RetryPolicy, Tries
from atlas_ci.settings import Settings
from atlas_ci.transport import (
    SEND_ERRORS,
    BadEncoding,
    BodyTooLarge,
    Deadline,
    DeadlineAdapter,
    read_body,
    send_failure,
    timed_out,
    tls_verify_argument,
)

Log = Callable[[str], None]
_MAX_REDIRECTS = 5
MAX_ANSWER = 8 << 20
"""The most an API answer may hold, after decompression: a search of thousands of versions
fits many times over; a registry that sends more is answering outside the contract."""
ERROR_BODY = 64 << 10  # an error answer is read only for its message


class ApiSession:
    """One registry, one session: a request sent, answered and judged by the status table."""

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
        for prefix in ("http://", "https://"):
            # Only requests' own adapter is swapped: a test's or a caller's stays.
            if type(self.session.get_adapter(prefix)) is requests.adapters.HTTPAdapter:
                self.session.mount(prefix, DeadlineAdapter())
        self.session.headers["User-Agent"] = USER_AGENT
        # Only what read_body can undo with a cap; the contract sends no Accept.
        self.session.headers["Accept-Encoding"] = "gzip, deflate"
        self.session.headers.pop("Accept", None)
        self.policy = policy or RetryPolicy(retries=settings.retries, max_wait=settings.max_wait)
        self._log = log or (lambda _line: None)
        self._debug = debug or (lambda _line: None)
        base = urlsplit(settings.atlas_url)
        self._origin = (base.scheme, base.hostname, base.port)
        self._tls: bool | str | None = None
        if base.scheme == "https":
            self.verify_for(settings.atlas_url)  # a CA problem: exit 2 before any request
        self._idempotency: bool | None = None

    def verify_for(self, url: str) -> bool | str:
        """requests' ``verify`` for ``url``: the CA directory is read only when TLS needs it."""
        if not url.lower().startswith("https:"):
            return self.settings.verify  # unused for http://: nothing is read
        if self._tls is None:
            self._tls = tls_verify_argument(self.settings.verify)
        return self._tls

    def close(self) -> None:
        """Close the session's connections (``with AtlasClient(...) as api:`` does)."""
        self.session.close()

    @property
    def idempotent(self) -> bool:
        """Whether the registry honours ``Idempotency-Key`` on the version POST.

        It says so on its 2xx API answers; one that does not say it (a mixed fleet behind a
        balancer, say) turns the extension off for the rest of the run.
        """
        return self._idempotency is True

    def tries(self, what: str) -> Tries:
        """A fresh count of tries for a request the flow retries itself."""
        return self.policy.tries(what, self._log)

    # --- one request, with the status table and retries ------------------------------

    def _call(
        self,
        method: str,
        url: str,
        *,
        what: str,
        body: Mapping[str, object] | None = None,
        params: Mapping[str, str] | None = None,
        replayable: bool = True,
        headers: Mapping[str, str] | None = None,
        tries: Tries | None = None,
    ) -> Answer:
        data = None
        send_headers = dict(headers or {})
        if body is not None:
            data = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
            send_headers["Content-Type"] = "application/json"
        tries = tries or self.tries(what)
        while True:
            try:
                answer = self._send(method, url, data, send_headers, params, what)
            except TransportError as exc:
                if exc.tls:
                    raise RegistryUnavailable(
                        f"{what} failed: {exc.reason} for {exc.where}",
                        "pass the registry's CA with --ca-file or ATLAS_CAFILE",
                    ) from None
                tries.maybe_processed |= exc.sent
                if (replayable or not exc.sent) and tries.again(exc.reason):
                    continue
                message = f"{what} failed: {exc.reason} ({exc.where}, {tries.text})"
                hint = "check that the registry is up and reachable, then re-run"
                if exc.sent and not replayable:
                    raise Ambiguous(message, hint, reason=exc.reason) from None
                raise RegistryUnavailable(message, hint) from None
            status = answer.status
            if status in SUCCESS_STATUSES:
                return answer
            if status in RETRY_STATUSES:
                safe = replayable or status in NOT_PROCESSED_STATUSES
                tries.maybe_processed |= status not in NOT_PROCESSED_STATUSES
                reason = f"{status} {answer.reason}"
                if safe and tries.again(reason, answer.headers.get("Retry-After")):
                    continue
                if not safe:
                    raise Ambiguous(
                        f"{what} failed: {reason}; the registry may or may not have processed it",
                        "check the registry before re-running",
                        reason=reason,
                        settled=status == 500,  # the server's own answer; gateways say 502/504
                    )
                raise self._status_error(
                    status, answer.reason, answer.content, what, f" (after {tries.text})"
                )
            raise self._status_error(status, answer.reason, answer.content, what)

    def _send(
        self,
        method: str,
        url: str,
        data: bytes | None,
        headers: dict[str, str],
        params: Mapping[str, str] | None,
        what: str,
    ) -> Answer:
        """One request; follows redirects itself so the token never leaves the origin."""
        for hop in range(_MAX_REDIRECTS + 1):
            send_headers = dict(headers)
            token = self.settings.token
            if token and self._same_origin(url):
                send_headers["X-Atlas-Token"] = token.reveal()
            self._debug(f"{method} {redact_url(url)}")
            request = requests.Request(method, url, data=data, headers=send_headers, params=params)
            prepared = self._prepare(request, what, hop)
            answer, location = self._exchange(prepared, url, what)
            self._debug(f"{method} {redact_url(url)} -> {answer.status}")
            if location is None:
                if 200 <= answer.status < 300 and self._same_origin(url):
                    announced = IDEMPOTENCY_EXTENSION in extensions_of(answer.headers)
                    self._idempotency = announced and self._idempotency is not False
                return answer
            target = _redirect_target(method, url, location)
            if method != "GET" or answer.status not in (301, 302, 303, 307, 308):
                raise RegistryRefused(
                    f"the registry redirected {method} {redact_url(url)} to "
                    f"{redact_url(target)}; writes are not redirected",
                    "set atlas_url to the registry's final address",
                )
            url, params = target, None
        raise RegistryRefused(
            f"too many redirects from {redact_url(url)}", "set atlas_url to the final address"
        )

    def _exchange(
        self, prepared: requests.PreparedRequest, url: str, what: str
    ) -> tuple[Answer, str | None]:
        """One request and its whole answer within ``--timeout``; a redirect's Location."""
        seconds = self.settings.read_timeout
        with Deadline(seconds) as deadline:
            try:
                # What requests.Session.request adds to send: proxies and CA from the
                # environment, which the caller's settings (verify) override.
                env = self.session.merge_environment_settings(
                    prepared.url, {}, True, self.verify_for(prepared.url or ""), None
                )
                resp = self.session.send(
                    prepared, allow_redirects=False, timeout=self.settings.timeout, **env
                )
                with resp:
                    if resp.is_redirect:
                        location: str | None = resp.headers.get("Location", "")
                        answer = _answer(resp, b"")
                    else:
                        location, answer = None, _answer(resp, self._read(resp, what))
            except SEND_ERRORS as exc:
                raise self._failure(exc, deadline, url, what) from None
        if deadline.expired:
            # An answer cut short by the deadline can parse as a whole one (a head ended by
            # the close, a body read to "the end"): none of it is trusted.
            raise timed_out(seconds, redact_url(url))
        return answer, location

    def _prepare(self, request: requests.Request, what: str, hop: int) -> requests.PreparedRequest:
        """The request as it will be sent; one that cannot be made is refused here."""
        try:
            return self.session.prepare_request(request)
        except (requests.RequestException, ValueError):
            if hop == 0:
                # Nothing was sent and nothing will change on a retry: it is our input.
                raise ConfigError(
                    f"{what}: the request cannot be made",
                    "check atlas_url and ATLAS_TOKEN for stray characters",
                ) from None
            raise RegistryRefused(
                f"the registry redirected the {what} to an address that cannot be used",
                "set atlas_url to the registry's final address",
            ) from None

    def _failure(self, exc: Exception, deadline: Deadline, url: str, what: str) -> AtlasCIError:
        """What a request that raised ``exc`` failed with, as this tool reports it."""
        if not deadline.expired and isinstance(
            exc, requests.exceptions.InvalidHeader | requests.exceptions.InvalidURL
        ):
            # Raised while sending or reading: the answer's headers (two Content-Lengths,
            # say), not ours, which _prepare has checked.
            return RegistryRefused(
                f"the registry's answer to the {what} is malformed ({type(exc).__name__})",
                "check that atlas_url points at an Atlas-compatible registry",
            )
        return send_failure(exc, deadline, redact_url(url)) or RegistryRefused(
            f"the registry's answer to the {what} is malformed (a Location that is not a URL?)",
            "check that atlas_url points at an Atlas-compatible registry",
        )

    def _read(self, resp: requests.Response, what: str) -> bytes:
        if not 200 <= resp.status_code < 300:
            try:
                return read_body(resp, ERROR_BODY, truncate=True)
            except BadEncoding:
                return b""  # only read for its message: "could not be decoded"
        try:
            return read_body(resp, MAX_ANSWER)
        except BodyTooLarge:
            raise RegistryRefused(
                f"the registry's answer to the {what} is larger than {MAX_ANSWER >> 20} MiB "
                "(the most the uploader reads)",
                "check that atlas_url points at an Atlas-compatible registry",
            ) from None
        except BadEncoding as exc:
            raise RegistryRefused(
                f"the registry's answer to the {what} cannot be read: {exc}",
                "check that atlas_url points at an Atlas-compatible registry",
            ) from None

    def _same_origin(self, url: str) -> bool:
        try:
            parts = urlsplit(url)
            return (parts.scheme, parts.hostname, parts.port) == self._origin
        except ValueError:
            return False

    def _json(self, answer: Answer, what: str) -> object:
        try:
            return first_json(answer.content)
        except ValueError:
            raise RegistryRefused(
                f"the registry's answer to the {what} is not JSON ({answer.status})",
                "check that atlas_url points at an Atlas-compatible registry",
            ) from None

    def _status_error(
        self, status: int, reason: str, content: bytes, what: str, tries: str = ""
    ) -> AtlasCIError:
        if status == 403:
            # The namespace is the slug's first part: a user, or an organization to join.
            namespace = self.settings.user
            return AuthError(
                f"permission denied (403) during the {what}: {errors_text(content)}",
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
            detail = errors_text(content)
            return RegistryRefused(
                f"the registry refused the {what}: {detail}",
                "fix what the registry names and re-run",
            )
        if status == 429:
            return RegistryUnavailable(
                f"the registry kept refusing the {what} as too many requests (429){tries}",
                "the registry is rate limiting; try again later or raise --retries/--max-wait",
            )
        if status >= 500:
            return RegistryUnavailable(
                f"the registry failed the {what}: {status} {reason}{tries}",
                "the registry is failing; try again later",
            )
        return RegistryRefused(f"{what}: {status} {reason}", "see the registry's documentation")


def _answer(resp: requests.Response, content: bytes) -> Answer:
    return Answer(resp.status_code, printable(resp.reason or "", 80), resp.headers, content)


def _redirect_target(method: str, url: str, location: str) -> str:
    """Where a redirect points; only an absolute http(s) address is ever followed."""
    try:
        target = urljoin(url, location)
        parts = urlsplit(target)
        usable = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 - raises on a port that is not a number or out of range
    except ValueError:
        usable, target = False, ""
    if not usable:
        scheme = target.partition(":")[0] if ":" in target else ""
        odd = scheme.isalnum() and scheme not in ("http", "https")
        shown = f"a {scheme}: address" if odd else "an unusable address"
        raise RegistryRefused(
            f"the registry redirected {method} {redact_url(url)} to {shown}; only http(s) "
            "redirects are followed",
            "set atlas_url to the registry's final address",
        )
    return target
