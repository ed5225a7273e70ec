"""Uploads to the binstore, search over ready versions, downloads."""

from __future__ import annotations

import hashlib
import os
import socket
import struct
import threading
import time
import urllib.parse
from pathlib import Path

import requests

from tests.integration.registry_api import (
    TIMEOUT,
    api,
    create_artifact,
    create_version,
    publish,
    put_file,
    search,
)
from tests.registry_proc import RegistryProcess


def _raw_put(upload_path: str, head_extra: str, body: bytes) -> socket.socket:
    """Open a socket and send a PUT head plus ``body``; the caller reads and closes."""
    url = urllib.parse.urlsplit(upload_path)
    assert url.port is not None
    sock = socket.create_connection(("127.0.0.1", url.port), timeout=TIMEOUT)
    sock.sendall(
        f"PUT {url.path} HTTP/1.1\r\nHost: {url.netloc}\r\n{head_extra}\r\n".encode() + body
    )
    return sock


def _status_of(sock: socket.socket) -> int:
    head = b""
    while b"\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    return int(head.split(b" ", 2)[1])


def test_uploaded_file_downloads_byte_for_byte(registry: RegistryProcess) -> None:
    create_artifact(registry)
    data = os.urandom(3 * 1024 * 1024 + 17)  # several 1 MiB chunks and a remainder
    number = publish(registry, data)

    for path in ("/api/v1/artifacts/u/n/t/file", f"/api/v1/artifacts/u/n/t/{number}/file"):
        response = api(registry, "GET", path)
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "application/octet-stream"
        assert int(response.headers["Content-Length"]) == len(data)
        assert hashlib.sha256(response.content).hexdigest() == hashlib.sha256(data).hexdigest()

    [found] = search(registry)
    assert found["size"] == len(data)
    assert found["sha256"] == hashlib.sha256(data).hexdigest()


def test_an_empty_file_is_a_valid_upload(registry: RegistryProcess) -> None:
    create_artifact(registry)
    publish(registry, b"")
    with requests.Session() as session:  # one keep-alive connection for both downloads
        for _ in range(2):
            response = session.get(
                registry.url + "/api/v1/artifacts/u/n/t/file",
                headers=registry.headers,
                timeout=TIMEOUT,
            )
            assert response.status_code == 200
            assert response.content == b""
            assert response.headers.get("Connection", "").lower() != "close"
    assert "Traceback" not in registry.stderr_text()


def test_a_content_length_past_any_file_offset_is_413(registry: RegistryProcess) -> None:
    create_artifact(registry)
    version = create_version(registry)
    for length in (str(10**20), "9" * 5000):  # int() refuses the second one outright
        sock = _raw_put(version["upload_path"], f"Content-Length: {length}\r\n", b"")
        try:
            assert _status_of(sock) == 413
        finally:
            sock.close()
    assert "Traceback" not in registry.stderr_text()
    assert search(registry) == []


def test_file_download_is_404_without_a_ready_file(registry: RegistryProcess) -> None:
    create_artifact(registry)
    create_version(registry, file=False)  # v1: no file
    create_version(registry, file=True)  # v2: pending
    for path in (
        "/api/v1/artifacts/u/n/t/file",
        "/api/v1/artifacts/u/n/t/1/file",
        "/api/v1/artifacts/u/n/t/2/file",
        "/api/v1/artifacts/u/n/t/3/file",
        "/api/v1/artifacts/u/n/t/x/file",
        "/api/v1/artifacts/u/missing/t/file",
    ):
        response = api(registry, "GET", path)
        assert response.status_code == 404, path
        assert response.json()["errors"], path


def test_second_upload_to_a_ready_version_is_409(registry: RegistryProcess) -> None:
    create_artifact(registry)
    version = create_version(registry)
    assert put_file(version["upload_path"], b"first").status_code == 200
    again = put_file(version["upload_path"], b"second")
    assert again.status_code == 409
    assert again.json()["errors"]
    assert api(registry, "GET", "/api/v1/artifacts/u/n/t/file").content == b"first"


def test_upload_to_an_unknown_secret_is_404(registry: RegistryProcess) -> None:
    response = put_file(registry.url + "/binstore/not-a-secret", b"data")
    assert response.status_code == 404
    assert response.json()["errors"]


def test_put_without_content_length_is_411(registry: RegistryProcess) -> None:
    create_artifact(registry)
    version = create_version(registry)
    sock = _raw_put(version["upload_path"], "", b"")
    try:
        assert _status_of(sock) == 411
    finally:
        sock.close()
    chunked = requests.put(
        version["upload_path"], data=iter([b"abc", b"def"]), timeout=TIMEOUT
    )  # a generator body makes requests send Transfer-Encoding: chunked
    assert chunked.status_code == 411
    assert search(registry) == []


def test_short_upload_leaves_version_pending_until_a_whole_put(
    registry: RegistryProcess,
) -> None:
    create_artifact(registry)
    version = create_version(registry)
    data = os.urandom(200_000)

    sock = _raw_put(version["upload_path"], f"Content-Length: {len(data)}\r\n", data[:1000])
    sock.close()  # the client dies mid-body

    deadline = time.monotonic() + 5
    while "upload incomplete" not in registry.stderr_text() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "upload incomplete: 1000 of 200000 bytes" in registry.stderr_text()
    assert search(registry) == []
    assert search(registry, version="any") == []
    assert api(registry, "GET", "/api/v1/artifacts/u/n/t/file").status_code == 404
    assert list((registry.data / "tmp").iterdir()) == []

    assert put_file(version["upload_path"], data).status_code == 200
    [found] = search(registry)
    assert found["version"] == 1
    assert found["sha256"] == hashlib.sha256(data).hexdigest()


def test_stalled_upload_times_out_and_can_be_retried(tmp_path: Path) -> None:
    with RegistryProcess(tmp_path / "d", extra_args=["--timeout", "0.5"]) as registry:
        create_artifact(registry)
        version = create_version(registry)
        sock = _raw_put(version["upload_path"], "Content-Length: 10\r\n", b"12345")
        try:
            assert _status_of(sock) == 400  # answered after the read timed out
        finally:
            sock.close()
        assert search(registry) == []
        assert put_file(version["upload_path"], b"1234567890").status_code == 200
        assert len(search(registry)) == 1


def test_sixteen_concurrent_publishes_get_versions_1_to_16_intact(
    registry: RegistryProcess,
) -> None:
    create_artifact(registry)
    payloads = {i: os.urandom(50_000 + i) for i in range(16)}
    numbers: dict[int, int] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(16)

    def worker(i: int) -> None:
        try:
            barrier.wait(timeout=TIMEOUT)
            version = create_version(registry, metadata={"worker": str(i)})
            response = put_file(version["upload_path"], payloads[i])
            assert response.status_code == 200, response.text
            numbers[i] = version["version"]
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    assert sorted(numbers.values()) == list(range(1, 17))

    for i, number in numbers.items():
        body = api(registry, "GET", f"/api/v1/artifacts/u/n/t/{number}/file").content
        assert body == payloads[i], f"version {number} holds another file"
    found = search(registry, version="any")
    assert [v["version"] for v in found] == list(range(16, 0, -1))
    assert {v["version"]: v["metadata"]["worker"] for v in found} == {
        n: str(i) for i, n in numbers.items()
    }


def test_upload_sizes_around_the_chunk_size_round_trip(registry: RegistryProcess) -> None:
    create_artifact(registry)
    for size in (1, 1024 * 1024 - 1, 1024 * 1024, 1024 * 1024 + 1):
        data = os.urandom(size)
        number = publish(registry, data)
        assert api(registry, "GET", f"/api/v1/artifacts/u/n/t/{number}/file").content == data


def test_a_blob_of_the_wrong_size_is_a_500_not_a_wrong_file(registry: RegistryProcess) -> None:
    create_artifact(registry)
    data = os.urandom(2 * 1024 * 1024)
    number = publish(registry, data)
    [blob] = (registry.data / "files").iterdir()
    with blob.open("r+b") as f:  # the disk lost the end of the file
        f.truncate(1024 * 1024)

    for path in ("/api/v1/artifacts/u/n/t/file", f"/api/v1/artifacts/u/n/t/{number}/file"):
        response = api(registry, "GET", path)
        assert response.status_code == 500
        assert response.json() == {
            "errors": ["the file of u/n/t/1 is damaged in storage (wrong size)"]
        }
    assert "damaged" in registry.stderr_text()


def test_a_download_cut_half_way_is_logged_with_the_bytes_that_went(
    registry: RegistryProcess,
) -> None:
    create_artifact(registry)
    size = 32 << 20
    publish(registry, os.urandom(size))
    path = "/api/v1/artifacts/u/n/t/file"
    sock = socket.create_connection(("127.0.0.1", registry.port), timeout=TIMEOUT)
    try:
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: x\r\nX-Atlas-Token: {registry.token}\r\n\r\n".encode()
        )
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(1 << 16)
            assert chunk, "the registry closed before its headers ended"
            received += chunk
        # The log counts body bytes; so does this, from the end of the headers on.
        got = len(received.split(b"\r\n\r\n", 1)[1])
        while got < 1 << 20:
            chunk = sock.recv(1 << 16)
            assert chunk, "the registry closed before 1 MiB"
            got += len(chunk)
    finally:
        # A reset, not a polite close: the registry's next send fails at once.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    deadline = time.monotonic() + 10
    while not (lines := [x for x in registry.stderr_text().splitlines() if "connection lost" in x]):
        assert time.monotonic() < deadline, registry.stderr_text()
        time.sleep(0.05)
    [line] = lines
    assert f"GET {path} 200 " in line
    sent = int(line.split(" 200 ")[1].split("B ")[0])
    assert got <= sent < size, line
