from __future__ import annotations

import gzip
import json
import ssl
import zlib
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
import urllib3.exceptions
from responses import matchers

from atlas_ci import USER_AGENT
from atlas_ci.client import Ambiguous, AtlasClient, NotFound, parse_version
from atlas_ci.errors import AtlasCIError, AuthError, RegistryRefused, RegistryUnavailable
from atlas_ci.retry import RetryPolicy
from atlas_ci.settings import Inputs, Settings

BASE = "https://atlas.example"
TOKEN = "s3cr3t-token-value"
UPLOAD = "https://binstore.example/put/abc?X-Sig=presigned-secret"


def settings(**flags: Any) -> Settings:
    flags.setdefault("artifact", "acme/web")
    flags.setdefault("atlas_url", BASE)
    return Settings.from_inputs(Inputs(**flags), {"ATLAS_TOKEN": TOKEN})


def client(lines: list[str] | None = None, **flags: Any) -> AtlasClient:
    policy = RetryPolicy(retries=3, max_wait=10, sleep=lambda s: None, rand=lambda: 0.5)
    log = lines.append if lines is not None else None
    return AtlasClient(settings(**flags), policy=policy, log=log)


@responses.activate
def test_authenticate_sends_token_and_our_user_agent() -> None:
    responses.get(f"{BASE}/api/v1/authenticate", json={"user": {}})
    client().authenticate()
    req = responses.calls[0].request
    assert req.headers["X-Atlas-Token"] == TOKEN
    assert req.headers["User-Agent"] == USER_AGENT
    assert "Accept" not in req.headers
    assert "Content-Type" not in req.headers


@responses.activate
def test_no_token_header_when_no_token() -> None:
    responses.get(f"{BASE}/api/v1/authenticate", status=204)
    c = AtlasClient(Settings.from_inputs(Inputs(artifact="a/b", atlas_url=BASE, no_token=True), {}))
    c.authenticate()
    assert "X-Atlas-Token" not in responses.calls[0].request.headers


@pytest.mark.parametrize("status", [200, 201, 202, 204])
@responses.activate
def test_atlas_gos_four_success_codes_authenticate(status: int) -> None:
    body = "" if status == 204 else "not json"
    responses.get(f"{BASE}/api/v1/authenticate", status=status, body=body)
    client().authenticate()
    [call] = responses.calls
    assert call.request.method == "GET"
    assert call.request.url == f"{BASE}/api/v1/authenticate"
    assert call.request.headers["X-Atlas-Token"] == TOKEN
    assert call.request.body is None


@responses.activate
def test_create_if_missing_posts_exact_body_after_404() -> None:
    url = f"{BASE}/api/v1/artifacts/acme/web"
    responses.get(url, status=404, json={"errors": ["not found"]})
    responses.post(
        f"{BASE}/api/v1/artifacts",
        status=201,
        json={"artifact": {}},
        match=[matchers.header_matcher({"Content-Type": "application/json"})],
    )
    lines: list[str] = []
    assert client(lines).create_artifact("acme", "web") is True
    assert responses.calls[1].request.body == b'{"artifact":{"name":"web","username":"acme"}}'
    assert "Creating artifact: acme/web" in lines


@responses.activate
def test_existing_artifact_is_not_created() -> None:
    responses.get(f"{BASE}/api/v1/artifacts/acme/web", json={"artifact": {"name": "web"}})
    assert client().create_artifact("acme", "web") is False
    assert len(responses.calls) == 1


@responses.activate
def test_artifact_lookup_must_be_json() -> None:
    responses.get(f"{BASE}/api/v1/artifacts/acme/web", body="<html>")
    with pytest.raises(RegistryRefused, match="not JSON"):
        client().create_artifact("acme", "web")


@responses.activate
def test_lost_create_race_rechecks_and_carries_on() -> None:
    url = f"{BASE}/api/v1/artifacts/acme/web"
    responses.get(url, status=404)
    responses.post(f"{BASE}/api/v1/artifacts", status=422, json={"errors": ["name taken"]})
    responses.get(url, json={"artifact": {}})
    assert client().create_artifact("acme", "web") is False
    assert [c.request.method for c in responses.calls] == ["GET", "POST", "GET"]


@responses.activate
def test_version_body_is_sent_as_given_sorted_and_compact() -> None:
    url = f"{BASE}/api/v1/artifacts/acme/web/amazon.ami"
    responses.post(url, status=201, json={"version": 4, "upload_path": None})
    body = {
        "artifact_version": {
            "metadata": None,
            "id": "us-east-1:ami-1",
            "file": False,
            "compile_id": 0,
            "build_id": 16,
        }
    }
    v = client().create_version("acme", "web", "amazon.ami", body, file=False)
    assert v.version == 4
    sent = responses.calls[0].request.body
    assert sent == (
        b'{"artifact_version":{"build_id":16,"compile_id":0,"file":false,'
        b'"id":"us-east-1:ami-1","metadata":null}}'
    )


@pytest.mark.parametrize(
    "body",
    [
        {"username": "u", "name": "n", "version": 4, "upload_path": UPLOAD, "file": True},
        {"Version": 4, "Upload_Path": UPLOAD},
        {"version": {"version": 4, "upload_path": UPLOAD}},
    ],
)
def test_version_answer_flat_case_insensitive_or_wrapped(body: dict[str, Any]) -> None:
    v = parse_version(body, file=True)
    assert (v.version, v.upload_path) == (4, UPLOAD)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "not a JSON object"),
        ({"version": "4"}, "no integer"),
        ({"version": True}, "no integer"),
        ({"version": 4}, "no upload_path"),
        ({"version": 4, "upload_path": "/relative/path"}, "not an absolute"),
        ({"version": 4, "upload_path": ""}, "no upload_path"),
    ],
)
def test_version_answer_outside_the_contract(body: Any, message: str) -> None:
    with pytest.raises(RegistryRefused, match=message) as err:
        parse_version(body, file=True)
    assert "presigned" not in err.value.one_line()


@responses.activate
def test_only_first_json_value_is_read() -> None:
    responses.post(
        f"{BASE}/api/v1/artifacts/acme/web/t",
        body='  {"version": 7, "extra": 1} {"trailing": true}',
    )
    assert client().create_version("acme", "web", "t", {}, file=False).version == 7


@pytest.mark.parametrize(
    ("status", "body", "exc", "text"),
    [
        (400, {"errors": ["e1", "e2"]}, RegistryRefused, "e1, e2"),
        (422, {"errors": ["metadata must be strings"]}, RegistryRefused, "metadata must be"),
        (422, "garbage", RegistryRefused, "could not be decoded"),
        (401, {}, AuthError, "authentication failed"),
        (
            403,
            {"errors": ["user alice has no write access to organization acme"]},
            AuthError,
            "permission denied \\(403\\) during the version creation: user alice has no write",
        ),
        (404, {}, NotFound, "not found"),
        (409, {}, RegistryRefused, "409 Conflict"),
        (418, {}, RegistryRefused, "418"),
    ],
)
@responses.activate
def test_status_table(status: int, body: Any, exc: type[Exception], text: str) -> None:
    kw = {"json": body} if isinstance(body, dict) else {"body": body}
    responses.post(f"{BASE}/api/v1/artifacts/acme/web/t", status=status, **kw)
    with pytest.raises(exc, match=text):
        client().create_version("acme", "web", "t", {}, file=False)
    assert len(responses.calls) == 1  # never retried


@responses.activate
def test_403_names_the_organization_to_join() -> None:
    responses.post(
        f"{BASE}/api/v1/artifacts/acme/web/t",
        status=403,
        json={"errors": ["user alice has no write access to organization acme"]},
    )
    with pytest.raises(AuthError) as err:
        client().create_version("acme", "web", "t", {}, file=False)
    assert err.value.exit_code == 4
    assert "write member of organization acme" in err.value.one_line()
    assert TOKEN not in err.value.one_line()


@responses.activate
def test_401_maps_to_exit_code_4_and_names_the_token_variable() -> None:
    responses.get(f"{BASE}/api/v1/authenticate", status=401)
    with pytest.raises(AuthError) as err:
        client().authenticate()
    assert err.value.exit_code == 4
    assert "ATLAS_TOKEN" in err.value.one_line()
    assert TOKEN not in err.value.one_line()


@responses.activate
def test_error_body_echoing_the_token_is_redacted() -> None:
    responses.post(
        f"{BASE}/api/v1/artifacts/acme/web/t", status=422, json={"errors": [f"bad {TOKEN}"]}
    )
    with pytest.raises(RegistryRefused) as err:
        client().create_version("acme", "web", "t", {}, file=False)
    assert TOKEN not in err.value.one_line()


@responses.activate
def test_get_retries_5xx_and_429_with_backoff_then_succeeds() -> None:
    url = f"{BASE}/api/v1/authenticate"
    responses.get(url, status=503)
    responses.get(url, status=429, headers={"Retry-After": "3"})
    responses.get(url, status=502)
    responses.get(url, status=200)
    lines: list[str] = []
    slept: list[float] = []
    policy = RetryPolicy(retries=3, max_wait=10, sleep=slept.append, rand=lambda: 0.5)
    AtlasClient(settings(), policy=policy, log=lines.append).authenticate()
    assert len(responses.calls) == 4
    # full jitter at rand=0.5 of caps 0.5, 1, 2; Retry-After 3 beats the second
    assert slept == [0.25, 3.0, 1.0]
    assert len(lines) == 3 and "retry 1/3" in lines[0] and "503" in lines[0]


@responses.activate
def test_get_gives_up_after_retries_with_exit_6() -> None:
    responses.get(f"{BASE}/api/v1/authenticate", status=500)
    with pytest.raises(RegistryUnavailable) as err:
        client().authenticate()
    assert err.value.exit_code == 6
    assert len(responses.calls) == 4


def refused() -> requests.ConnectionError:
    """What requests raises when nobody listens: the refusal is in the chain, not the text."""
    failure = urllib3.exceptions.NewConnectionError(None, "Failed to establish a connection")  # type: ignore[arg-type]
    failure.__cause__ = ConnectionRefusedError(111, "Connection refused")
    return requests.ConnectionError(urllib3.exceptions.MaxRetryError(None, "/", failure))  # type: ignore[arg-type]


@responses.activate
def test_connection_refused_is_retried_and_reported_as_unreachable() -> None:
    responses.get(f"{BASE}/api/v1/authenticate", body=refused())
    with pytest.raises(RegistryUnavailable, match="connection refused"):
        client().authenticate()
    assert len(responses.calls) == 4


@responses.activate
def test_a_version_post_that_never_left_is_sent_again_but_one_that_did_is_not() -> None:
    url = f"{BASE}/api/v1/artifacts/acme/web/t"
    responses.post(url, body=refused())
    responses.post(url, status=201, json={"version": 2})
    assert client().create_version("acme", "web", "t", {}, file=False).version == 2
    responses.reset()
    # A connection reset names no refusal in its chain: it may have been processed.
    responses.post(url, body=requests.ConnectionError(ConnectionResetError(104, "reset")))
    with pytest.raises(Ambiguous, match="connection reset"):
        client().create_version("acme", "web", "t", {}, file=False)
    assert len(responses.calls) == 1


@responses.activate
def test_version_post_not_replayed_after_ambiguous_failure() -> None:
    responses.post(f"{BASE}/api/v1/artifacts/acme/web/t", status=502)
    with pytest.raises(RegistryUnavailable, match="may or may not"):
        client().create_version("acme", "web", "t", {}, file=False)
    assert len(responses.calls) == 1


@responses.activate
def test_version_post_retried_when_server_says_it_did_nothing() -> None:
    url = f"{BASE}/api/v1/artifacts/acme/web/t"
    responses.post(url, status=503)
    responses.post(url, status=201, json={"version": 1})
    assert client().create_version("acme", "web", "t", {}, file=False).version == 1


@responses.activate
def test_redirect_to_other_origin_drops_the_token() -> None:
    responses.get(
        f"{BASE}/api/v1/artifacts/acme/web",
        status=302,
        headers={"Location": "https://elsewhere.example/a"},
    )
    responses.get("https://elsewhere.example/a", json={"artifact": {}})
    assert client().get_artifact("acme", "web") == {"artifact": {}}
    assert responses.calls[0].request.headers["X-Atlas-Token"] == TOKEN
    assert "X-Atlas-Token" not in responses.calls[1].request.headers


@responses.activate
def test_redirect_of_a_write_is_refused() -> None:
    responses.post(
        f"{BASE}/api/v1/artifacts/acme/web/t",
        status=307,
        headers={"Location": "https://elsewhere.example/v"},
    )
    with pytest.raises(RegistryRefused, match="writes are not redirected"):
        client().create_version("acme", "web", "t", {}, file=False)
    assert len(responses.calls) == 1


@responses.activate
def test_search_sends_terraform_params_and_tolerates_missing_endpoint() -> None:
    url = f"{BASE}/api/v1/artifacts/acme/web/t/search"
    responses.get(url, json={"versions": [{"version": 3}]})
    params = {"version": "latest", "metadata.1.key": "k"}
    answer = client().search("acme", "web", "t", params)
    assert answer is not None
    assert answer.versions == [{"version": 3}]
    assert answer.pending_listed is False
    assert "metadata.1.key=k" in str(responses.calls[0].request.url)
    responses.replace(responses.GET, url, status=404)
    assert client().search("acme", "web", "t", params) is None


@responses.activate
def test_put_streams_file_without_token_keeping_query(tmp_path: Path) -> None:
    data = b"x" * (3 * 1024 * 1024 + 5)
    f = tmp_path / "a.box"
    f.write_bytes(data)
    responses.put(UPLOAD, status=200)
    client().upload(UPLOAD, f, len(data))  # the hash of what was sent: integration tests
    req = responses.calls[0].request
    assert "X-Atlas-Token" not in req.headers
    assert "Content-Type" not in req.headers
    assert req.headers["Content-Length"] == str(len(data))
    assert "X-Sig=presigned-secret" in req.url


@responses.activate
def test_put_retried_then_failure_never_shows_upload_url(tmp_path: Path) -> None:
    f = tmp_path / "a.box"
    f.write_bytes(b"abc")
    responses.put(UPLOAD, status=503)
    with pytest.raises(RegistryUnavailable) as err:
        client().upload(UPLOAD, f, 3)
    assert len(responses.calls) == 4
    assert "presigned" not in err.value.one_line() and "binstore" not in err.value.one_line()


@responses.activate
def test_put_redirect_is_an_error(tmp_path: Path) -> None:
    f = tmp_path / "a.box"
    f.write_bytes(b"abc")
    responses.put(UPLOAD, status=307, headers={"Location": "https://x.example/"})
    with pytest.raises(RegistryRefused, match="redirect"):
        client().upload(UPLOAD, f, 3)


def test_version_json_of_request_is_what_the_wire_doc_says() -> None:
    # the client serialises with sort_keys and compact separators
    body = {"b": 1, "a": {"z": None, "y": {}}}
    assert (
        json.dumps(body, sort_keys=True, separators=(",", ":")) == '{"a":{"y":{},"z":null},"b":1}'
    )


# --- what a registry sends is bounded and checked ------------------------------------


@pytest.mark.parametrize(
    ("encoding", "packed"),
    [
        ("gzip", gzip.compress(b'{"artifact": {"name": "web"}}')),
        ("deflate", zlib.compress(b'{"artifact": {"name": "web"}}')),
        ("deflate", zlib.compress(b'{"artifact": {"name": "web"}}')[2:-4]),  # raw deflate
        ("gzip", gzip.compress(b'{"artifact": ') + gzip.compress(b'{"name": "web"}}')),
    ],
)
@responses.activate
def test_compressed_answers_are_read(encoding: str, packed: bytes) -> None:
    responses.get(
        f"{BASE}/api/v1/artifacts/acme/web", body=packed, headers={"Content-Encoding": encoding}
    )
    assert client().get_artifact("acme", "web") == {"artifact": {"name": "web"}}
    assert responses.calls[0].request.headers["Accept-Encoding"] == "gzip, deflate"


@responses.activate
def test_a_gzip_bomb_is_refused_at_the_cap_after_inflation() -> None:
    bomb = gzip.compress(bytes(64 << 20), compresslevel=9)  # 64 MiB of zeros, ~64 KiB sent
    responses.get(
        f"{BASE}/api/v1/artifacts/acme/web", body=bomb, headers={"Content-Encoding": "gzip"}
    )
    with pytest.raises(RegistryRefused, match="larger than 8 MiB") as err:
        client().get_artifact("acme", "web")
    assert err.value.exit_code == 5


@responses.activate
def test_an_answer_over_the_cap_is_refused_and_one_in_an_unasked_encoding_too() -> None:
    url = f"{BASE}/api/v1/artifacts/acme/web/t/search"
    responses.get(url, body=b" " * (8 << 20) + b"{}")
    with pytest.raises(RegistryRefused, match="larger than 8 MiB"):
        client().search("acme", "web", "t", {"version": "any"})
    responses.replace(responses.GET, url, body=b"xx", headers={"Content-Encoding": "br"})
    with pytest.raises(RegistryRefused, match="encoding not asked for"):
        client().search("acme", "web", "t", {"version": "any"})


@pytest.mark.parametrize("where", ["artifact", "version"])
@responses.activate
def test_json_nested_past_the_parser_is_a_bad_answer_not_a_crash(where: str) -> None:
    nested = "[" * 100_000 + "]" * 100_000
    if where == "artifact":
        responses.get(f"{BASE}/api/v1/artifacts/acme/web", body=nested)
        with pytest.raises(RegistryRefused, match="not JSON") as err:
            client().get_artifact("acme", "web")
        assert err.value.exit_code == 5
    else:
        responses.post(f"{BASE}/api/v1/artifacts/acme/web/t", status=201, body=nested)
        with pytest.raises(Ambiguous) as amb:  # the flow then says what may exist
            client().create_version("acme", "web", "t", {}, file=False)
        assert amb.value.unreadable


@pytest.mark.parametrize(
    ("location", "words"),
    [
        ("file:///etc/passwd", "a file: address"),
        ("ftp://elsewhere.example/x", "a ftp: address"),
        ("http://[::1/x", "malformed"),
        ("http://elsewhere.example:99999/x", "an unusable address"),
        ("http:///no-host", "an unusable address"),
    ],
)
@responses.activate
def test_a_redirect_to_anything_but_http_is_refused_at_once(location: str, words: str) -> None:
    responses.get(f"{BASE}/api/v1/authenticate", status=302, headers={"Location": location})
    with pytest.raises(RegistryRefused, match=words) as err:
        client().authenticate()
    assert err.value.exit_code == 5
    assert len(responses.calls) == 1  # not retried as a network error


@pytest.mark.parametrize("upload_path", ["http://[::1/put", "http://h:99999999999/put"])
def test_an_upload_path_that_is_no_url_is_refused_not_a_crash(upload_path: str) -> None:
    with pytest.raises(RegistryRefused):
        parse_version({"version": 3, "upload_path": upload_path}, file=True)


@responses.activate
def test_the_idempotency_extension_counts_only_while_every_2xx_announces_it() -> None:
    announce = {"X-Atlas-Extensions": "Something-Else , IDEMPOTENCY-KEY"}
    responses.get(f"{BASE}/api/v1/authenticate", json={}, headers=announce)
    responses.get(f"{BASE}/api/v1/artifacts/acme/web", json={}, headers=announce)
    c = client()
    assert not c.idempotent
    c.authenticate()
    assert c.idempotent
    c.get_artifact("acme", "web")
    assert c.idempotent
    responses.replace(responses.GET, f"{BASE}/api/v1/artifacts/acme/web", json={})
    c.get_artifact("acme", "web")  # a node that does not honour it: off for the run
    assert not c.idempotent
    c.authenticate()
    assert not c.idempotent


@responses.activate
def test_a_keyed_version_post_is_replayed_only_when_the_registry_honours_the_key() -> None:
    announce = {"X-Atlas-Extensions": "idempotency-key"}
    url = f"{BASE}/api/v1/artifacts/acme/web/t"
    responses.get(f"{BASE}/api/v1/authenticate", json={}, headers=announce)
    responses.post(url, status=502)
    responses.post(url, status=201, json={"version": 5}, headers=announce)
    c = client()
    c.authenticate()
    v = c.create_version("acme", "web", "t", {}, file=False, idempotency_key="k-123")
    assert v.version == 5
    posts = [call.request for call in responses.calls if call.request.method == "POST"]
    assert [p.headers["Idempotency-Key"] for p in posts] == ["k-123", "k-123"]


def test_the_client_closes_its_session_as_a_context_manager() -> None:
    closed: list[bool] = []
    session = requests.Session()
    session.close = lambda: closed.append(True)  # type: ignore[method-assign]
    with AtlasClient(settings(), session=session) as c:
        assert c.session is session and not closed
    assert closed == [True]


@responses.activate
def test_only_a_certificate_failure_is_final_another_tls_error_may_have_been_sent() -> None:
    url = f"{BASE}/api/v1/artifacts/acme/web/t"
    bad_cert = ssl.SSLCertVerificationError(1, "certificate verify failed")
    responses.post(url, body=requests.exceptions.SSLError(bad_cert))
    with pytest.raises(RegistryUnavailable, match="TLS verification failed") as err:
        client().create_version("acme", "web", "t", {}, file=False)
    assert not isinstance(err.value, Ambiguous)
    assert len(responses.calls) == 1
    responses.reset()
    broken = ssl.SSLError(1, "decryption failed or bad record mac")
    responses.post(url, body=requests.exceptions.SSLError(broken))
    with pytest.raises(Ambiguous, match="TLS error"):  # the POST may have been processed
        client().create_version("acme", "web", "t", {}, file=False)


@pytest.mark.parametrize("status", [203, 205, 206])
@responses.activate
def test_other_2xx_codes_do_not_authenticate(status: int) -> None:
    """atlas-go's checkResp takes 200, 201, 202 and 204 only; so does the uploader."""
    responses.get(f"{BASE}/api/v1/authenticate", status=status, body="")
    with pytest.raises(AtlasCIError) as caught:
        client().authenticate()
    assert str(status) in str(caught.value)
    assert len(responses.calls) == 1  # an answer, not a failure to retry
