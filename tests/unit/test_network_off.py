"""The tests' network is off (tests/conftest.py): only the loopback interface is reachable."""

from __future__ import annotations

import errno
import socket

import pytest
import requests


def test_a_connection_beyond_loopback_is_refused_at_once() -> None:
    with socket.socket() as sock, pytest.raises(OSError, match="network is off") as caught:
        sock.connect(("192.0.2.1", 80))  # TEST-NET-1: would hang, not fail, were it tried
    assert caught.value.errno == errno.ENETUNREACH
    with socket.socket(socket.AF_INET6) as sock:
        assert sock.connect_ex(("2001:db8::1", 80)) == errno.ENETUNREACH


def test_a_name_is_not_looked_up() -> None:
    with pytest.raises(socket.gaierror, match="network is off"):
        socket.getaddrinfo("atlas.example.com", 443)
    with pytest.raises(requests.ConnectionError):
        requests.get("https://atlas.example.com/api/v1/authenticate", timeout=5)


def test_loopback_still_works() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        with socket.create_connection(("localhost", port), timeout=5):
            pass
