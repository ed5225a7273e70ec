"""Every call of the upload flow x every fault, through a fault proxy in front of the registry.

Each cell ends either in success (exactly one new version, ready, whose downloaded file has
the box's sha256) or in the documented error (exit code and message) after which a re-run
without the fault succeeds and leaves no second ready version with the same id.
"""

from __future__ import annotations

import itertools
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.faults import Fault, FaultProxy
from tests.registry_proc import RegistryProcess
from tests.upload_harness import (
    Outcome,
    ami_build,
    box_build,
    file_sha256,
    honours_idempotency_key,
    ready_duplicates,
    run_upload_cli,
    versions,
)

TOKEN = "fault-matrix-token-7f3a9c"
TIMEOUT = 1.0  # the client's read timeout; a stall outlasts it

CALLS = {
    "authenticate": ("GET", r"/api/v1/authenticate$"),
    "artifact_get": ("GET", r"^/api/v1/artifacts/[^/]+/[^/]+$"),
    "artifact_post": ("POST", r"^/api/v1/artifacts$"),
    "baseline_search": ("GET", r"/search$"),
    "version_post": ("POST", r"^/api/v1/artifacts/[^/]+/[^/]+/[^/]+$"),
    "put": ("PUT", r"^/binstore/"),
}
FAULTS = {
    "429": Fault("status", status=429, retry_after="1"),
    "500": Fault("status", status=500),
    "502": Fault("status", status=502),
    "503": Fault("status", status=503, retry_after="Wed, 21 Oct 2015 07:28:00 GMT"),
    "504": Fault("status", status=504),
    "reset_before": Fault("reset_before"),
    "reset_after": Fault("reset_after"),
    "stall": Fault("stall", seconds=TIMEOUT * 5),
    "cut": Fault("cut", after_bytes=64 * 1024),
    "malformed": Fault("malformed"),
    "malformed_after": Fault("malformed_after"),
}

# The cells that do not end in success, and the documented end: (exit code, words).
# Everything else must succeed. A registry that honours Idempotency-Key (atlas-wire §11)
# gets a failed version POST again with its key, so every version_post cell succeeds there.
EXPECTED_ERRORS: dict[tuple[str, str], tuple[int, str]] = {
    ("artifact_get", "malformed"): (5, "not JSON"),
    ("artifact_get", "malformed_after"): (5, "not JSON"),
    # Not forwarded, so nothing was made; but to the client a reset or a gateway's 502/504
    # may hide a request still running on the registry: it does not POST again on that.
    ("version_post", "502"): (6, "may still complete"),
    ("version_post", "504"): (6, "may still complete"),
    ("version_post", "reset_before"): (6, "may still complete"),
}


def _cells() -> Iterator[tuple[str, str, str]]:
    for call, fault in itertools.product(CALLS, FAULTS):
        if fault == "cut" and call != "put":
            continue  # only the PUT has a body worth cutting
        yield call, fault, "box"
    for fault in FAULTS:
        if fault != "cut":
            yield "version_post", fault, "ami"  # a version without a file


@pytest.fixture(scope="module", params=["as-it-says", "extension-hidden"])
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RegistryProcess, FaultProxy]]:
    """The registry behind the proxy; a second time with ``X-Atlas-Extensions`` cut from its
    answers, so the client takes the search-based path a registry without the key needs."""
    data = tmp_path_factory.mktemp("matrix-registry")
    with RegistryProcess(data, TOKEN) as registry, FaultProxy(registry.url) as proxy:
        if request.param == "extension-hidden":
            proxy.hide_headers.add("x-atlas-extensions")
        yield registry, proxy


def _keyed(stack: tuple[RegistryProcess, FaultProxy]) -> bool:
    """Whether the client sees a registry that honours Idempotency-Key."""
    registry, proxy = stack
    return honours_idempotency_key(registry) and not proxy.hide_headers


def _upload(proxy: FaultProxy, cwd: Path, artifact: str) -> Outcome:
    return run_upload_cli(
        [
            "--artifact",
            artifact,
            "--atlas-url",
            proxy.url,
            "--retries",
            "3",
            "--max-wait",
            "0",
            "--timeout",
            str(TIMEOUT),
            "--json",
        ],
        {"ATLAS_TOKEN": TOKEN},
        cwd,
    )


@pytest.mark.parametrize(("call", "fault", "kind"), list(_cells()))
def test_fault_cell(
    stack: tuple[RegistryProcess, FaultProxy],
    tmp_path: Path,
    call: str,
    fault: str,
    kind: str,
) -> None:
    registry, proxy = stack
    proxy.clear()
    user, name = "matrix", f"{call}-{fault}-{kind}".replace("_", "-")
    if kind == "box":
        _, sha = box_build(tmp_path, "web", 256 * 1024, seed=zlib.crc32(name.encode()))
        artifact_type = "vagrant.box"
    else:
        ami_build(tmp_path, "web", "ami-0123")
        sha = None
        artifact_type = "amazon.ami"
    slug = f"{user}/{name}/{artifact_type}"
    method, path = CALLS[call]
    rule = proxy.add(method, path, FAULTS[fault])
    keyed = _keyed(stack)

    # With a registry that honours Idempotency-Key no baseline search is taken: the fault
    # meets the search that confirms the file instead.
    first = _upload(proxy, tmp_path, f"{user}/{name}")
    assert rule.fired == 1, f"the fault never fired: {proxy.seen}"
    for seen in proxy.seen:  # the token goes to the API only, never with the file
        assert ("X-Atlas-Token" in seen.headers) == (seen.method != "PUT"), seen.target
    assert "Traceback" not in first.stderr
    assert TOKEN not in first.stderr + first.stdout
    for secret in proxy.upload_paths:
        assert secret not in first.stderr + first.stdout

    expected = None if keyed and call == "version_post" else EXPECTED_ERRORS.get((call, fault))
    if expected is None:
        assert first.code == 0, first.stderr
        number = first.result["version"]
        found = versions(registry, slug)
        assert [(v["version"], v["state"]) for v in found] == [(number, "ready")], found
        if sha is not None:
            assert first.result["builds"][0]["file"]["sha256"] == sha
            assert file_sha256(registry, slug, number) == sha
        return

    code, words = expected
    assert first.code == code, first.stderr
    [line] = first.error_lines()
    assert words in line
    proxy.clear()
    again = _upload(proxy, tmp_path, f"{user}/{name}")
    assert again.code == 0, again.stderr
    found = versions(registry, slug)
    assert ready_duplicates(found) == 0, found
    number = again.result["version"]
    assert [v["state"] for v in found if v["version"] == number] == ["ready"]
    if sha is not None:
        assert file_sha256(registry, slug, number) == sha


# Faults that do not go away within --retries: (rules, exit code, words of the one error line).
PERSISTENT = {
    "registry-down": ([("authenticate", "503")], 6, "the registry failed the token check: 503"),
    "rate-limited": ([("artifact_get", "429")], 6, "too many requests (429)"),
    "artifact-post-502": ([("artifact_post", "502")], 6, "holds no artifact matrix/persistent"),
    "version-post-500": ([("version_post", "500")], 6, "holds no new version"),
    # The peer's reset reaches the client as ECONNRESET or, when a write meets it after the
    # error was taken, EPIPE: which one is the kernel's timing, both are the same news.
    "put-cut": (
        [("put", "cut")],
        6,
        ("file upload failed: connection reset", "file upload failed: connection closed while"),
    ),
    "version-lost-no-search": (
        [("version_post", "reset_after"), ("baseline_search", "500")],
        6,
        "may exist and the registry cannot tell",
    ),
    "version-unreadable-no-search": (
        [("version_post", "malformed_after"), ("baseline_search", "503")],
        5,
        "may exist and the registry cannot tell",
    ),
}


# The same faults against a registry that honours Idempotency-Key: the POST is sent again
# with its key until --retries runs out, and the registry keeps any version it made.
PERSISTENT_KEYED = {
    "version-post-500": (6, "may exist"),
    "version-lost-no-search": (6, "may exist"),
    "version-unreadable-no-search": (5, "may exist"),
}


@pytest.mark.parametrize("case", list(PERSISTENT))
def test_persistent_fault_ends_in_its_documented_error_and_a_rerun_finishes(
    stack: tuple[RegistryProcess, FaultProxy], tmp_path: Path, case: str
) -> None:
    registry, proxy = stack
    proxy.clear()
    rules, code, words = PERSISTENT[case]
    name = f"persistent-{case}"
    _, sha = box_build(tmp_path, "web", 256 * 1024, seed=zlib.crc32(name.encode()))
    slug = f"matrix/{name}/vagrant.box"
    for call, fault in rules:
        method, path = CALLS[call]
        proxy.add(method, path, FAULTS[fault], occurrences=None)

    if _keyed(stack) and case in PERSISTENT_KEYED:
        code, words = PERSISTENT_KEYED[case]
    first = _upload(proxy, tmp_path, f"matrix/{name}")
    assert first.code == code, first.stderr
    [line] = first.error_lines()
    assert any(w in line for w in ((words,) if isinstance(words, str) else words)), line
    assert "Traceback" not in first.stderr
    retries = [x for x in first.stderr.splitlines() if "; retry " in x]
    assert all(" in 0.0s" in x and "failed (" in x for x in retries), retries
    assert len(retries) <= 3 * (len(rules) + 2)  # bounded by --retries 3 per request
    assert not any(v["state"] == "ready" for v in versions(registry, slug))

    proxy.clear()
    again = _upload(proxy, tmp_path, f"matrix/{name}")
    assert again.code == 0, again.stderr
    found = versions(registry, slug)
    assert [v["state"] for v in found].count("ready") == 1, found
    assert file_sha256(registry, slug, again.result["version"]) == sha


def test_a_version_another_job_made_meanwhile_is_never_adopted(
    stack: tuple[RegistryProcess, FaultProxy], tmp_path: Path
) -> None:
    # Job B (build 999) creates a version with the same id and metadata at the very moment
    # job A's (build 111) version POST is lost. A must not put its file under B's version.
    registry, proxy = stack
    proxy.clear()
    name = "adopt-other-build"
    _, sha = box_build(tmp_path, "web", 64 * 1024, seed=zlib.crc32(name.encode()))
    slug = f"matrix/{name}/vagrant.box"
    theirs = {
        "build_id": 999,
        "compile_id": 0,
        "file": True,
        "id": "virtualbox",
        "metadata": {"provider": "virtualbox"},
    }

    def job_b() -> None:
        requests.post(
            f"{registry.url}/api/v1/artifacts/{slug}",
            json={"artifact_version": theirs},
            headers=registry.headers,
            timeout=10,
        ).raise_for_status()

    method, path = CALLS["version_post"]
    proxy.add(method, path, Fault("reset_before", before=job_b))
    args = ["--artifact", f"matrix/{name}", "--atlas-url", proxy.url, "--retries", "3"]
    first = run_upload_cli(
        [*args, "--max-wait", "0", "--timeout", str(TIMEOUT), "--json"],
        {"ATLAS_TOKEN": TOKEN, "ATLAS_BUILD_ID": "111"},
        tmp_path,
    )
    found = {v["build_id"]: v for v in versions(registry, slug)}
    assert found[999]["state"] == "pending", found  # B's version never got A's file
    assert not any("Adopting" in line for line in first.stderr.splitlines())
    if _keyed(stack):
        # The lost POST is sent again with its key and makes A's own version.
        assert first.code == 0, first.stderr
        assert found[111]["state"] == "ready"
        assert file_sha256(registry, slug, found[111]["version"]) == sha
    else:
        assert first.code == 6, first.stderr
        [line] = first.error_lines()
        assert "may still complete" in line
        assert 111 not in found


@pytest.mark.parametrize("call", ["put", "version_post"])
def test_retry_after_is_waited_on_every_call_the_file_put_too(
    stack: tuple[RegistryProcess, FaultProxy], tmp_path: Path, call: str
) -> None:
    """The matrix runs with --max-wait 0, which hides an ignored Retry-After: here it is
    below --max-wait, so the wait before the retry must be the registry's 2 s, not the
    backoff's first (at most 0.5 s)."""
    registry, proxy = stack
    proxy.clear()
    name = f"retry-after-{call}".replace("_", "-")
    _, sha = box_build(tmp_path, "web", 64 * 1024, seed=zlib.crc32(name.encode()))
    method, path = CALLS[call]
    rule = proxy.add(method, path, Fault("status", status=429, retry_after="2"))
    args = ["--artifact", f"matrix/{name}", "--atlas-url", proxy.url, "--max-wait", "30"]
    started = time.monotonic()
    outcome = run_upload_cli([*args, "--json"], {"ATLAS_TOKEN": TOKEN}, tmp_path)
    elapsed = time.monotonic() - started
    assert outcome.code == 0, outcome.stderr
    assert rule.fired == 1
    what = "file upload" if call == "put" else "version creation"
    assert f"{what} failed (429 Too Many Requests); retry 1/5 in 2.0s" in outcome.stderr
    assert elapsed >= 2.0
    assert file_sha256(registry, f"matrix/{name}/vagrant.box", 1) == sha
