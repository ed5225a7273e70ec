"""Resumable downloads and conditional requests on every file URL of a real ``atlas-ci serve``
(Atlas file URLs, the newest-file URL, the box catalog's URLs), with real curl and real
Vagrant, on SQLite and PostgreSQL (the ``registry`` fixture runs each test on both)."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.artifacts import make_box
from tests.faults import Fault, FaultProxy
from tests.integration.registry_admin import new_token
from tests.integration.registry_api import TIMEOUT, api, create_artifact, publish
from tests.registry_proc import RegistryProcess

BOXES = "acme/web/vagrant.box"


def _tool(name: str) -> str:
    """The path of ``name``; a skip here, a failure on CI (which installs it)."""
    found = shutil.which(name)
    if found is not None:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail(f"{name} is not installed; CI must install it (.ci/run)")
    pytest.skip(f"{name} is not installed (CI installs it and runs this test)")


def _publish_box(registry: RegistryProcess, data: bytes) -> tuple[int, list[str]]:
    """Publish ``data`` as a virtualbox box of acme/web; its number and every URL it is
    downloadable at: the catalog's URL, the version's file URL, the newest file URL."""
    create_artifact(registry, "acme", "web")
    number = publish(registry, data, BOXES, metadata={"provider": "virtualbox"})
    catalog = api(registry, "GET", "/acme/web").json()
    [listed] = [v for v in catalog["versions"] if v["version"] == str(number)]
    base = f"{registry.url}/api/v1/artifacts/{BOXES}"
    urls = [listed["providers"][0]["url"], f"{base}/{number}/file", f"{base}/file"]
    return number, urls


def _curl(registry: RegistryProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_tool("curl"), "-sS", "-H", f"X-Atlas-Token: {registry.token}", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _log_lines(registry: RegistryProcess, needle: str, count: int = 1) -> list[str]:
    """The access-log lines holding ``needle``, waiting up to 10 s for ``count`` of them
    (a line is written once its response has gone, after the client may have read it)."""
    deadline = time.monotonic() + 10
    while True:
        lines = [x for x in registry.stderr_text().splitlines() if needle in x]
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def test_curl_gets_single_suffix_and_open_ranges_from_every_file_url(
    registry: RegistryProcess, tmp_path: Path
) -> None:
    data = os.urandom((3 << 20) + 12345)
    size = len(data)
    _, urls = _publish_box(registry, data)
    cases = [
        ("1000-1999", 1000, 1999),
        ("-500", size - 500, size - 1),
        ("500-", 500, size - 1),
        ("0-0", 0, 0),
        (f"{size - 1}-{size + 100}", size - 1, size - 1),
    ]
    for url in urls:
        for spec, first, last in cases:
            out, head = tmp_path / "out", tmp_path / "head"
            done = _curl(registry, "-f", "-r", spec, "-D", str(head), "-o", str(out), url)
            assert done.returncode == 0, (url, spec, done.stderr)
            assert out.read_bytes() == data[first : last + 1], (url, spec)
            headers = head.read_bytes().decode("latin-1").lower()
            assert headers.startswith("http/1.1 206 partial content"), headers
            assert f"content-range: bytes {first}-{last}/{size}\r\n" in headers
            assert f"content-length: {last - first + 1}\r\n" in headers
            assert "accept-ranges: bytes\r\n" in headers
    # The access log names each 206 with the bytes of its range.
    assert len(_log_lines(registry, " 206 1000B ", 3)) == 3
    assert len(_log_lines(registry, f" 206 {size - 500}B ", 3)) == 3


def test_curl_continue_at_resumes_a_half_written_file(
    registry: RegistryProcess, tmp_path: Path
) -> None:
    data = os.urandom((5 << 20) + 7)
    half = len(data) // 2
    _, urls = _publish_box(registry, data)
    for index, url in enumerate(urls):
        target = tmp_path / f"box{index}"
        target.write_bytes(data[:half])
        done = _curl(registry, "-f", "--continue-at", "-", "-o", str(target), url)
        assert done.returncode == 0, done.stderr
        assert hashlib.sha256(target.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()
    path = urls[1].split(registry.url, 1)[1]
    assert _log_lines(registry, f"GET {path} 206 {len(data) - half}B ")
    # Resuming a file already whole asks for the byte past its end: 416 with the size, and
    # curl leaves the file as it was (it fails the transfer: -f, a 4xx).
    target = tmp_path / "box0"
    done = _curl(registry, "-f", "--continue-at", "-", "-o", str(target), urls[0])
    assert done.returncode == 22, done.stderr
    assert "416" in done.stderr
    assert target.read_bytes() == data
    assert _log_lines(registry, f"GET {path} 416 ")


def test_conditional_requests_and_edge_ranges_over_one_keep_alive_connection(
    registry: RegistryProcess,
) -> None:
    data = os.urandom(100_000)
    size = len(data)
    _, urls = _publish_box(registry, data)
    etag = f'"{hashlib.sha256(data).hexdigest()}"'
    session = requests.Session()
    session.headers.update(registry.headers)

    def get(url: str, method: str = "GET", **headers: str) -> requests.Response:
        fields = {name.replace("_", "-"): value for name, value in headers.items()}
        return session.request(method, url, headers=fields, timeout=TIMEOUT)

    for url in urls:
        whole = get(url)
        assert whole.status_code == 200
        assert whole.content == data
        assert whole.headers["Accept-Ranges"] == "bytes"
        assert whole.headers["ETag"] == etag
        head = get(url, "HEAD")
        assert head.status_code == 200
        assert head.content == b""
        assert {k: v for k, v in head.headers.items() if k != "Date"} == {
            k: v for k, v in whole.headers.items() if k != "Date"
        }
        for value in (etag, "*", f"W/{etag}", f'"other", {etag}'):
            for method in ("GET", "HEAD"):
                not_modified = get(url, method, If_None_Match=value)
                assert not_modified.status_code == 304, (method, value)
                assert not_modified.content == b""
                assert not_modified.headers["ETag"] == etag
                assert "Content-Length" not in not_modified.headers
        assert get(url, If_None_Match='"other"').content == data
        # HEAD with a Range: the headers of a plain GET (RFC 9110 14.2: ranges are for GET).
        head_range = get(url, "HEAD", Range="bytes=0-9")
        assert (head_range.status_code, head_range.headers["Content-Length"]) == (200, str(size))
        past = get(url, Range=f"bytes={size}-")
        assert past.status_code == 416
        assert past.headers["Content-Range"] == f"bytes */{size}"
        assert "range" in past.json()["errors"][0]
        hostile = ("bytes=" + "1-2," * 10_000, "bytes=" + "9" * 40_000 + "-")
        for ignored in (
            "bytes=0-9,20-29",
            "bytes=9-0",
            "bytes=x-y",
            "pages=0-9",
            "bytes=--1",
            *hostile,
        ):
            answer = get(url, Range=ignored)
            assert (answer.status_code, answer.content) == (200, data), ignored
        changed = get(url, Range="bytes=0-9", If_Range='"an older file"')
        assert (changed.status_code, changed.content) == (200, data)
        dated = get(url, Range="bytes=0-9", If_Range="Mon, 07 Dec 2026 19:00:00 GMT")
        assert (dated.status_code, dated.content) == (200, data)
        same = get(url, Range="bytes=0-9", If_Range=etag)
        assert (same.status_code, same.content) == (206, data[:10])
        assert get(url, If_Match='"other"', Range="bytes=0-9").status_code == 412
        # The connection is still good after every kind of answer: the bytes are right.
        assert get(url, Range="bytes=-3").content == data[-3:]
    log = registry.stderr_text()
    assert " 304 0B " in log
    assert " 412 " in log


def test_ranges_keep_the_access_rules(registry: RegistryProcess) -> None:
    data = os.urandom(10_000)
    _, urls = _publish_box(registry, data)  # acme/web is private
    stranger = new_token(registry, "stranger", "--read-only")
    for url in urls:
        for headers in (
            {},
            {"X-Atlas-Token": stranger},
            {"X-Atlas-Token": stranger, "If-None-Match": "*"},
        ):
            answer = requests.get(url, headers={"Range": "bytes=0-99", **headers}, timeout=TIMEOUT)
            assert answer.status_code in (401, 404), (url, headers, answer.status_code)
            assert data[:100] not in answer.content
    assert " 206 " not in registry.stderr_text()


def test_a_client_leaving_mid_range_is_an_ordinary_disconnect(registry: RegistryProcess) -> None:
    size = 32 << 20
    data = os.urandom(size)
    _, urls = _publish_box(registry, data)
    path = urls[1].split(registry.url, 1)[1]
    start = 1 << 20
    sock = socket.create_connection(("127.0.0.1", registry.port), timeout=TIMEOUT)
    try:
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: x\r\nRange: bytes={start}-\r\n"
            f"X-Atlas-Token: {registry.token}\r\n\r\n".encode()
        )
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(1 << 16)
            assert chunk, "the registry closed before its headers ended"
            received += chunk
        head, body = received.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 206 ")
        assert f"Content-Range: bytes {start}-{size - 1}/{size}".encode() in head
        while len(body) < 1 << 20:
            chunk = sock.recv(1 << 16)
            assert chunk, "the registry closed before 1 MiB"
            body += chunk
        assert body == data[start : start + len(body)]
    finally:
        # A reset, not a polite close: the registry's next send fails at once.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    [line] = _log_lines(registry, "connection lost")
    assert f"GET {path} 206 " in line
    sent = int(line.split(" 206 ")[1].split("B ")[0])
    assert len(body) <= sent < size - start, line
    # The registry goes on serving: the rest of that range, on a new connection.
    rest = requests.get(
        urls[1],
        headers={**registry.headers, "Range": f"bytes={start + len(body)}-"},
        timeout=TIMEOUT,
    )
    assert rest.status_code == 206
    assert rest.content == data[start + len(body) :]


def test_real_vagrant_resumes_a_half_downloaded_box(
    registry: RegistryProcess, tmp_path: Path
) -> None:
    """The first ``vagrant box add`` loses its connection half way (a proxy relays half the
    box, then closes): Vagrant keeps the partial file in VAGRANT_HOME/tmp/box<sha1 of URL>.
    The second one resumes it with ``curl --continue-at -``: a 206 of the other half."""
    vagrant = _tool("vagrant")
    box = make_box(tmp_path / "web.box", disk=6 << 20).read_bytes()
    with FaultProxy(registry.url) as proxy:
        number, _ = _publish_box(registry, box)
        path = f"/api/v1/artifacts/{BOXES}/{number}/file"
        half = len(box) // 2
        proxy.add("GET", rf"^{path}$", Fault("cut_answer", after_bytes=half))
        home = tmp_path / "vagrant.d"
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(tmp_path),
            "VAGRANT_HOME": str(home),
            "VAGRANT_SERVER_URL": proxy.url,  # the catalog's URLs name the proxy too
            "VAGRANT_CLOUD_TOKEN": registry.token,
            "VAGRANT_CHECKPOINT_DISABLE": "1",
            "VAGRANT_NO_COLOR": "1",
        }

        def box_add() -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [vagrant, "box", "add", "acme/web"],
                env=env,
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )

        first = box_add()
        assert first.returncode != 0, first.stdout
        assert "transfer closed" in first.stderr, first.stderr
        # Where Vagrant keeps a partial download: tmp/box + sha1 of the URL it downloads.
        url = proxy.url + path
        partial = home / "tmp" / ("box" + hashlib.sha1(url.encode()).hexdigest())  # noqa: S324
        assert partial.read_bytes() == box[:half]

        second = box_add()
        assert second.returncode == 0, (second.stdout, second.stderr)
        assert "Box download is resuming from prior download progress" in second.stdout
        assert f"Successfully added box 'acme/web' (v{number}) for 'virtualbox'" in second.stdout
        asked = [s for s in proxy.seen if s.target == path]
    assert [s.headers.get("Range") for s in asked] == [None, f"bytes={half}-"]
    assert not partial.exists()  # Vagrant removes its temp file once the box is added
    # The registry sent the whole box once (the proxy cut it), then only the other half.
    assert _log_lines(registry, f"GET {path} 200 {len(box)}B ")
    assert _log_lines(registry, f"GET {path} 206 {len(box) - half}B ")
    # Vagrant checked the sha256 the catalog gave before adding; the disk it unpacked is ours.
    disks = list((home / "boxes").rglob("box-disk001.vmdk"))
    assert len(disks) == 1
    assert disks[0].stat().st_size == 6 << 20
