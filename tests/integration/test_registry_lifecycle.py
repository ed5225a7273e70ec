"""Starting, stopping and restarting the server process."""

from __future__ import annotations

import hashlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest

from tests.integration.registry_api import (
    TIMEOUT,
    api,
    create_artifact,
    create_version,
    publish,
    search,
)
from tests.registry_proc import REPO_ROOT, RegistryProcess


def test_data_survives_a_restart(registry: RegistryProcess) -> None:
    create_artifact(registry)
    first, second = os.urandom(100_000), os.urandom(5)
    publish(registry, first, metadata={"k": "v"})
    publish(registry, second)
    pending = create_version(registry)

    registry.restart()

    assert api(registry, "GET", "/api/v1/artifacts/u/n").status_code == 200
    assert [v["version"] for v in search(registry, version="any")] == [2, 1]
    assert api(registry, "GET", "/api/v1/artifacts/u/n/t/1/file").content == first
    assert create_version(registry, file=False)["version"] == 4
    # The upload URL handed out before the restart still works.
    path = urllib.parse.urlsplit(pending["upload_path"]).path
    put = http.client.HTTPConnection("127.0.0.1", registry.port, timeout=TIMEOUT)
    try:
        put.request("PUT", path, body=b"late")
        assert put.getresponse().status == 200
    finally:
        put.close()
    [three] = search(registry, version="3")
    assert three["sha256"] == hashlib.sha256(b"late").hexdigest()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_exits_0(registry: RegistryProcess, sig: int) -> None:
    assert api(registry, "GET", "/api/v1/authenticate").status_code == 200
    assert registry.stop(sig) == 0
    assert "stopped" in registry.stderr_text()


def _upload_in_flight(registry: RegistryProcess, data: bytes) -> socket.socket:
    """A connection that has sent a PUT's headers and the first 100 kB of ``data``, once the
    server is reading its body."""
    create_artifact(registry)
    version = create_version(registry)
    path = urllib.parse.urlsplit(version["upload_path"]).path
    sock = socket.create_connection(("127.0.0.1", registry.port), timeout=TIMEOUT)
    sock.sendall(
        f"PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\n\r\n".encode()
        + data[:100_000]
    )
    # The server is reading the body once the upload's temp file exists.
    deadline = time.monotonic() + TIMEOUT
    while not list((registry.data / "tmp").glob("upload-*")):
        assert time.monotonic() < deadline, "the server never started the upload"
        time.sleep(0.01)
    return sock


def test_stop_lets_an_upload_in_flight_finish_and_refuses_new_connections(
    registry: RegistryProcess,
) -> None:
    data = os.urandom(300_000)
    sock = _upload_in_flight(registry, data)
    try:
        assert registry.process is not None
        process = registry.process
        process.send_signal(signal.SIGTERM)
        assert _refuses_connections_soon(registry.port)
        assert process.poll() is None  # still waiting for the upload

        sock.sendall(data[100_000:])
        head = sock.recv(65536)
        assert head.startswith(b"HTTP/1.1 200 "), head
        assert b"connection: close" in head.lower()
    finally:
        sock.close()
    assert registry.wait() == 0


def test_a_second_signal_while_draining_exits_at_once_with_128_plus_its_number(
    registry: RegistryProcess,
) -> None:
    sock = _upload_in_flight(registry, os.urandom(300_000))
    try:
        assert registry.process is not None
        process = registry.process
        process.send_signal(signal.SIGTERM)
        assert _refuses_connections_soon(registry.port)
        assert process.poll() is None  # draining: the upload has not finished
        process.send_signal(signal.SIGINT)
        assert registry.wait() == 128 + signal.SIGINT
        assert "stopped" not in registry.stderr_text()  # it did not wait for the upload
    finally:
        sock.close()


def _refuses_connections_soon(port: int, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()
        except (ConnectionRefusedError, ConnectionResetError):
            return True  # refused, or reset by a listener that closed with it queued
        time.sleep(0.02)
    return False


def test_an_idle_keep_alive_connection_does_not_delay_stop(registry: RegistryProcess) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", registry.port, timeout=TIMEOUT)
    try:
        conn.request("GET", "/api/v1/authenticate", headers=registry.headers)
        assert conn.getresponse().read()
        assert registry.stop() == 0
        # The server closed the idle connection rather than waiting out the shutdown grace
        # for it: the client reads EOF, and the log says every connection was closed.
        assert conn.sock is not None
        conn.sock.settimeout(TIMEOUT)
        assert conn.sock.recv(1) == b""
        log = registry.stderr_text()
        assert "still open" not in log
        assert log.rstrip().endswith("stopped"), log[-300:]
    finally:
        conn.close()


class _NoTokenRegistry(RegistryProcess):
    def command(self) -> list[str]:
        return [arg for arg in super().command() if not arg.startswith("--token")]


def test_without_a_token_one_is_generated_and_shown_once(tmp_path: Path) -> None:
    with _NoTokenRegistry(tmp_path / "data") as registry:
        deadline = time.monotonic() + 5
        while "ATLAS_TOKEN=" not in registry.stderr_text() and time.monotonic() < deadline:
            time.sleep(0.02)
        line = next(x for x in registry.stderr_text().splitlines() if "ATLAS_TOKEN=" in x)
        registry.token = line.rsplit("ATLAS_TOKEN=", 1)[1].strip()
        assert len(registry.token) >= 32
        assert api(registry, "GET", "/api/v1/authenticate").status_code == 200
    assert registry.stderr_text().count(registry.token) == 2  # the one line, shown once


def test_an_unusable_port_exits_with_a_config_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [
                *(sys.executable, "-m", "atlas_ci", "serve"),
                *("--port", str(port), "--token", "t", "--data", str(tmp_path / "d")),
            ],
            capture_output=True,
            text=True,
            timeout=15,
            cwd=REPO_ROOT,
            check=False,
        )
    assert result.returncode == 2
    assert result.stdout == ""
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_a_second_server_on_the_data_keeps_the_firsts_upload_and_foreign_files(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    with RegistryProcess(data) as first:
        create_artifact(first)
        version = create_version(first)
        path = urllib.parse.urlsplit(version["upload_path"]).path
        body = os.urandom(200_000)
        tmp = data / "tmp"
        foreign = tmp / "notes.txt"
        foreign.write_bytes(b"not the registry's")
        (tmp / "upload-keep").mkdir()  # not a file: left alone whatever its name
        stale = tmp / "upload-99-deadbeef"  # our naming, no server holds it: a crash's
        stale.write_bytes(b"half")
        sock = socket.create_connection(("127.0.0.1", first.port), timeout=TIMEOUT)
        try:
            sock.sendall(
                f"PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                + body[:50_000]
            )
            deadline = time.monotonic() + TIMEOUT
            while not list(tmp.glob(f"upload-{version['version']}-*")):
                assert time.monotonic() < deadline, "the first server never started the upload"
                time.sleep(0.01)

            with RegistryProcess(data, token=first.token) as second:
                assert api(second, "GET", "/api/v1/authenticate").status_code == 200
                assert foreign.read_bytes() == b"not the registry's"
                assert (tmp / "upload-keep").is_dir()
                assert not stale.exists()
                assert list(tmp.glob(f"upload-{version['version']}-*"))

                sock.sendall(body[50_000:])
                head = sock.recv(65536)
                assert head.startswith(b"HTTP/1.1 200 "), head
                got = api(second, "GET", "/api/v1/artifacts/u/n/t/1/file")
                assert got.content == body
        finally:
            sock.close()
        assert "internal error" not in first.stderr_text()
