"""send_range (atlas_ci/registry/sendfile.py): a file's byte range onto a real TCP connection."""

from __future__ import annotations

import errno
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

from atlas_ci.registry import sendfile
from atlas_ci.registry.sendfile import send_range

DATA = os.urandom((8 << 20) + 123)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected TCP pair on 127.0.0.1: (the server's side, with a 5 s timeout, the client's)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname(), timeout=10)
        server, _ = listener.accept()
    server.settimeout(5.0)
    yield server, client
    server.close()
    client.close()


@pytest.fixture
def blob(tmp_path: Path) -> Iterator[BinaryIO]:
    path = tmp_path / "blob"
    path.write_bytes(DATA)
    with path.open("rb", buffering=0) as file:
        yield file


def _read_all(sock: socket.socket, into: bytearray) -> threading.Thread:
    def run() -> None:
        while chunk := sock.recv(1 << 20):
            into.extend(chunk)

    reader = threading.Thread(target=run, daemon=True)
    reader.start()
    return reader


def _send_timeout(sock: socket.socket) -> tuple[int, int]:
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.calcsize("ll"))
    seconds, micro = struct.unpack("ll", raw)
    return seconds, micro


@pytest.mark.parametrize(("offset", "count"), [(0, len(DATA)), (1000, 5 << 20), (len(DATA) - 1, 1)])
def test_the_range_arrives_and_every_byte_is_counted(
    pair: tuple[socket.socket, socket.socket], blob: BinaryIO, offset: int, count: int
) -> None:
    server, client = pair
    received = bytearray()
    reader = _read_all(client, received)
    counted: list[int] = []
    assert send_range(server, blob, offset, count, counted.append) == count
    server.shutdown(socket.SHUT_WR)
    reader.join(10)
    assert bytes(received) == DATA[offset : offset + count]
    assert sum(counted) == count
    # The connection is as it was: its timeout (non-blocking underneath), no SO_SNDTIMEO.
    assert server.gettimeout() == 5.0
    assert _send_timeout(server) == (0, 0)


def test_a_file_shorter_than_asked_returns_what_there_was(
    pair: tuple[socket.socket, socket.socket], blob: BinaryIO
) -> None:
    server, client = pair
    received = bytearray()
    reader = _read_all(client, received)
    total = send_range(server, blob, len(DATA) - 10, 100, lambda n: None)
    server.shutdown(socket.SHUT_WR)
    reader.join(10)
    assert total == 10
    assert bytes(received) == DATA[-10:]


def test_a_client_that_takes_nothing_times_out_with_what_went_counted(
    pair: tuple[socket.socket, socket.socket], blob: BinaryIO
) -> None:
    server, _client = pair  # the client never reads
    server.settimeout(0.3)
    counted: list[int] = []
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        send_range(server, blob, 0, len(DATA), counted.append)
    assert time.monotonic() - started < 5
    assert 0 < sum(counted) < len(DATA)  # the socket buffers took some
    assert server.gettimeout() == 0.3
    assert _send_timeout(server) == (0, 0)


def test_a_client_that_leaves_is_an_error_with_what_went_counted(
    pair: tuple[socket.socket, socket.socket], blob: BinaryIO
) -> None:
    server, client = pair
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    counted: list[int] = []

    def leave() -> None:
        assert client.recv(1 << 16)  # the send is under way
        time.sleep(0.2)
        client.close()  # a reset, with megabytes unread

    threading.Thread(target=leave, daemon=True).start()
    with pytest.raises(ConnectionError):
        send_range(server, blob, 0, len(DATA), counted.append)
    assert 0 < sum(counted) < len(DATA)


def test_a_file_the_kernel_cannot_sendfile_goes_by_read_and_send(
    pair: tuple[socket.socket, socket.socket], blob: BinaryIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object) -> int:
        raise OSError(errno.EINVAL, "Invalid argument")

    # socket.sendfile (the fallback) looks os.sendfile up when called, so it gives up too
    # and reads and sends instead.
    monkeypatch.setattr(sendfile.os, "sendfile", refuse)
    server, client = pair
    received = bytearray()
    reader = _read_all(client, received)
    counted: list[int] = []
    assert send_range(server, blob, 7, 3 << 20, counted.append) == 3 << 20
    server.shutdown(socket.SHUT_WR)
    reader.join(10)
    assert bytes(received) == DATA[7 : 7 + (3 << 20)]
    assert sum(counted) == 3 << 20
