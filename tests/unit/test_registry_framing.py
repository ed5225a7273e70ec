"""Request framing rules and the header deadline, without a server."""

from __future__ import annotations

import email.message
import http.client
import io
import socket
import time

import pytest

from atlas_ci.registry.connections import DeadlineIO, HeaderTimeout, refusal
from atlas_ci.registry.framing import (
    FramingError,
    LineRecorder,
    body_length,
    check_header_lines,
    check_request_line,
)


def _headers(*pairs: tuple[str, str]) -> email.message.Message:
    message = email.message.Message()
    for name, value in pairs:
        message[name] = value
    return message


def test_no_framing_header_means_no_body() -> None:
    assert body_length(_headers()) is None
    assert body_length(_headers(("Content-Length", "0"))) == 0
    assert body_length(_headers(("Content-Length", " 0012 "))) == 12


@pytest.mark.parametrize(
    ("pairs", "status"),
    [
        ((("Transfer-Encoding", "chunked"),), 411),
        ((("Transfer-Encoding", "identity"),), 411),
        ((("Transfer-Encoding", "chunked"), ("Content-Length", "5")), 400),
        ((("Content-Length", "5"), ("Content-Length", "5")), 400),
        ((("Content-Length", "5"), ("Content-Length", "6")), 400),
        ((("Content-Length", "5, 5"),), 400),
        ((("Content-Length", "-1"),), 400),
        ((("Content-Length", "+1"),), 400),
        ((("Content-Length", "0x10"),), 400),
        ((("Content-Length", "\u0661"),), 400),  # a digit, but not an ASCII one
        ((("Content-Length", ""),), 400),
        ((("Content-Length", str(2**63)),), 413),
        ((("Content-Length", "9" * 5000),), 413),
    ],
)
def test_framing_in_doubt_is_refused(pairs: tuple[tuple[str, str], ...], status: int) -> None:
    with pytest.raises(FramingError) as caught:
        body_length(_headers(*pairs))
    assert caught.value.status == status


def test_the_largest_length_is_2_to_63_minus_1() -> None:
    assert body_length(_headers(("Content-Length", str(2**63 - 1)))) == 2**63 - 1


def test_well_formed_header_lines_pass() -> None:
    check_header_lines(
        [
            b"Host: x\r\n",
            b"X-Empty:\r\n",
            b"X-Tab:\tv\r\n",
            b"X-Latin: caf\xe9\r\n",
            b"LF: x\n",
            b"\r\n",
        ]
    )


@pytest.mark.parametrize(
    "line",
    [
        b"Content-Length : 5\r\n",
        b"Content-Length\t: 5\r\n",
        b" folded\r\n",
        b"\tfolded\r\n",
        b"X: a\rContent-Length: 5\r\n",
        b"X: a\x00b\r\n",
        b"X: a\x7fb\r\n",
        b"no colon\r\n",
        b": no name\r\n",
        b"X(y): z\r\n",
    ],
)
def test_malformed_header_lines_are_refused(line: bytes) -> None:
    with pytest.raises(FramingError) as caught:
        check_header_lines([b"Host: x\r\n", line, b"\r\n"])
    assert caught.value.status == 400


def test_request_line_rules() -> None:
    check_request_line(b"GET /a%20b?c=d HTTP/1.1\r\n", "HTTP/1.1", "/a%20b?c=d")
    for raw, version, target in [
        (b"GET /x\r\n", "HTTP/0.9", "/x"),
        (b"GET /\xff HTTP/1.1\r\n", "HTTP/1.1", "/\xff"),
        (b"GET /a\rb HTTP/1.1\r\n", "HTTP/1.1", "/a\rb"),
        (b"GET /a\x00 HTTP/1.1\r\n", "HTTP/1.1", "/a\x00"),
    ]:
        with pytest.raises(FramingError):
            check_request_line(raw, version, target)


def test_the_recorder_keeps_each_line_it_hands_out() -> None:
    recorder = LineRecorder(io.BufferedReader(io.BytesIO(b"A: b\r\nC: d\r\n\r\nbody")))
    assert recorder.readline(100) == b"A: b\r\n"
    assert recorder.readline() == b"C: d\r\n"
    assert recorder.lines == [b"A: b\r\n", b"C: d\r\n"]


def test_a_deadline_ends_a_read_that_each_byte_would_keep_alive() -> None:
    ours, theirs = socket.socketpair()
    try:
        stream = DeadlineIO(ours, idle_timeout=30)
        theirs.sendall(b"GE")
        buffer = bytearray(10)
        stream.deadline = time.monotonic() + 30
        assert stream.readinto(buffer) == 2
        stream.deadline = None
        theirs.sendall(b"T")
        assert stream.readinto(buffer) == 1
        assert ours.gettimeout() == 30  # no deadline: the idle timeout again
        stream.deadline = time.monotonic() + 0.2
        with pytest.raises(HeaderTimeout):
            stream.readinto(buffer)  # nothing more comes within the deadline
    finally:
        ours.close()
        theirs.close()


def test_past_the_deadline_a_read_fails_even_with_data_waiting() -> None:
    ours, theirs = socket.socketpair()
    try:
        stream = DeadlineIO(ours, idle_timeout=30)
        theirs.sendall(b"GET")
        stream.deadline = time.monotonic() - 1
        with pytest.raises(HeaderTimeout):
            stream.readinto(bytearray(10))
    finally:
        ours.close()
        theirs.close()


def test_the_refusal_is_a_whole_503_that_closes() -> None:
    answer = refusal(7, retry_after=1)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 ")
    assert b"\r\nRetry-After: 1\r\n" in head
    assert b"\r\nConnection: close" in head
    assert f"Content-Length: {len(body)}".encode() in head
    assert b"limit of 7 connections" in body


def test_the_recorder_refuses_headers_past_their_total_size() -> None:
    line = b"X-Big: " + b"v" * 1000 + b"\r\n"
    recorder = LineRecorder(io.BufferedReader(io.BytesIO(line * 100)), max_bytes=5 * len(line))
    for _ in range(5):
        assert recorder.readline(65537) == line
    with pytest.raises(http.client.LineTooLong):
        recorder.readline(65537)
