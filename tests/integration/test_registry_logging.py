"""The access log: one line per request, never a token, never an upload secret."""

from __future__ import annotations

import re
import socket
import urllib.parse

import requests

from tests.integration.registry_api import (
    TIMEOUT,
    api,
    create_artifact,
    create_version,
    put_file,
    search,
)
from tests.registry_proc import RegistryProcess

ACCESS_LINE = re.compile(r"^\S+ 127\.0\.0\.1 (\S+) (\S+) (\d{3}|-) (\d+)B (\d+\.\d)ms( \(.*\))?$")


def _send_raw(registry: RegistryProcess, data: bytes) -> None:
    sock = socket.create_connection(("127.0.0.1", registry.port), timeout=TIMEOUT)
    try:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)  # a short body ends here
        while sock.recv(65536):
            pass
    finally:
        sock.close()


def test_neither_token_nor_upload_secret_reaches_the_log(registry: RegistryProcess) -> None:
    create_artifact(registry)
    version = create_version(registry)
    secret = version["upload_path"].rsplit("/", 1)[1]
    path = urllib.parse.urlsplit(version["upload_path"]).path
    stranger = "attacker-supplied-token-value"

    requests.get(
        registry.url + "/api/v1/authenticate",
        headers={"X-Atlas-Token": stranger},
        timeout=TIMEOUT,
    )
    _send_raw(registry, f"PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\nab".encode())
    _send_raw(registry, f"PUT {path} HTTP/1.1 junk\r\n\r\n".encode())  # unparsable line
    _send_raw(registry, f"GET {path}/more?x={secret} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    put_file(registry.url + path + "?sig=abc", b"123456789")
    put_file(version["upload_path"], b"again")  # 409
    search(registry, version="any")

    assert registry.stop() == 0
    log = registry.stderr_text()
    assert registry.token not in log
    assert stranger not in log
    assert secret not in log
    assert secret[:12] not in log
    assert "/binstore/<redacted>" in log


def test_each_request_is_one_line_with_method_path_status_bytes_duration(
    registry: RegistryProcess,
) -> None:
    create_artifact(registry)
    api(registry, "GET", "/api/v1/artifacts/u/n/t/search?version=any&metadata.1.key=a")
    version = create_version(registry)
    put_file(version["upload_path"], b"x" * 1000)
    api(registry, "GET", "/api/v1/artifacts/u/n/t/file")
    api(registry, "GET", "/nope\x1b[31m")

    assert registry.stop() == 0
    lines = [m for line in registry.stderr_text().splitlines() if (m := ACCESS_LINE.match(line))]
    seen = [(m[1], m[2], m[3], m[4]) for m in lines]
    # Each request came on a connection of its own, so their lines may come out of order: a
    # thread logs once its answer is out, and the next request can be served first.
    assert ("POST", "/api/v1/artifacts", "201") in [s[:3] for s in seen]
    assert ("GET", "/api/v1/artifacts/u/n/t/search?version=any&metadata.1.key=a", "200") in [
        s[:3] for s in seen
    ]
    assert ("PUT", "/binstore/<redacted>", "200") in [s[:3] for s in seen]
    assert ("GET", "/api/v1/artifacts/u/n/t/file", "200", "1000") in seen
    assert ("GET", "/nope%1B%5B31m", "404") in [s[:3] for s in seen]
    assert len(lines) == 6


def test_a_credential_in_the_query_string_never_reaches_the_log(registry: RegistryProcess) -> None:
    """Vagrant Cloud's clients could send ``?access_token=``; a signed URL its signature."""
    secret = "Tk&<>-query-secret-4f1c"
    quoted = urllib.parse.quote(secret, safe="")
    for target in (
        f"/api/v1/authenticate?access_token={quoted}",
        f"/acme/web?X-Amz-Signature={quoted}&version=1",
        f"/api/v1/artifacts/acme/web/vagrant.box/search?version=latest&token={quoted}",
    ):
        requests.get(registry.url + target, timeout=TIMEOUT)
    create_artifact(registry)
    search(registry, version="latest", **{"metadata.1.key": "provider"})

    assert registry.stop() == 0
    log = registry.stderr_text()
    assert secret not in log
    assert quoted not in log
    assert "access_token=<redacted>" in log
    # Each of the three requests was logged with its credential cut, not left out.
    assert "X-Amz-Signature=<redacted>&version=1" in log
    assert "version=latest&token=<redacted>" in log
    assert "version=latest" in log  # the parameters the registry reads are still logged
