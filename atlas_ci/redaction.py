"""Secrets that cannot leak by accident, and the redactor every output line passes through.

A :class:`Secret` prints as ``***`` in ``str``, ``repr`` and f-strings; only
:meth:`Secret.reveal` gives the value, and the one caller that needs it is the HTTP layer.
Every value wrapped in a Secret is also registered with the process-wide redactor, so a
server that echoes the token back in an error body still cannot make us print it.
"""

from __future__ import annotations

import re
import threading
from urllib.parse import unquote, urlsplit, urlunsplit

_MASK = "***"
_lock = threading.Lock()
_secrets: set[str] = set()
# Binstore-style upload paths: the secret is the path (and a presigned query string).
_URL_RE = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s\"'<>]+")


class Secret:
    """A string value that never shows itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        register(value)

    def reveal(self) -> str:
        """The real value: only for the header that carries it."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __str__(self) -> str:
        return _MASK

    def __repr__(self) -> str:
        return f"Secret({_MASK})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def register(value: str) -> None:
    """Remember a value that must be cut from every line we print."""
    # Very short values would blank out ordinary words; they are still never printed on
    # purpose, so only the accidental-echo protection is skipped for them.
    if len(value) >= 4:
        with _lock:
            _secrets.add(value)


def register_url(url: str) -> None:
    """Remember an upload URL and every part of it that works as a credential.

    A binstore that quotes the request back ("cannot store at /binstore/<secret>?sig=...")
    must not get the path, the query or a signature printed either.
    """
    register(url)
    try:
        parts = urlsplit(url)
    except ValueError:
        return
    # Derived pieces only when long enough to be a secret, not a word like "upload".
    pieces = [parts.path, parts.path.rstrip("/").rsplit("/", 1)[-1], parts.query]
    for pair in parts.query.split("&") if parts.query else ():
        value = pair.partition("=")[2]
        pieces += [value, unquote(value)]
    userinfo = parts.netloc.rpartition("@")[0]
    pieces += [userinfo, userinfo.partition(":")[2]]
    for piece in pieces:
        if len(piece) >= 8:
            register(piece)


def redact(text: str) -> str:
    """Replace every registered secret in ``text`` by ``***``."""
    with _lock:
        values = sorted(_secrets, key=len, reverse=True)
    for value in values:
        if value in text:
            text = text.replace(value, _MASK)
    return text


def redact_url(url: str) -> str:
    """A URL fit for a log line: no user info, no query string (it may be presigned)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    try:
        port = parts.port
    except ValueError:  # out of range or not a number: show it as written, minus user info
        return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))
    host = parts.hostname or ""
    if port is not None:
        host = f"{host}:{port}"
    if ":" in (parts.hostname or "") and not host.startswith("["):
        host = f"[{parts.hostname}]" + (f":{port}" if port else "")
    query = _MASK if parts.query else ""
    return urlunsplit((parts.scheme, host, parts.path, query, ""))


def origin_of(url: str) -> str:
    """``scheme://host:port`` only: what a log line may say of an upload URL."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{parts.hostname}:{port}"
