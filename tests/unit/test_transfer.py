"""The file PUT against real sinks on 127.0.0.1: framing, bytes, hash, errors, memory."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import requests.adapters

from atlas_ci import USER_AGENT, transfer
from atlas_ci.digest import FileDigest
from atlas_ci.errors import InputFileError, TransportError
from atlas_ci.transfer import put_file

SECRET = "X-Amz-Signature=s3cr3t"
TIMEOUT = (5.0, 10.0)


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    size: int
    sha256: str
    body: bytes | None  # kept when small


@dataclass
class SinkState:
    received: list[Received] = field(default_factory=list)
    status: int = 201
    # "read": read the body, then answer; "reject": answer 413 at once without reading it;
    # "stall": read nothing and answer nothing; "reset": read 64 KiB, then hang up with RST
    mode: str = "read"


class _SinkHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _SinkServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_PUT(self) -> None:
        state = self.server.state
        if state.mode == "stall":
            time.sleep(3)
            self.close_connection = True
            return
        if state.mode == "reset":
            self.rfile.read(64 << 10)
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
            return
        if state.mode == "reject":
            self.send_response(413)
            self.send_header("Content-Length", "0")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.flush()
            time.sleep(1)  # keep the unread body in the socket: no reset before the answer
            self.close_connection = True
            return
        length = int(self.headers.get("Content-Length", "0"))
        digest = hashlib.sha256()
        kept = bytearray()
        left = length
        while left:
            piece = self.rfile.read(min(left, 1 << 20))
            if not piece:
                break
            digest.update(piece)
            if len(kept) < 8 << 20:
                kept += piece
            left -= len(piece)
        state.received.append(
            Received(
                self.command,
                self.path,
                dict(self.headers.items()),
                length - left,
                digest.hexdigest(),
                bytes(kept) if length <= 8 << 20 else None,
            )
        )
        payload = json.dumps({"ok": True}).encode()
        self.send_response(state.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class _SinkServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: SinkState) -> None:
        super().__init__(("127.0.0.1", 0), _SinkHandler)
        self.state = state


@dataclass
class Sink:
    state: SinkState
    base: str

    @property
    def received(self) -> list[Received]:
        return self.state.received


def _serve(server: _SinkServer) -> Iterator[None]:
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def sink() -> Iterator[Sink]:
    state = SinkState()
    server = _SinkServer(state)
    for _ in _serve(server):
        yield Sink(state, f"http://127.0.0.1:{server.server_address[1]}")


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        [
            *(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
def tls_sink(tls_files: tuple[Path, Path]) -> Iterator[Sink]:
    cert, key = tls_files
    state = SinkState()
    server = _SinkServer(state)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    for _ in _serve(server):
        yield Sink(state, f"https://127.0.0.1:{server.server_address[1]}")


@pytest.fixture
def session() -> requests.Session:
    s = requests.Session()
    s.trust_env = False
    # A session set up for API calls: the token must not ride along on the PUT.
    s.headers["X-Atlas-Token"] = "tok-123"
    s.headers["Content-Type"] = "application/json"
    return s


class _WrappingAdapter(requests.adapters.HTTPAdapter):
    """An adapter of the caller's own: the PUT must then go through requests."""

    def send(self, *args: Any, **kwargs: Any) -> requests.Response:
        return super().send(*args, **kwargs)


def _file(tmp_path: Path, size: int, name: str = "a.box") -> Path:
    path = tmp_path / name
    path.write_bytes(os.urandom(size))
    return path


def _check_framing(got: Received, size: int) -> None:
    assert got.method == "PUT"
    assert got.headers["Content-Length"] == str(size)
    assert "Transfer-Encoding" not in got.headers
    assert "X-Atlas-Token" not in got.headers
    assert "Content-Type" not in got.headers
    assert got.headers["User-Agent"] == USER_AGENT
    assert got.size == size


@pytest.mark.parametrize("route", ["sendfile", "requests"])
@pytest.mark.parametrize("size", [0, 1, 3 * (1 << 20) + 123])
def test_put_sends_the_file_with_content_length_and_its_sha256(
    sink: Sink, session: requests.Session, tmp_path: Path, route: str, size: int
) -> None:
    if route == "requests":
        session.mount("http://", _WrappingAdapter())
    path = _file(tmp_path, size)
    outcome = put_file(
        f"{sink.base}/blob/a%20b?{SECRET}&x=1",
        path,
        size,
        session=session,
        verify=True,
        timeout=TIMEOUT,
    )
    assert outcome.response.status == 201
    assert outcome.response.headers["content-type"] == "application/json"
    assert json.loads(outcome.response.body) == {"ok": True}
    assert outcome.size == size
    assert outcome.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    [got] = sink.received
    _check_framing(got, size)
    assert got.path == f"/blob/a%20b?{SECRET}&x=1"
    assert got.body == path.read_bytes()


def test_put_over_tls_checks_the_ca_and_sends_the_file(
    tls_sink: Sink, tls_files: tuple[Path, Path], session: requests.Session, tmp_path: Path
) -> None:
    size = 2 * (1 << 20) + 7
    path = _file(tmp_path, size)
    outcome = put_file(
        f"{tls_sink.base}/blob?{SECRET}",
        path,
        size,
        session=session,
        verify=str(tls_files[0]),
        timeout=TIMEOUT,
    )
    assert outcome.response.status == 201
    assert outcome.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    [got] = tls_sink.received
    _check_framing(got, size)
    assert got.path == f"/blob?{SECRET}"
    assert got.body == path.read_bytes()


def test_tls_failure_is_a_tls_transport_error_without_the_url_path(
    tls_sink: Sink, session: requests.Session, tmp_path: Path
) -> None:
    path = _file(tmp_path, 10)
    with pytest.raises(TransportError) as caught:
        put_file(
            f"{tls_sink.base}/secret-path?{SECRET}",
            path,
            10,
            session=session,
            verify=True,  # the system CAs do not know the test certificate
            timeout=TIMEOUT,
        )
    assert "secret-path" not in str(caught.value)
    assert SECRET not in str(caught.value)


def test_hash_off_sends_the_same_bytes_and_reports_no_digest(
    sink: Sink, session: requests.Session, tmp_path: Path
) -> None:
    path = _file(tmp_path, 100_000)
    outcome = put_file(
        f"{sink.base}/b",
        path,
        100_000,
        session=session,
        verify=True,
        timeout=TIMEOUT,
        hash_file=False,
    )
    assert outcome.sha256 is None
    assert sink.received[0].body == path.read_bytes()


def test_a_second_call_sends_the_whole_file_again(
    sink: Sink, session: requests.Session, tmp_path: Path
) -> None:
    size = 1 << 20
    path = _file(tmp_path, size)
    first = put_file(f"{sink.base}/b", path, size, session=session, verify=True, timeout=TIMEOUT)
    second = put_file(f"{sink.base}/b", path, size, session=session, verify=True, timeout=TIMEOUT)
    assert first.sha256 == second.sha256
    assert [r.sha256 for r in sink.received] == [first.sha256, second.sha256]
    assert all(r.size == size for r in sink.received)


def test_a_digest_started_earlier_is_used_and_survives_a_retry(
    sink: Sink, session: requests.Session, tmp_path: Path
) -> None:
    size = 2 * (1 << 20) + 5
    path = _file(tmp_path, size)
    digest = FileDigest.start(path, size)
    expected = hashlib.sha256(path.read_bytes()).hexdigest()
    for _ in range(2):
        outcome = put_file(
            f"{sink.base}/b",
            path,
            size,
            session=session,
            verify=True,
            timeout=TIMEOUT,
            digest=digest,
        )
        assert outcome.sha256 == expected
    assert [r.sha256 for r in sink.received] == [expected, expected]


@pytest.mark.parametrize("route", ["sendfile", "requests"])
def test_progress_counts_up_to_the_size(
    sink: Sink,
    session: requests.Session,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    route: str,
) -> None:
    monkeypatch.setattr(transfer, "PROGRESS_EVERY", 1 << 20)
    # One sendfile call may move all 5 MiB when the socket buffers are large: cap each call
    # so the reports do not depend on the kernel's buffer sizes.
    monkeypatch.setattr(transfer, "_SENDFILE_MAX", 1 << 20)
    if route == "requests":
        session.mount("http://", _WrappingAdapter())
    size = 5 * (1 << 20) + 1
    path = _file(tmp_path, size)
    seen: list[int] = []
    put_file(
        f"{sink.base}/b",
        path,
        size,
        session=session,
        verify=True,
        timeout=TIMEOUT,
        progress=seen.append,
    )
    assert seen == sorted(set(seen))
    assert seen[-1] == size
    assert len(seen) >= 5  # one report per MiB sent, then the end


def _sparse(tmp_path: Path, size: int) -> Path:
    """A file of ``size`` zero bytes that takes no disk."""
    path = tmp_path / "sparse.box"
    with path.open("wb") as f:
        f.truncate(size)
    return path


def test_an_early_refusal_stops_the_body_and_is_returned(
    sink: Sink, session: requests.Session, tmp_path: Path
) -> None:
    sink.state.mode = "reject"
    size = 64 << 20
    path = _sparse(tmp_path, size)
    started = time.monotonic()
    outcome = put_file(f"{sink.base}/b", path, size, session=session, verify=True, timeout=TIMEOUT)
    assert outcome.response.status == 413
    assert outcome.size < size
    assert outcome.sha256 is None
    assert time.monotonic() - started < TIMEOUT[1]


@pytest.mark.parametrize("run", range(5))
def test_a_reset_mid_body_is_reported_as_such_whichever_call_meets_it(
    sink: Sink, session: requests.Session, tmp_path: Path, run: int
) -> None:
    # The send may meet the reset (then the answer's read sees a plain end) or the read
    # may: either way the message names the hang-up, never "no response".
    sink.state.mode = "reset"
    size = 64 << 20
    path = _sparse(tmp_path, size)
    with pytest.raises(TransportError) as caught:
        put_file(f"{sink.base}/b", path, size, session=session, verify=True, timeout=TIMEOUT)
    assert caught.value.sent
    message = str(caught.value)
    assert "connection reset after" in message or "closed while sending after" in message, message


def test_a_silent_server_times_out_without_the_url_in_the_message(
    sink: Sink, session: requests.Session, tmp_path: Path
) -> None:
    sink.state.mode = "stall"
    size = 64 << 20
    path = _sparse(tmp_path, size)
    with pytest.raises(TransportError) as caught:
        put_file(
            f"{sink.base}/secret-path?{SECRET}",
            path,
            size,
            session=session,
            verify=True,
            timeout=(5.0, 0.5),
        )
    assert "secret-path" not in str(caught.value)
    assert SECRET not in str(caught.value)
    assert caught.value.timeout and caught.value.sent


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_refused_connection_is_never_sent_and_without_the_url_path(
    session: requests.Session, tmp_path: Path, scheme: str
) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = _file(tmp_path, 10)
    with pytest.raises(TransportError) as caught:
        put_file(
            f"{scheme}://127.0.0.1:{port}/secret-path?{SECRET}",
            path,
            10,
            session=session,
            verify=True,
            timeout=TIMEOUT,
        )
    assert f"127.0.0.1:{port}" in str(caught.value)
    assert not caught.value.sent
    assert "secret-path" not in str(caught.value)
    assert SECRET not in str(caught.value)


def test_a_redirect_is_returned_not_followed(
    sink: Sink, session: requests.Session, tmp_path: Path
) -> None:
    sink.state.status = 307
    path = _file(tmp_path, 10)
    outcome = put_file(f"{sink.base}/b", path, 10, session=session, verify=True, timeout=TIMEOUT)
    assert outcome.response.status == 307
    assert len(sink.received) == 1


def test_a_file_of_another_size_is_an_input_error(
    sink: Sink, session: requests.Session, tmp_path: Path
) -> None:
    path = _file(tmp_path, 10)
    with pytest.raises(InputFileError):
        put_file(f"{sink.base}/b", path, 11, session=session, verify=True, timeout=TIMEOUT)
    with pytest.raises(InputFileError):
        put_file(
            f"{sink.base}/b",
            tmp_path / "missing",
            1,
            session=session,
            verify=True,
            timeout=TIMEOUT,
        )
    assert sink.received == []


def test_a_proxy_from_the_environment_is_used_and_no_proxy_honoured(
    sink: Sink, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The sink plays the proxy: a proxied request carries the absolute URL.
    session = requests.Session()
    monkeypatch.setenv("HTTP_PROXY", sink.base)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    path = _file(tmp_path, 1000)
    target = "http://upload.invalid:8080/b?q=1"
    put_file(target, path, 1000, session=session, verify=True, timeout=TIMEOUT)
    assert sink.received[-1].path == target
    assert sink.received[-1].body == path.read_bytes()

    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    put_file(f"{sink.base}/direct", path, 1000, session=session, verify=True, timeout=TIMEOUT)
    assert sink.received[-1].path == "/direct"


_MEMORY_CHILD = textwrap.dedent(
    """
    import json, resource, sys
    from pathlib import Path
    import requests, requests.adapters
    from atlas_ci.transfer import put_file

    class Wrapping(requests.adapters.HTTPAdapter):
        def send(self, *a, **k):
            return super().send(*a, **k)

    url, path, size, route = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    session = requests.Session()
    session.trust_env = False
    if route == "requests":
        session.mount("http://", Wrapping())
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    outcome = put_file(url, path, size, session=session, verify=True, timeout=(5, 60))
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"before_kib": before, "after_kib": after, "sha256": outcome.sha256,
                      "status": outcome.response.status}))
    """
)


@pytest.mark.parametrize("route", ["sendfile", "requests"])
def test_a_256_mib_upload_never_holds_the_body_in_memory(
    sink: Sink, tmp_path: Path, route: str
) -> None:
    size = 256 << 20
    path = tmp_path / "big.box"
    block = hashlib.sha256(b"seed").digest() * (1 << 15)  # 1 MiB, not all zeros
    with path.open("wb") as f:
        for _ in range(size // len(block)):
            f.write(block)
    expected = hashlib.sha256(block * (size // len(block))).hexdigest()
    child = subprocess.run(
        [sys.executable, "-c", _MEMORY_CHILD, f"{sink.base}/big", str(path), str(size), route],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    report = json.loads(child.stdout)
    assert report["status"] == 201
    assert report["sha256"] == expected
    assert sink.received[0].sha256 == expected
    growth_mib = (report["after_kib"] - report["before_kib"]) / 1024
    print(f"peak RSS growth {growth_mib:.1f} MiB")
    assert growth_mib < 64, f"peak RSS grew by {growth_mib:.0f} MiB during the upload"


def test_a_patched_adapter_keeps_the_put_inside_requests(
    session: requests.Session, tmp_path: Path
) -> None:
    import responses

    path = _file(tmp_path, 100)
    with responses.RequestsMock() as mock:
        mock.put("http://upload.test/blob?sig=1", status=201)
        outcome = put_file(
            "http://upload.test/blob?sig=1",
            path,
            100,
            session=session,
            verify=True,
            timeout=TIMEOUT,
        )
        assert outcome.response.status == 201
        assert mock.calls[0].request.headers["Content-Length"] == "100"


def test_a_file_swapped_for_a_fifo_is_refused_not_waited_on(
    sink: Sink, session: requests.Session, tmp_path: Path
) -> None:
    # Validated as a file, then replaced by a FIFO: a blocking open would wait for a writer
    # for ever. The test opens the writer side itself if the upload is still stuck.
    fifo = tmp_path / "a.box"
    os.mkfifo(fifo)
    caught: list[BaseException] = []

    def put() -> None:
        try:
            put_file(f"{sink.base}/b", fifo, 0, session=session, verify=True, timeout=TIMEOUT)
        except BaseException as e:  # handed to the test thread
            caught.append(e)

    worker = threading.Thread(target=put, daemon=True)
    worker.start()
    worker.join(10)
    stuck = worker.is_alive()
    if stuck:
        with open(fifo, "wb"):  # release the blocked open
            pass
        worker.join(10)
    assert not stuck, "the open of a FIFO blocked"
    [error] = caught
    assert isinstance(error, InputFileError) and "regular file" in error.one_line()
    assert sink.received == []
