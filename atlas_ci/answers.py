"""What the registry's answers mean: the failures they report, the version objects they
hold, and the first JSON value of a body (atlas-wire §3 to §4, §10, §11).

Nothing here speaks HTTP: the flow's recovery code imports these before the HTTP stack is
(the hash of a file starts first).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from atlas_ci.errors import RegistryRefused, RegistryUnavailable
from atlas_ci.redaction import redact, register_url

EXTENSIONS_HEADER = "X-Atlas-Extensions"
# What atlas-go's checkResp takes as success; another 2xx (203, 206, ...) is not the
# registry the contract describes (a proxy's page, a partial answer).
SUCCESS_STATUSES = frozenset({200, 201, 202, 204})
IDEMPOTENCY_EXTENSION = "idempotency-key"
IDEMPOTENCY_HEADER = "Idempotency-Key"
WRITE_CHECK_EXTENSION = "write-check"
"""atlas-wire §12: the registry answers ``GET /api/v1/namespaces/{ns}/write-access``."""


def printable(text: str, limit: int) -> str:
    """``text`` fit for a log line: no control or format characters (a registry's words
    could hold terminal escapes or a bidi override), at most ``limit`` characters."""
    return "".join(c if c.isprintable() else "?" for c in text[:limit])


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

    versions: list[Mapping[str, object]]
    pending_listed: bool


@dataclass(frozen=True)
class Version:
    """The part of a version object the flow uses."""

    version: int
    upload_path: str | None
    raw: Mapping[str, object]


def first_json(body: bytes) -> object:
    """The first JSON value of ``body`` (atlas-wire §4: trailing data is ignored).

    A registry's words, untrusted: callers narrow the value with ``isinstance``. ValueError
    for anything else, nesting too deep for the parser included.
    """
    text = body.decode("utf-8", errors="replace").lstrip()
    try:
        value, _ = json.JSONDecoder().raw_decode(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    return value


@dataclass(frozen=True)
class Answer:
    """A registry's answer, its body read whole (within :data:`MAX_ANSWER`)."""

    status: int
    reason: str
    headers: Mapping[str, str]
    content: bytes


def extensions_of(headers: Mapping[str, str]) -> frozenset[str]:
    """The tokens of ``X-Atlas-Extensions`` (atlas-wire §11), lower case."""
    value = headers.get(EXTENSIONS_HEADER) or ""
    return frozenset(t.strip().lower() for t in value.split(",") if t.strip())


def first_json_or_none(content: bytes) -> object:
    try:
        return first_json(content)
    except ValueError:
        return None


def errors_text(content: bytes) -> str:
    try:
        body = first_json(content)
    except ValueError:
        body = None
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, list) and errors:
        text = ", ".join(str(e) for e in errors)
        return printable(redact(" ".join(text.split())), 500)
    return "its error body could not be decoded"


def parse_search(body: object) -> SearchAnswer:
    """The search's answer (atlas-wire §10); every upload_path in it is registered as a secret."""
    listed = body.get("versions") if isinstance(body, dict) else None
    versions: list[Mapping[str, object]] = (
        [v for v in listed if isinstance(v, dict)] if isinstance(listed, list) else []
    )
    if not isinstance(body, dict) or not isinstance(listed, list) or len(versions) != len(listed):
        raise RegistryRefused(
            "the registry's search answer has no list of versions",
            "check that atlas_url points at an Atlas-compatible registry",
        )
    for v in versions:
        for key, value in v.items():
            if str(key).lower() == "upload_path" and isinstance(value, str) and value:
                register_url(value)  # a pending version's upload URL is a credential
    return SearchAnswer(versions, body.get("pending_listed") is True)


def parse_version(body: object, *, file: bool) -> Version:
    """The version POST's answer: flat (the contract) or wrapped in ``{"version": {...}}``."""
    hint = "the registry does not answer as atlas-wire.md §3.5 says; check atlas_url"
    if not isinstance(body, dict):
        raise RegistryRefused("the version answer is not a JSON object", hint)
    fields: dict[str, object] = {str(k).lower(): v for k, v in body.items()}
    wrapped = fields.get("version")
    if isinstance(wrapped, dict):
        fields = {str(k).lower(): v for k, v in wrapped.items()}
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
        try:
            parts = urlsplit(upload_path)
            absolute = parts.scheme in ("http", "https") and bool(parts.hostname)
            parts.port  # noqa: B018 - raises on a port that is not a number or out of range
        except ValueError:  # "http://[nonsense", "http://h:99999999": not a URL at all
            absolute = False
        if not absolute:
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
