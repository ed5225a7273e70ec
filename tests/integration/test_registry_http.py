"""HTTP behaviour: errors as JSON, keep-alive, headers clients send, size limits."""

from __future__ import annotations

import http.client
import json
import socket

import requests

from tests.integration.registry_api import TIMEOUT, api, create_artifact, create_version
from tests.registry_proc import RegistryProcess


def _connection(registry: RegistryProcess) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", registry.port, timeout=TIMEOUT)


def test_unknown_path_is_404_json(registry: RegistryProcess) -> None:
    for path in ("/", "/nothing", "/api/v2/authenticate", "/api/v1/artifacts/u", "/binstore"):
        response = api(registry, "GET", path)
        assert response.status_code == 404, path
        assert response.headers["Content-Type"] == "application/json"
        assert response.json()["errors"]


def test_wrong_method_is_405_json_with_allow(registry: RegistryProcess) -> None:
    for method, path in [
        ("DELETE", "/api/v1/artifacts/u/n"),
        ("PATCH", "/api/v1/authenticate"),
        ("GET", "/api/v1/artifacts"),
        ("GET", "/binstore/abc"),
        ("BREW", "/api/v1/authenticate"),
    ]:
        response = api(registry, method, path)
        assert response.status_code == 405, (method, path)
        assert response.json()["errors"]
        assert response.headers["Allow"]


def test_keep_alive_serves_many_requests_on_one_connection(registry: RegistryProcess) -> None:
    create_artifact(registry)
    conn = _connection(registry)
    try:
        calls = [
            ("GET", "/api/v1/authenticate", None, 200),
            ("GET", "/api/v1/artifacts/u/missing", None, 404),
            ("POST", "/api/v1/artifacts/u/n/t", b'{"artifact_version": {"file": false}}', 201),
            ("POST", "/api/v1/artifacts/u/n/t", b"{broken", 422),
            ("GET", "/nothing", None, 404),
            ("GET", "/api/v1/artifacts/u/n/t/search?version=any", None, 200),
        ]
        for method, path, body, status in calls:
            conn.request(method, path, body=body, headers=registry.headers)
            response = conn.getresponse()
            payload = json.loads(response.read())
            assert response.status == status, (path, payload)
            assert response.getheader("Connection") != "close"
        assert conn.sock is not None  # still the first connection
    finally:
        conn.close()


def test_connection_close_is_honoured(registry: RegistryProcess) -> None:
    sock = socket.create_connection(("127.0.0.1", registry.port), timeout=TIMEOUT)
    try:
        sock.sendall(
            b"GET /api/v1/authenticate HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            + f"X-Atlas-Token: {registry.token}\r\n\r\n".encode()
        )
        received = b""
        while chunk := sock.recv(65536):  # ends because the server closes
            received += chunk
    finally:
        sock.close()
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"connection: close" in head.lower()
    assert "user" in json.loads(body)


def test_accept_encoding_gzip_gets_an_identity_body(registry: RegistryProcess) -> None:
    response = api(
        registry, "GET", "/api/v1/authenticate", headers={"Accept-Encoding": "gzip, deflate"}
    )
    assert response.status_code == 200
    assert "Content-Encoding" not in response.headers
    assert response.json()["user"]


def test_json_body_over_1_mib_is_413(registry: RegistryProcess) -> None:
    create_artifact(registry)
    big = {"artifact_version": {"file": False, "id": "x" * (1024 * 1024 + 1)}}
    response = api(registry, "POST", "/api/v1/artifacts/u/n/t", json=big)
    assert response.status_code == 413
    assert response.json()["errors"]
    assert api(registry, "GET", "/api/v1/artifacts/u/n/t/search?version=any").json() == {
        "versions": []
    }


def test_expect_100_continue_upload_is_refused_before_the_body(registry: RegistryProcess) -> None:
    create_artifact(registry)
    version = create_version(registry)
    assert requests.put(version["upload_path"], data=b"x", timeout=TIMEOUT).status_code == 200
    path = version["upload_path"].split(str(registry.port), 1)[1]
    sock = socket.create_connection(("127.0.0.1", registry.port), timeout=TIMEOUT)
    try:
        sock.sendall(
            f"PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n"
            "Expect: 100-continue\r\n\r\n".encode()
        )
        head = sock.recv(65536)
    finally:
        sock.close()
    assert head.startswith(b"HTTP/1.1 409 "), head  # no "100 Continue" first


def test_head_of_a_file_gives_its_length_without_a_body(registry: RegistryProcess) -> None:
    create_artifact(registry)
    version = create_version(registry)
    requests.put(version["upload_path"], data=b"12345", timeout=TIMEOUT)
    response = api(registry, "HEAD", "/api/v1/artifacts/u/n/t/file")
    assert response.status_code == 200
    assert response.headers["Content-Length"] == "5"
    assert response.content == b""


def test_malformed_request_line_gets_a_json_400(registry: RegistryProcess) -> None:
    sock = socket.create_connection(("127.0.0.1", registry.port), timeout=TIMEOUT)
    try:
        sock.sendall(b"GET /x HTTP/9.9 extra\r\n\r\n")
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    finally:
        sock.close()
    assert received.startswith(b"HTTP/1.1 400 ")
    assert json.loads(received.partition(b"\r\n\r\n")[2])["errors"]
