"""The Atlas v1 API (atlas-wire §3): its calls, over the shared :class:`ApiSession`.

Every Atlas request the tool makes is made here; the session, deadline, retries, status
table and file PUT are :mod:`atlas_ci.api_session`'s. Errors leave this module as
:mod:`atlas_ci.errors` classes whose messages hold neither the token nor an upload URL.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from atlas_ci.answers import (
    IDEMPOTENCY_EXTENSION,
    IDEMPOTENCY_HEADER,
    WRITE_CHECK_EXTENSION,
    Ambiguous,
    Answer,
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
from atlas_ci.errors import RegistryRefused, RegistryUnavailable
from atlas_ci.retry import Tries
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


@dataclass(frozen=True)
class TokenInfo:
    """What ``GET /api/v1/authenticate`` told of the token (nothing, from Atlas itself)."""

    username: str | None = None
    read_only: bool = False
    write_check: bool = False
    """The registry announced the write-check extension (atlas-wire §12)."""


class AtlasClient(ApiSession):
    """One Atlas registry; methods named after the calls of atlas-wire §3."""

    _idempotency: bool | None = None

    def __enter__(self) -> AtlasClient:
        return self

    @property
    def idempotent(self) -> bool:
        """Whether the registry honours ``Idempotency-Key`` on the version POST.

        It says so on its 2xx API answers; one that does not say it (a mixed fleet behind a
        balancer, say) turns the extension off for the rest of the run.
        """
        return self._idempotency is True

    def _auth_headers(self, url: str) -> dict[str, str]:
        token = self.settings.token
        return {"X-Atlas-Token": token.reveal()} if token else {}

    def _answered(self, url: str, answer: Answer) -> None:
        if 200 <= answer.status < 300 and self._same_origin(url):
            announced = IDEMPOTENCY_EXTENSION in extensions_of(answer.headers)
            self._idempotency = announced and self._idempotency is not False

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
            raise self.status_error(403, "Forbidden", refusal.encode(), what)

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
