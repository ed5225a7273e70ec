"""Non-idempotent calls against a mocked registry: confirm before posting again, never guess."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import requests
import responses

from atlas_ci.archive import Payload
from atlas_ci.client import Ambiguous, AtlasClient, UploadConflict, Version
from atlas_ci.delivery import Delivery, Job
from atlas_ci.digest import FileDigest
from atlas_ci.errors import InputFileError, RegistryRefused, RegistryUnavailable
from atlas_ci.manifest import Artifact
from atlas_ci.redaction import redact
from atlas_ci.retry import RetryPolicy
from atlas_ci.settings import Inputs, Settings
from atlas_ci.sourcefile import open_source

BASE = "https://atlas.example"
ART = f"{BASE}/api/v1/artifacts/acme/web"
VERSIONS = f"{ART}/amazon.ami"
SEARCH = f"{VERSIONS}/search"
UPLOAD = "https://binstore.example/put/abc?sig=presigned-secret-1"


def client(lines: list[str]) -> AtlasClient:
    s = Settings.from_inputs(
        Inputs(artifact="acme/web", atlas_url=BASE), {"ATLAS_TOKEN": "tok-123456"}
    )
    policy = RetryPolicy(retries=2, max_wait=0, sleep=lambda _s: None, rand=lambda: 0.0)
    return AtlasClient(s, policy=policy, log=lines.append)


def job() -> Job:
    artifact = Artifact(
        id="us-east-1:ami-1",
        files=(),
        builder_type="amazon-ebs",
        build="web",
        source="manifest",
        metadata=None,
    )
    return Job(
        artifact=artifact, artifact_type="amazon.ami", metadata={"region.us-east-1": "ami-1"}
    )


def _version(number: int, **extra: Any) -> dict[str, Any]:
    """A version as the registry lists it; by default the one ``_create`` asks for."""
    return {
        "version": number,
        "id": "us-east-1:ami-1",
        "metadata": {"region.us-east-1": "ami-1"},
        "build_id": 111,
        "compile_id": 7,
        "file": False,
        **extra,
    }


def _create(api: AtlasClient, lines: list[str], has_file: bool = False) -> Any:
    body = {
        "artifact_version": {
            "build_id": 111,
            "compile_id": 7,
            "file": has_file,
            "id": "us-east-1:ami-1",
            "metadata": {"region.us-east-1": "ami-1"},
        }
    }
    return Delivery(api.settings, api, lines.append).create_version(job(), body, has_file)


@responses.activate
def test_artifact_post_sent_again_only_after_the_get_says_it_is_missing() -> None:
    responses.get(ART, status=404)
    responses.post(f"{BASE}/api/v1/artifacts", status=502)
    responses.get(ART, status=404)
    responses.post(f"{BASE}/api/v1/artifacts", status=201, json={"artifact": {}})
    lines: list[str] = []
    assert client(lines).create_artifact("acme", "web") is True
    assert [c.request.method for c in responses.calls] == ["GET", "POST", "GET", "POST"]
    assert "artifact creation failed (502 Bad Gateway; not created); retry 1/2 in 0.0s" in lines


@responses.activate
def test_artifact_post_whose_answer_was_lost_is_found_by_the_get() -> None:
    responses.get(ART, status=404)
    responses.post(f"{BASE}/api/v1/artifacts", body="<html>proxy</html>")
    responses.get(ART, json={"artifact": {}})
    assert client([]).create_artifact("acme", "web") is False
    assert [c.request.method for c in responses.calls] == ["GET", "POST", "GET"]


@responses.activate
def test_version_post_answered_2xx_unreadable_is_ambiguous() -> None:
    responses.post(VERSIONS, status=201, body="not json")
    with pytest.raises(Ambiguous) as err:
        client([]).create_version("acme", "web", "amazon.ami", {}, file=False)
    assert err.value.unreadable


@responses.activate
def test_version_post_again_only_when_every_version_is_listed_and_none_is_ours() -> None:
    responses.get(SEARCH, json={"versions": [_version(3)], "pending_listed": True})
    responses.post(VERSIONS, status=500)
    responses.get(SEARCH, json={"versions": [_version(3)], "pending_listed": True})
    responses.post(VERSIONS, status=201, json=_version(4))
    lines: list[str] = []
    assert _create(client(lines), lines).version == 4
    posts = [c for c in responses.calls if c.request.method == "POST"]
    assert len(posts) == 2
    assert any("not created); retry 1/2" in line for line in lines)


@responses.activate
def test_version_created_by_the_failed_post_is_adopted_not_posted_again() -> None:
    responses.get(SEARCH, json={"versions": [_version(3)], "pending_listed": True})
    responses.post(VERSIONS, body=requests.ConnectionError("Connection reset by peer"))
    responses.get(
        SEARCH,
        json={
            "versions": [
                _version(4, state="pending", upload_path=UPLOAD, file=True),
                _version(3),
            ],
            "pending_listed": True,
        },
    )
    lines: list[str] = []
    adopted = _create(client(lines), lines, has_file=True)
    assert (adopted.version, adopted.upload_path) == (4, UPLOAD)
    assert len([c for c in responses.calls if c.request.method == "POST"]) == 1
    assert redact(f"x {UPLOAD} y") == "x *** y"  # the adopted URL is never printed


@pytest.mark.parametrize(
    ("baseline", "after"),
    [
        # no search at all: nothing to compare with
        ({"status": 404}, {"status": 404}),
        # two candidates: which one is ours?
        (
            {"json": {"versions": [_version(3)], "pending_listed": True}},
            {
                "json": {
                    "versions": [_version(5, file=True), _version(4, file=True)],
                    "pending_listed": True,
                }
            },
        ),
        # pending versions not listed and a file is sent: absence proves nothing
        ({"json": {"versions": [_version(3)]}}, {"json": {"versions": [_version(3)]}}),
    ],
)
@responses.activate
def test_when_the_registry_cannot_tell_exit_6_says_what_may_exist_and_how_to_check(
    baseline: dict[str, Any], after: dict[str, Any]
) -> None:
    responses.get(SEARCH, **baseline)
    responses.post(VERSIONS, status=504)
    responses.get(SEARCH, **after)
    with pytest.raises(RegistryUnavailable) as err:
        _create(client([]), [], has_file=True)
    assert err.value.exit_code == 6
    line = err.value.one_line()
    assert "may exist" in line and "atlas-ci search" in line and "--pending" in line
    assert len([c for c in responses.calls if c.request.method == "POST"]) == 1


@pytest.mark.parametrize("has_file", [True, False])
@responses.activate
def test_two_pending_candidates_that_both_match_are_ambiguous_and_neither_is_adopted(
    has_file: bool,
) -> None:
    """Either could be ours (or a parallel job's with the same fields): adopting one would
    upload to a stranger's version or leave ours pending. The older "two candidates" case
    was refused for another reason (its candidates were not pending)."""
    upload_2 = UPLOAD.replace("abc", "def")
    responses.get(SEARCH, json={"versions": [_version(3)], "pending_listed": True})
    responses.post(VERSIONS, body=requests.ConnectionError("Connection reset by peer"))
    candidates = [
        _version(5, state="pending", upload_path=upload_2, file=has_file),
        _version(4, state="pending", upload_path=UPLOAD, file=has_file),
        _version(3),
    ]
    responses.get(SEARCH, json={"versions": candidates, "pending_listed": True})
    lines: list[str] = []
    with pytest.raises(RegistryUnavailable) as err:
        _create(client(lines), lines, has_file=has_file)
    line = err.value.one_line()
    assert "newer than version 3" in line and "may exist and the registry cannot tell" in line
    assert not any(line.startswith("Adopting") for line in lines), lines
    assert len([c for c in responses.calls if c.request.method == "POST"]) == 1


def confirm(api: AtlasClient, v: Version, payload: Payload, say: Any) -> str:
    """``Delivery.put_file`` with the digest the flow starts for every payload."""
    digest = FileDigest(payload.file.fd, payload.size, str(payload.path))
    try:
        return Delivery(api.settings, api, say).put_file(job(), v, payload, digest, None)
    finally:
        digest.cancel()
        payload.close()


def _payload(tmp_path: Path, data: bytes) -> Payload:
    path = tmp_path / "a.box"
    path.write_bytes(data)
    return Payload(path=path, size=len(data), temporary=False, file=open_source(path))


@responses.activate
def test_put_whose_answer_was_lost_is_confirmed_by_the_registry(tmp_path: Path) -> None:
    data = b"box bytes"
    sha = hashlib.sha256(data).hexdigest()
    responses.put(UPLOAD, body=requests.ConnectionError("Connection reset by peer"))
    responses.put(UPLOAD, status=409, json={"errors": ["already uploaded"]})
    responses.get(
        SEARCH, json={"versions": [_version(4, state="ready", sha256=sha)], "pending_listed": True}
    )
    lines: list[str] = []
    api = client(lines)
    v = Version(version=4, upload_path=UPLOAD, raw={})
    assert confirm(api, v, _payload(tmp_path, data), lines.append) == sha
    assert any("an earlier try went through" in line for line in lines)


@responses.activate
def test_put_answered_2xx_but_not_stored_is_sent_again(tmp_path: Path) -> None:
    data = b"box bytes"
    sha = hashlib.sha256(data).hexdigest()
    responses.put(UPLOAD, status=200, body="garbage")
    responses.get(
        SEARCH,
        json={
            "versions": [_version(4, state="pending", upload_path=UPLOAD)],
            "pending_listed": True,
        },
    )
    responses.put(UPLOAD, status=200, json={})
    responses.get(
        SEARCH, json={"versions": [_version(4, state="ready", sha256=sha)], "pending_listed": True}
    )
    api = client([])
    v = Version(version=4, upload_path=UPLOAD, raw={})
    assert confirm(api, v, _payload(tmp_path, data), lambda _l: None) == sha
    assert len([c for c in responses.calls if c.request.method == "PUT"]) == 2


@responses.activate
def test_stored_file_with_another_sha256_is_an_error(tmp_path: Path) -> None:
    responses.put(UPLOAD, status=200, json={})
    responses.get(
        SEARCH,
        json={"versions": [_version(4, state="ready", sha256="0" * 64)], "pending_listed": True},
    )
    api = client([])
    v = Version(version=4, upload_path=UPLOAD, raw={})
    with pytest.raises(RegistryRefused, match="not the"):
        confirm(api, v, _payload(tmp_path, b"abc"), lambda _l: None)


@responses.activate
def test_put_409_without_our_file_in_the_registry_stays_an_error(tmp_path: Path) -> None:
    responses.put(UPLOAD, status=409)
    responses.get(SEARCH, status=404)
    api = client([])
    v = Version(version=4, upload_path=UPLOAD, raw={})
    with pytest.raises(UploadConflict):
        confirm(api, v, _payload(tmp_path, b"abc"), lambda _l: None)


@responses.activate
def test_429_until_retries_run_out_is_exit_6() -> None:
    responses.get(f"{BASE}/api/v1/authenticate", status=429, headers={"Retry-After": "0"})
    with pytest.raises(RegistryUnavailable, match="429") as err:
        client([]).authenticate()
    assert err.value.exit_code == 6


@responses.activate
def test_search_answer_upload_paths_are_redacted() -> None:
    responses.get(SEARCH, json={"versions": [_version(4, upload_path=UPLOAD + "-other")]})
    client([]).search("acme", "web", "amazon.ami", {"version": "any"})
    assert "presigned" not in redact(f"see {UPLOAD}-other")


def test_file_gone_before_the_put_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputFileError) as err:
        client([]).upload(UPLOAD, tmp_path / "gone.box", 3)
    assert err.value.exit_code == 3


@responses.activate
def test_put_409_after_a_lost_answer_is_ours_even_when_the_registry_cannot_confirm(
    tmp_path: Path,
) -> None:
    responses.put(UPLOAD, body=requests.ConnectionError("Connection reset by peer"))
    responses.put(UPLOAD, status=409)
    responses.get(SEARCH, status=503)
    lines: list[str] = []
    api = client(lines)
    v = Version(version=4, upload_path=UPLOAD, raw={})
    data = b"whole file"
    assert confirm(api, v, _payload(tmp_path, data), lines.append)
    assert any("arrived with an earlier try (409)" in line for line in lines)


@responses.activate
def test_put_failing_after_whole_tries_says_the_file_may_have_arrived(tmp_path: Path) -> None:
    responses.put(UPLOAD, status=502)
    responses.get(SEARCH, status=404)
    api = client([])
    v = Version(version=4, upload_path=UPLOAD, raw={})
    with pytest.raises(RegistryUnavailable) as err:
        confirm(api, v, _payload(tmp_path, b"abc"), print)
    line = err.value.one_line()
    assert "may have arrived" in line and "--version 4 --pending" in line
    assert "presigned" not in line


@responses.activate
def test_put_that_never_reached_the_registry_says_the_version_stays_pending(
    tmp_path: Path,
) -> None:
    responses.put(UPLOAD, status=503)
    responses.get(SEARCH, status=404)
    api = client([])
    v = Version(version=4, upload_path=UPLOAD, raw={})
    with pytest.raises(RegistryUnavailable) as err:
        confirm(api, v, _payload(tmp_path, b"abc"), print)
    assert "stays pending" in err.value.one_line()


def pem_certificates(n: int) -> list[str]:
    """``n`` real CA certificates in PEM (from the bundle requests ships with)."""
    import certifi

    marker = "-----END CERTIFICATE-----"
    text = Path(certifi.where()).read_text("ascii")
    pems = []
    for part in text.split(marker)[:n]:
        pems.append(part[part.index("-----BEGIN CERTIFICATE-----") :] + marker + "\n")
    return pems


def test_ca_directory_is_read_only_when_tls_needs_it_and_never_a_huge_file(
    tmp_path: Path,
) -> None:
    """A 1.5 GB file in ATLAS_CAPATH was read whole (3.1 GB RSS), even for http://."""
    import atlas_ci.transport
    from atlas_ci.client import AtlasClient
    from atlas_ci.settings import Settings

    (tmp_path / "ca.pem").write_text(pem_certificates(1)[0])
    with (tmp_path / "huge.pem").open("wb") as fh:
        fh.write(b"-----BEGIN CERTIFICATE-----\n")
        fh.truncate(1536 * 1024 * 1024)  # sparse: reading it would take 1.5 GB
    read: list[Path] = []
    real = atlas_ci.transport._pem_files

    def spy(directory: Path) -> list[str]:
        read.append(directory)
        return real(directory)

    atlas_ci.transport._pem_files = spy
    try:
        plain = Settings(artifact="a/b", atlas_url="http://127.0.0.1:1", verify=str(tmp_path))
        api = AtlasClient(plain)
        assert api.verify_for("http://127.0.0.1:1/api/v1/x") == str(tmp_path)
        assert read == []  # nothing of the directory read for an http:// registry
        bundle = api.verify_for("https://uploads.example/file")  # an https upload URL: now
        assert read == [tmp_path]
        assert isinstance(bundle, str) and Path(bundle).stat().st_size < 64 * 1024
        api.close()
    finally:
        atlas_ci.transport._pem_files = real


def test_a_ca_directory_is_read_up_to_16_mib_in_all(tmp_path: Path) -> None:
    from atlas_ci.cafile import CA_FILE_LIMIT
    from atlas_ci.client import tls_verify_argument
    from atlas_ci.errors import ConfigError

    for n in range(3):  # each under the per-file limit, together over it
        (tmp_path / f"{n}.pem").write_text("x" * (CA_FILE_LIMIT // 2))
    with pytest.raises(ConfigError, match="holds more than 16 MiB of files"):
        tls_verify_argument(str(tmp_path))


def test_ca_directory_becomes_one_bundle_of_its_pem_files(tmp_path: Path) -> None:
    from atlas_ci.client import tls_verify_argument
    from atlas_ci.errors import ConfigError

    first, second = pem_certificates(2)
    (tmp_path / "a.pem").write_text(first)
    (tmp_path / "b.crt").write_text(second)
    (tmp_path / "notes.txt").write_text("not a certificate")
    bundle = tls_verify_argument(str(tmp_path))
    assert isinstance(bundle, str) and bundle != str(tmp_path)
    text = Path(bundle).read_text()
    assert first.strip() in text and second.strip() in text and "not a certificate" not in text
    assert tls_verify_argument(str(tmp_path / "a.pem")) == str(tmp_path / "a.pem")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="no PEM certificate"):
        tls_verify_argument(str(empty))


@pytest.mark.parametrize(
    "failure",
    [{"status": 504}, {"status": 502}, {"body": requests.ReadTimeout("read timed out")}],
)
@responses.activate
def test_absence_after_a_failure_that_may_still_be_running_is_no_licence_to_post_again(
    failure: dict[str, Any],
) -> None:
    responses.get(SEARCH, json={"versions": [_version(3)], "pending_listed": True})
    responses.post(VERSIONS, **failure)
    responses.get(SEARCH, json={"versions": [_version(3)], "pending_listed": True})
    with pytest.raises(RegistryUnavailable) as err:
        _create(client([]), [])
    line = err.value.one_line()
    assert "may still complete" in line and "--version any --pending" in line
    assert len([c for c in responses.calls if c.request.method == "POST"]) == 1


@pytest.mark.parametrize(
    "other",
    [{"build_id": 999}, {"compile_id": 8}, {"file": False}, {"id": "us-east-1:ami-2"}],
)
@responses.activate
def test_a_version_another_job_created_is_never_adopted(other: dict[str, Any]) -> None:
    # Job B (build 999) made version 4 while our POST's answer was lost: same id and
    # metadata, another build. Adopting it would put our file under B's version.
    responses.get(SEARCH, json={"versions": [_version(3)], "pending_listed": True})
    responses.post(VERSIONS, body=requests.ConnectionError("Connection reset by peer"))
    theirs = _version(4, state="pending", upload_path=UPLOAD, file=True) | other
    responses.get(SEARCH, json={"versions": [theirs, _version(3)], "pending_listed": True})
    lines: list[str] = []
    with pytest.raises(RegistryUnavailable) as err:
        _create(client(lines), lines, has_file=True)
    assert "may still complete" in err.value.one_line()
    assert not any("Adopting" in line for line in lines)
    assert len([c for c in responses.calls if c.request.method == "POST"]) == 1


@responses.activate
def test_a_version_whose_fields_the_registry_hides_is_neither_adopted_nor_posted_over() -> None:
    responses.get(SEARCH, json={"versions": [_version(3)], "pending_listed": True})
    responses.post(VERSIONS, status=500)
    bare = {"version": 4, "id": "us-east-1:ami-1", "metadata": {"region.us-east-1": "ami-1"}}
    responses.get(SEARCH, json={"versions": [bare, _version(3)], "pending_listed": True})
    with pytest.raises(RegistryUnavailable) as err:
        _create(client([]), [])
    assert "may exist and the registry cannot tell" in err.value.one_line()
    assert len([c for c in responses.calls if c.request.method == "POST"]) == 1


@responses.activate
def test_the_version_post_is_sent_at_most_1_plus_retries_times_across_both_loops() -> None:
    # 503 (retried by the request) then 500 (retried by the flow after a search): each
    # layer used to have its own --retries, (1 + retries) ** 2 POSTs in all.
    responses.get(SEARCH, json={"versions": [_version(3)], "pending_listed": True})
    for status in (503, 503, 500) * 3:
        responses.post(VERSIONS, status=status)
    with pytest.raises(RegistryUnavailable):
        _create(client([]), [])
    assert len([c for c in responses.calls if c.request.method == "POST"]) == 3  # --retries 2


@responses.activate
def test_the_put_is_sent_at_most_1_plus_retries_times_across_both_loops(tmp_path: Path) -> None:
    pending = {"versions": [_version(4, state="pending", upload_path=UPLOAD)]}
    for _ in range(3):
        responses.put(UPLOAD, status=503)
        responses.put(UPLOAD, status=503)
        responses.put(UPLOAD, status=200, json={})
        responses.get(SEARCH, json={**pending, "pending_listed": True})
    api = client([])
    v = Version(version=4, upload_path=UPLOAD, raw={})
    with pytest.raises(RegistryUnavailable):
        confirm(api, v, _payload(tmp_path, b"abc"), lambda _l: None)
    assert len([c for c in responses.calls if c.request.method == "PUT"]) == 3  # --retries 2
