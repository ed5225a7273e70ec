"""Hostile clients against the real server: framing, bad input, slow and many connections.

Every case ends in a 4xx (or a dropped connection) and the server keeps serving: a 500 here
means a client could make the registry fail.
"""

from __future__ import annotations

import http.client
import json
import os
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.integration.http_raw import TIMEOUT, Answer, exchange, read_until_closed
from tests.integration.registry_api import api, create_artifact
from tests.registry_proc import RegistryProcess

INT64_MAX = 2**63 - 1


def _smuggled(token: str) -> bytes:
    """An authenticated request that creates artifact ``smuggled/x`` if it is ever run."""
    body = b'{"artifact": {"username": "smuggled", "name": "x"}}'
    return (
        b"POST /api/v1/artifacts HTTP/1.1\r\nHost: x\r\n"
        + f"X-Atlas-Token: {token}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


def _assert_one_closing_answer(answers: list[Answer], rest: bytes, status: int) -> None:
    assert [a.status for a in answers] == [status], answers
    assert answers[0].headers.get("connection") == "close"
    assert json.loads(answers[0].body)["errors"]
    assert rest == b""


def _smuggled_was_not_run(registry: RegistryProcess) -> bool:
    return api(registry, "GET", "/api/v1/artifacts/smuggled/x").status_code == 404


# Each head is followed on the same connection by the smuggled request.
_AMBIGUOUS_HEADS = {
    "transfer-encoding alone": (411, b"Transfer-Encoding: chunked\r\n"),
    "content-length and transfer-encoding": (
        400,
        b"Content-Length: 0\r\nTransfer-Encoding: chunked\r\n",
    ),
    "transfer-encoding before content-length": (
        400,
        b"Transfer-Encoding: chunked\r\nContent-Length: 0\r\n",
    ),
    "content-length twice, equal": (400, b"Content-Length: 0\r\nContent-Length: 0\r\n"),
    "content-length twice, different": (400, b"Content-Length: 0\r\nContent-Length: 5\r\n"),
    "content-length list": (400, b"Content-Length: 0, 0\r\n"),
    "space before the colon": (400, b"Content-Length : 0\r\n"),
    "folded line": (400, b"Content-Length: 0\r\nX-Note: a\r\n b\r\n"),
    "bare CR splitting a line": (400, b"X-Note: a\rContent-Length: 0\r\n"),
    "line without a colon": (400, b"Content-Length: 0\r\nno colon here\r\n"),
}


@pytest.mark.parametrize("case", sorted(_AMBIGUOUS_HEADS))
def test_an_ambiguously_framed_request_gets_one_answer_and_the_connection_closes(
    registry: RegistryProcess, case: str
) -> None:
    status, framing = _AMBIGUOUS_HEADS[case]
    head = (
        b"POST /api/v1/artifacts HTTP/1.1\r\nHost: x\r\n"
        + f"X-Atlas-Token: {registry.token}\r\n".encode()
        + framing
        + b"\r\n"
    )
    answers, rest = exchange(registry.port, head + _smuggled(registry.token))
    _assert_one_closing_answer(answers, rest, status)
    assert _smuggled_was_not_run(registry)


def test_a_chunked_upload_is_411_and_its_body_never_read_as_a_request(
    registry: RegistryProcess,
) -> None:
    smuggled = _smuggled(registry.token)
    chunked = f"{len(smuggled):x}\r\n".encode() + smuggled + b"\r\n0\r\n\r\n"
    answers, rest = exchange(
        registry.port,
        b"PUT /binstore/whatever HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunked,
    )
    _assert_one_closing_answer(answers, rest, 411)
    assert _smuggled_was_not_run(registry)


def test_a_request_line_without_a_version_is_400_with_a_status_line(
    registry: RegistryProcess,
) -> None:
    answers, rest = exchange(
        registry.port,
        f"GET /api/v1/authenticate\r\nX-Atlas-Token: {registry.token}\r\n\r\n".encode(),
    )
    _assert_one_closing_answer(answers, rest, 400)


def test_headers_past_64_kib_in_all_are_431(registry: RegistryProcess) -> None:
    # Each line and their number are within http.client's own limits; the sum is not.
    many = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"v" * 2000) for i in range(40))
    answers, rest = exchange(
        registry.port,
        b"GET /api/v1/authenticate HTTP/1.1\r\nHost: x\r\n"
        + f"X-Atlas-Token: {registry.token}\r\n".encode()
        + many
        + b"\r\n",
    )
    _assert_one_closing_answer(answers, rest, 431)


def test_pipelined_well_framed_requests_each_get_their_answer(registry: RegistryProcess) -> None:
    one = (
        f"GET /api/v1/authenticate HTTP/1.1\r\nHost: x\r\nX-Atlas-Token: {registry.token}\r\n\r\n"
    ).encode()
    last = one.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
    answers, rest = exchange(registry.port, one + one + last)
    assert [a.status for a in answers] == [200, 200, 200]
    assert rest == b""


# -- client errors that were 500s ----------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        f"version={INT64_MAX + 1}",
        f"build={INT64_MAX + 1}",
        f"version={-INT64_MAX - 2}",
        "version=" + "9" * 5000,
        "metadata." + "9" * 5000 + ".key=a",
    ],
)
def test_a_search_number_past_64_bits_is_400(registry: RegistryProcess, query: str) -> None:
    create_artifact(registry)
    response = api(registry, "GET", f"/api/v1/artifacts/u/n/t/search?{query}")
    assert response.status_code == 400, response.text
    assert len(response.json()["errors"][0]) < 200  # the 5000 digits are not echoed whole
    assert "internal error" not in registry.stderr_text()


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize("path", ["/api/v1/artifacts", "/api/v1/artifacts/u/n/t"])
def test_a_deeply_nested_json_body_is_422(registry: RegistryProcess, path: str) -> None:
    create_artifact(registry)
    for body in (_nested(100_000), b'{"artifact_version": ' + _nested(50_000) + b"}"):
        response = api(registry, "POST", path, data=body)
        assert response.status_code == 422, response.text
        assert "nested" in response.json()["errors"][0]
    assert api(registry, "GET", "/api/v1/authenticate").status_code == 200
    assert "internal error" not in registry.stderr_text()


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/artifacts", '{"artifact": {"username": "\\ud800", "name": "n"}}'),
        ("/api/v1/artifacts", '{"artifact": {"username": "u", "name": "x\\udfff"}}'),
        ("/api/v1/artifacts/u/n/t", '{"artifact_version": {"id": "\\ud800"}}'),
        ("/api/v1/artifacts/u/n/t", '{"artifact_version": {"metadata": {"\\ud800": "v"}}}'),
        ("/api/v1/artifacts/u/n/t", '{"artifact_version": {"metadata": {"k": "\\udc00x"}}}'),
    ],
)
def test_a_lone_surrogate_in_a_body_is_422_and_nothing_is_stored(
    registry: RegistryProcess, path: str, body: str
) -> None:
    create_artifact(registry)
    response = api(registry, "POST", path, data=body.encode())
    assert response.status_code == 422, response.text
    assert "surrogate" in response.json()["errors"][0]
    assert api(registry, "GET", "/api/v1/artifacts/u/n/t/search?version=any").json() == {
        "versions": []
    }
    assert "internal error" not in registry.stderr_text()


def test_a_paired_surrogate_escape_is_an_ordinary_character(registry: RegistryProcess) -> None:
    create_artifact(registry)
    body = '{"artifact_version": {"id": "\\ud83d\\ude00", "metadata": {"k": "\\ud83d\\ude00"}}}'
    response = api(registry, "POST", "/api/v1/artifacts/u/n/t", data=body.encode())
    assert response.status_code == 201, response.text
    assert response.json()["id"] == "\U0001f600"


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/artifacts/u/%ED%A0%80",
        "/api/v1/artifacts/%ED%A0%80/n/t/search",
        "/api/v1/artifacts/u/n/t/%ED%A0%80/file",
        "/api/v1/artifacts/u/n/%ED%A0%80",
    ],
)
def test_a_lone_surrogate_in_a_path_is_400(registry: RegistryProcess, path: str) -> None:
    method = "POST" if path.endswith("%ED%A0%80") and path.count("/") == 6 else "GET"
    response = api(registry, method, path, json={"artifact_version": {}})
    assert response.status_code == 400, response.text


def test_raw_non_ascii_bytes_in_the_target_are_400(registry: RegistryProcess) -> None:
    answers, rest = exchange(
        registry.port,
        b"GET /api/v1/artifacts/u/\xff HTTP/1.1\r\nHost: x\r\n"
        + f"X-Atlas-Token: {registry.token}\r\n\r\n".encode(),
    )
    _assert_one_closing_answer(answers, rest, 400)


# -- fuzzing the routes ----------------------------------------------------------------------

_SEGMENTS = [
    "%",
    "%zz",
    "%0",
    "%00",
    "%2F",
    "%2e%2e",
    "..",
    ".",
    "%C0%AF",
    "%FF",
    "%ED%A0%80",
    "%F4%90%80%80",
    "%E2%80%AE",
    "%EF%BF%BF",
    "%0D%0A",
    "a" * 300,
    "%20",
    "%25",
    "x;y",
    "~",
]
_QUERIES = [
    "version=%ff",
    "version=1.5",
    "version=1e3",
    "version=0x10",
    "build=-",
    "metadata.0.key=%ED%A0%80",
    "metadata.99999999999999999999.key=a",
    "metadata." + "9" * 5000 + ".key=a",
    "metadata.-1.key=a",
    "metadata.0.value=a",
    "include_pending=2",
    "version=1&version=2",
    "&&&",
    "=",
    "%",
    "a=" + "b" * 60_000,
    "a=" + "b" * 70_000,
    "&".join(f"metadata.{i}.key=k" for i in range(2000)),
]
_BODIES = [
    b"",
    b"[]",
    b"null",
    b"1",
    b'"s"',
    b"{}",
    b"NaN",
    b"\xef\xbb\xbf{}",
    b'{"a": "\xff"}',
    b'{"artifact": []}',
    b'{"artifact": {"username": 1, "name": "x"}}',
    b'{"artifact": {"username": "", "name": "x"}}',
    b'{"artifact": {"username": "a/b", "name": "x"}}',
    b'{"artifact": {"username": "a\\u0000", "name": "x"}}',
    b'{"artifact": {"username": "' + b"u" * 300 + b'", "name": "x"}}',
    b'{"artifact_version": []}',
    b'{"artifact_version": {"build_id": "1"}}',
    b'{"artifact_version": {"build_id": 1.5}}',
    b'{"artifact_version": {"build_id": 1e400}}',
    b'{"artifact_version": {"build_id": 99999999999999999999}}',
    b'{"artifact_version": {"build_id": true}}',
    b'{"artifact_version": {"metadata": {"a": {"b": "c"}}}}',
    b'{"artifact_version": {"metadata": []}}',
    b'{"artifact_version": {"file": "yes"}}',
    b'{"artifact_version": {"id": 5}}',
    b'{"a": ' * 20_000 + b"1" + b"}" * 20_000,
    b"{" + b",".join(b'"k%d": %d' % (i, i) for i in range(50_000)) + b"}",
]


def _fuzz_requests(token: str) -> Iterator[bytes]:
    auth = f"X-Atlas-Token: {token}\r\n".encode()

    def request(method: str, target: str, body: bytes = b"", extra: bytes = b"") -> bytes:
        return (
            f"{method} {target} HTTP/1.1\r\nHost: x\r\n".encode()
            + auth
            + extra
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )

    templates = [
        "/api/v1/artifacts/{s}/n",
        "/api/v1/artifacts/u/{s}",
        "/api/v1/artifacts/u/n/{s}",
        "/api/v1/artifacts/u/n/{s}/search",
        "/api/v1/artifacts/u/n/t/{s}/file",
        "/api/v1/{s}",
        "/binstore/{s}",
    ]
    for template in templates:
        for segment in _SEGMENTS:
            for method in ("GET", "POST", "PUT", "HEAD", "DELETE"):
                yield request(method, template.format(s=segment), b"{}")
    for query in _QUERIES:
        yield request("GET", f"/api/v1/artifacts/u/n/t/search?{query}")
    for body in _BODIES:
        yield request("POST", "/api/v1/artifacts", body)
        yield request("POST", "/api/v1/artifacts/u/n/t", body)
    for extra in (
        b"".join(b"X-H%d: v\r\n" % i for i in range(90)),
        b"".join(b"X-H%d: v\r\n" % i for i in range(120)),
        b"X-Long: " + b"v" * 70_000 + b"\r\n",
        b"X-Latin: \xe9\xff\r\n",
        b"Expect: 100-continue\r\n",
        b"Expect: something-else\r\n",
        b"Host: \xff\xfe\r\n",
        b"Idempotency-Key: \x01\r\n",
        b"Idempotency-Key: a\r\nIdempotency-Key: b\r\n",
        b"Idempotency-Key: " + b"k" * 300 + b"\r\n",
    ):
        yield request("POST", "/api/v1/artifacts/u/n/t", b'{"artifact_version": {}}', extra)
    for length in (b"-1", b"1e3", b"0x10", b"+5", b" ", b"9" * 30):
        yield (
            b"POST /api/v1/artifacts HTTP/1.1\r\nHost: x\r\n"
            + auth
            + b"Content-Length: "
            + length
            + b"\r\n\r\n{}"
        )
    yield b"PUT /binstore/x HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n"
    yield b"PUT /binstore/x HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"
    yield b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64  # a TLS hello
    close = b"Connection: close\r\n"
    yield b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 3 + close + b"\r\n\r\n\r\n"
    yield b"GET /%%%% HTTP/1.1\r\n" + close + b"\r\n"
    yield b"GET http://x HTTP/1.1\r\n" + close + b"\r\n"
    yield b"GET http://x/api/v1/authenticate?x#y HTTP/1.1\r\n" + auth + close + b"\r\n"


def test_fuzzed_requests_are_all_answered_with_less_than_500(tmp_path: Path) -> None:
    # A short header deadline: the TLS hello never ends its "request line" and gets a 408.
    with RegistryProcess(tmp_path / "data", extra_args=["--header-timeout", "1"]) as registry:
        create_artifact(registry)
        statuses: dict[int, int] = {}
        for data in _fuzz_requests(registry.token):
            answers, _ = exchange(registry.port, data)
            assert answers, data[:120]
            for answer in answers:
                assert answer.status < 500, (data[:120], answer)
                statuses[answer.status] = statuses.get(answer.status, 0) + 1
        assert {400, 404, 405, 408, 411, 413, 414, 422, 431} <= set(statuses), statuses
        assert api(registry, "GET", "/api/v1/authenticate").status_code == 200
        log = registry.stderr_text()
    assert "internal error" not in log
    assert "Traceback" not in log


# -- limits ----------------------------------------------------------------------------------


def test_a_connection_past_the_limit_gets_503_and_the_server_serves_on(tmp_path: Path) -> None:
    env = {"ATLAS_REGISTRY_MAX_CONNECTIONS": "3"}
    with RegistryProcess(tmp_path / "data", env=env) as registry:
        held = [
            http.client.HTTPConnection("127.0.0.1", registry.port, timeout=TIMEOUT)
            for _ in range(3)
        ]
        try:
            for conn in held:  # three kept-alive connections, each served once
                conn.request("GET", "/api/v1/authenticate", headers=registry.headers)
                assert conn.getresponse().read()
            answers, _ = exchange(
                registry.port,
                f"GET /api/v1/authenticate HTTP/1.1\r\nX-Atlas-Token: {registry.token}\r\n\r\n".encode(),
            )
            assert [a.status for a in answers] == [503]
            assert answers[0].headers["retry-after"] == "1"
            assert answers[0].headers["connection"] == "close"
            assert "limit of 3 connections" in json.loads(answers[0].body)["errors"][0]
            # The held ones still work; once one closes, a new connection is served again.
            held[0].request("GET", "/api/v1/authenticate", headers=registry.headers)
            assert held[0].getresponse().status == 200
            held.pop().close()
            assert _served_again(registry)
        finally:
            for conn in held:
                conn.close()
        assert "refused: connection limit reached" in registry.stderr_text()


def _threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads: line")


@pytest.mark.skipif(
    not Path("/proc/self/status").exists() and os.environ.get("CI") != "true",
    reason="counts threads in /proc",  # under CI=true it runs, and fails without /proc
)
def test_many_idle_connections_do_not_make_many_threads(tmp_path: Path) -> None:
    with RegistryProcess(tmp_path / "data", extra_args=["--max-connections", "10"]) as registry:
        assert registry.process is not None
        idle = []
        try:
            for _ in range(200):
                idle.append(socket.create_connection(("127.0.0.1", registry.port), timeout=TIMEOUT))
            # Every connection past the tenth is answered 503 and closed by the server.
            refused = 0
            for sock in idle[10:]:
                if read_until_closed(sock).startswith(b"HTTP/1.1 503 "):
                    refused += 1
            assert refused == 190
            # Ten connection threads, the main and accepting threads, the refuser.
            assert _threads(registry.process.pid) <= 10 + 3
        finally:
            for sock in idle:
                sock.close()
        assert _served_again(registry)


def _served_again(registry: RegistryProcess) -> bool:
    # The server learns of the close when the handler's read returns: poll briefly.
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        try:
            response = requests.get(
                registry.url + "/api/v1/authenticate", headers=registry.headers, timeout=TIMEOUT
            )
        except requests.ConnectionError:
            response = None
        if response is not None and response.status_code == 200:
            return True
        time.sleep(0.05)
    return False


def test_a_client_sending_its_headers_too_slowly_is_dropped(tmp_path: Path) -> None:
    with RegistryProcess(
        tmp_path / "data",
        extra_args=["--header-timeout", "1"],
    ) as registry:
        request = (
            f"GET /api/v1/authenticate HTTP/1.1\r\nHost: x\r\nX-Atlas-Token: {registry.token}\r\n"
            "X-Padding: slowly-slowly-slowly\r\n\r\n"
        ).encode()
        sock = socket.create_connection(("127.0.0.1", registry.port), timeout=TIMEOUT)
        sent = 0
        try:
            # A byte every 0.1 s: each read of the server sees data well inside --timeout,
            # but the whole head would take ~10 s.
            while sent < len(request):
                readable, _, _ = select.select([sock], [], [], 0.1)
                if readable:
                    break
                try:
                    sock.send(request[sent : sent + 1])
                except (BrokenPipeError, ConnectionResetError):
                    break
                sent += 1
                if sent == 3:  # meanwhile, others are served
                    assert api(registry, "GET", "/api/v1/authenticate").status_code == 200
            received = read_until_closed(sock)
        finally:
            sock.close()
        assert sent < len(request), "the server waited for the whole slow head"
        assert received.startswith(b"HTTP/1.1 408 "), received
        assert api(registry, "GET", "/api/v1/authenticate").status_code == 200
        assert "headers incomplete after --header-timeout" in registry.stderr_text()


def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(
    tmp_path: Path,
) -> None:
    with RegistryProcess(
        tmp_path / "data",
        extra_args=["--header-timeout", "0.5", "--timeout", "60"],
    ) as registry:
        sock = socket.create_connection(("127.0.0.1", registry.port), timeout=TIMEOUT)
        try:
            assert read_until_closed(sock) == b""  # closed well before --timeout's 60 s
        finally:
            sock.close()
        assert api(registry, "GET", "/api/v1/authenticate").status_code == 200


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--max-connections", "0"),
        ("--max-connections", "many"),
        ("--header-timeout", "0"),
        ("--header-timeout", "nan"),
        ("--header-timeout", "-1"),
    ],
)
def test_an_unusable_limit_is_a_config_error(tmp_path: Path, flag: str, value: str) -> None:
    registry = RegistryProcess(tmp_path / "data", extra_args=[flag, value])
    with pytest.raises(RuntimeError, match=flag):
        registry.start()
    assert registry.returncode == 2


def _stored_names(registry: RegistryProcess) -> list[tuple[str, ...]]:
    """Every artifact and version name in the registry's database, read there directly."""
    from atlas_ci.registry.database import open_database

    database = open_database(registry.database, registry.data)
    try:
        with database.connection() as conn:
            artifacts = conn.execute('SELECT "user", name FROM artifacts').fetchall()
            types = conn.execute('SELECT "user", name, type FROM versions').fetchall()
    finally:
        database.close()
    return sorted(tuple(row) for row in [*artifacts, *types])


@pytest.mark.parametrize("char", ["\x00", "\x01", "\x1f", "\x7f"])
@pytest.mark.parametrize("where", ["username", "name", "type"])
def test_a_control_character_in_a_name_is_422_and_nothing_is_created(
    registry: RegistryProcess, where: str, char: str
) -> None:
    """NUL above all: a check loosened to ``0 < ord(c) < 0x20`` answered 201 and created
    user "a\\u0000"; the fuzz test only asserts "below 500"."""
    create_artifact(registry)
    before = _stored_names(registry)
    bad = f"a{char}"
    if where == "type":
        path = f"/api/v1/artifacts/u/n/a%{ord(char):02X}"
        body: dict[str, object] = {"artifact_version": {"metadata": {}}}
        response = api(registry, "POST", path, json=body)
        if char == "\x00":  # refused as a path before the name is looked at
            assert response.status_code == 400, response.text
            assert "NUL" in response.json()["errors"][0]
    else:
        names = {"username": "u", "name": "n", where: bad}
        response = api(registry, "POST", "/api/v1/artifacts", json={"artifact": names})
    if not (where == "type" and char == "\x00"):
        assert response.status_code == 422, response.text
        # A NUL anywhere in a JSON body is refused before the name is looked at.
        expected = "NUL character" if char == "\x00" else "control characters"
        assert expected in response.json()["errors"][0]
    assert _stored_names(registry) == before == [("u", "n")]


@pytest.mark.parametrize("path", ["/api/v1/artifacts/a%00/n", "/api/v1/artifacts/u/n/t%00/search"])
def test_a_nul_in_a_path_is_400_on_every_database(registry: RegistryProcess, path: str) -> None:
    """PostgreSQL cannot be asked about a NUL: a GET of one was a 500 there."""
    response = api(registry, "GET", path)
    assert response.status_code == 400, response.text
    assert "internal error" not in registry.stderr_text()


@pytest.mark.parametrize(
    "version",
    [{"id": "a\u0000"}, {"metadata": {"k\u0000": "v"}}, {"metadata": {"k": "v\u0000"}}],
)
def test_a_nul_in_a_version_s_id_or_metadata_is_422_on_every_database(
    registry: RegistryProcess, version: dict[str, object]
) -> None:
    """SQLite stored it (201); PostgreSQL cannot, and answered 500."""
    create_artifact(registry)
    response = api(registry, "POST", "/api/v1/artifacts/u/n/t", json={"artifact_version": version})
    assert response.status_code == 422, response.text
    assert "NUL" in response.json()["errors"][0]
    assert _stored_names(registry) == [("u", "n")]
    assert "internal error" not in registry.stderr_text()
