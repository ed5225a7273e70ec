"""Where one request ends: the request line, the header lines and the body's length.

A request the registry cannot frame without doubt is refused, and the connection it came on
is closed: a proxy in front may frame the same bytes differently (one ``Content-Length`` of
two, a ``Transfer-Encoding`` this server does not decode, a header line it reads as two), and
whatever this server would read as the next request might be another client's bytes or a
request smuggled past the proxy. So every :class:`FramingError` means "answer, then close".

Pure functions over bytes and parsed headers; the protocol layer (:mod:`.http`) calls them
before anything is routed.
"""

from __future__ import annotations

import http.client
import io
import re
from collections.abc import Sequence
from email.message import Message

INT64_MAX = 2**63 - 1
MAX_HEADER_BYTES = 64 << 10
"""All header lines of one request together; past this, 431 (http.client alone bounds only
each line, at 64 KiB, and their number, at 100: 6.4 MiB a connection)."""

# RFC 9110 field-name (a token), a colon straight after it, then a value of visible ASCII,
# spaces, tabs and obs-text. A line ends in CRLF (a bare LF is accepted, as most servers do).
_HEADER_LINE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t\x20-\x7e\x80-\xff]*\r?\n")
_REQUEST_TARGET = re.compile(r"[\x21-\x7e]+")
_DIGITS = re.compile(r"[0-9]+")


class FramingError(Exception):
    """The request cannot be framed safely: answer ``status`` and close the connection."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def check_request_line(raw: bytes, version: str, target: str) -> None:
    """The request line as received: CRLF-terminated, an HTTP version, an ASCII target."""
    if b"\r" in raw.rstrip(b"\r\n") or b"\x00" in raw:
        raise FramingError(400, "the request line holds a CR or NUL character")
    if version == "HTTP/0.9":
        # http.server reads "GET /path" as HTTP/0.9, which has no headers in the answer.
        raise FramingError(400, "the request line needs an HTTP version: METHOD /path HTTP/1.1")
    if not _REQUEST_TARGET.fullmatch(target):
        raise FramingError(
            400,
            "the request target must be printable ASCII; percent-encode other bytes "
            "(UTF-8, e.g. %C3%A9)",
        )


def check_header_lines(lines: Sequence[bytes]) -> None:
    """Each raw header line as received (the last one the empty line that ends them).

    Refused: a line that is not ``name: value`` (so the parser would drop it and every
    line after it), whitespace before the colon, a folded continuation line, a bare CR
    (another parser may split the line there), NUL or other control characters.
    """
    for line in lines:
        if line in (b"\r\n", b"\n"):
            break
        if not _HEADER_LINE.fullmatch(line):
            if line[:1] in (b" ", b"\t"):
                raise FramingError(400, "folded header lines (obs-fold) are not accepted")
            name = line.split(b":", 1)[0][:40].decode("ascii", "backslashreplace")
            raise FramingError(
                400,
                f"malformed header line starting {name!r}: write 'Name: value', with no "
                "space before the colon and no control characters",
            )


def check_host(headers: Message, version: str) -> None:
    """HTTP/1.1 needs exactly one ``Host`` (RFC 9112, section 3.2): a request with none, or
    with two, is answered 400. Two could name different hosts to a proxy and to this server,
    which builds ``upload_path`` from it. HTTP/1.0 may leave it out, never send it twice."""
    hosts = headers.get_all("Host") or []
    if len(hosts) > 1 or (not hosts and version != "HTTP/1.0"):
        raise FramingError(400, "send exactly one Host header (RFC 9112, section 3.2)")


def body_length(headers: Message) -> int | None:
    """The request body's length from its framing headers; None when it has no body.

    400 for ``Transfer-Encoding`` together with ``Content-Length`` and for a repeated or
    malformed ``Content-Length``; 411 for ``Transfer-Encoding`` alone (no body is decoded
    here); 413 past 2^63 - 1, which no file offset can reach.
    """
    encodings = headers.get_all("Transfer-Encoding") or []
    lengths = headers.get_all("Content-Length") or []
    if encodings and lengths:
        raise FramingError(
            400, "Content-Length and Transfer-Encoding together are ambiguous; send one"
        )
    if encodings:
        raise FramingError(
            411, "chunked or encoded request bodies are not supported; send Content-Length"
        )
    if not lengths:
        return None
    if len(lengths) > 1:
        raise FramingError(400, "send Content-Length once")
    raw = lengths[0].strip()
    if not _DIGITS.fullmatch(raw):
        raise FramingError(400, "Content-Length must be one non-negative integer")
    digits = raw.lstrip("0") or "0"
    # int() refuses more than 4300 digits; anything over 19 is past 2^63 - 1 anyway.
    if len(digits) > 19 or int(digits) > INT64_MAX:
        raise FramingError(413, "the body is larger than the registry can store")
    return int(digits)


class LineRecorder:
    """Hands ``readline`` through to ``stream`` and keeps each line it returned.

    The header parser is given this instead of the connection's reader, so the lines it
    read can be checked as received (:func:`check_header_lines`). Past ``max_bytes`` in all
    it raises :class:`http.client.LineTooLong`, which the parser answers with 431.
    """

    def __init__(self, stream: io.BufferedIOBase, max_bytes: int = MAX_HEADER_BYTES) -> None:
        self._stream = stream
        self._left = max_bytes
        self.lines: list[bytes] = []

    def readline(self, limit: int = -1) -> bytes:
        if limit < 0 or limit > self._left + 1:
            limit = self._left + 1
        line = self._stream.readline(limit)
        self._left -= len(line)
        if self._left < 0:
            raise http.client.LineTooLong(f"headers longer than {MAX_HEADER_BYTES} bytes in all")
        self.lines.append(line)
        return line
