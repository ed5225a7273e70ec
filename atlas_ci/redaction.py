"""Secrets that cannot leak by accident, and the redactor every output line passes through.

A :class:`Secret` prints as ``***`` in ``str``, ``repr`` and f-strings; only
:meth:`Secret.reveal` gives the value, and the one caller that needs it is the HTTP layer.
Every value wrapped in a Secret is also registered with the process-wide redactor, so a
server that echoes the token back in an error body still cannot make us print it.

Redaction runs on text before it is encoded for an output (HTML for the job summary, JSON for
``--json``, the workflow-command escapes, the outputs file); :func:`redact_data` does it for a
structure about to be serialised. A secret is also registered in the forms those encoders
(and a server quoting it back) would give it: HTML-escaped, JSON-escaped, percent-encoded,
workflow-escaped and as Python's ``repr`` shows it in a traceback, so none of them can slip
through a line that was encoded first.
"""

from __future__ import annotations

import html
import json
import re
import threading
from urllib.parse import quote, quote_plus, unquote, urlsplit, urlunsplit

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
        forms = _encoded_forms(value)
        with _lock:
            _secrets.update(forms)


def _encoded_forms(value: str) -> set[str]:
    """``value`` and every form an output encoder or an echoing server could turn it into."""
    forms = {
        value,
        html.escape(value),
        html.escape(value, quote=False),
        html.escape(value).replace("&#x27;", "&#39;"),
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        repr(value)[1:-1],
        repr(value + '"')[1:-2],  # repr picks the other quote when the text holds one
        # surrogatepass: a value with a lone surrogate must still be registered, not crash.
        quote(value, safe="", errors="surrogatepass"),
        quote(value, errors="surrogatepass"),
        quote_plus(value, errors="surrogatepass"),
    }
    # GitHub workflow commands: data escapes %, CR, LF; property values also : and ,.
    data = value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    forms |= {data, data.replace(":", "%3A").replace(",", "%2C")}
    # Both cases of percent escapes: encoders differ (%2f, %2F).
    forms |= {_lower_escapes(form) for form in forms}
    return {form for form in forms if form}


_ESCAPE = re.compile(r"%[0-9A-F]{2}")


def _lower_escapes(text: str) -> str:
    return _ESCAPE.sub(lambda m: m.group(0).lower(), text)


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


def redact_data(data: object) -> object:
    """A copy of a JSON-like structure with every secret cut from its strings and keys.

    For output that is about to be serialised: redacting the JSON text afterwards would miss
    a secret the encoder escaped (a ``"`` or ``\\`` in it).
    """
    if isinstance(data, str):
        return redact(data)
    if isinstance(data, dict):
        return {redact_data(key): redact_data(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [redact_data(item) for item in data]
    return data


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
