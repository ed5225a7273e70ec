"""Raw HTTP/1.1 exchanges over a socket, for tests that send what no client library would."""

from __future__ import annotations

import contextlib
import socket
from dataclasses import dataclass

TIMEOUT = 10.0


@dataclass(frozen=True)
class Answer:
    """One response as read off the wire."""

    status: int
    headers: dict[str, str]
    body: bytes


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (a reset counts as closing)."""
    received = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            received += chunk
    return received


def exchange(port: int, data: bytes) -> tuple[list[Answer], bytes]:
    """Send ``data`` on a new connection and read until the server closes it.

    Returns the responses parsed one after another (each framed by its Content-Length) and
    whatever bytes followed the last one that parsed.
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    try:
        sock.sendall(data)
        received = read_until_closed(sock)
    finally:
        sock.close()
    return split_answers(received)


def split_answers(received: bytes) -> tuple[list[Answer], bytes]:
    answers = []
    while b"\r\n\r\n" in received:
        head, _, rest = received.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        answers.append(Answer(status, headers, rest[:length]))
        received = rest[length:]
    return answers, received
