"""Every call of the upload flow x every fault, through a fault proxy in front of the registry.

Each cell ends either in success (exactly one new version, ready, whose downloaded file has
the box's sha256) or in the documented error (exit code and message) after which a re-run
without the fault succeeds and leaves no second ready version with the same id.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults import Fault, FaultProxy
from tests.registry_proc import RegistryProcess
from tests.upload_harness import (
    Outcome,
    ami_build,
    box_build,
    file_sha256,
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
# Everything else must succeed.
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


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RegistryProcess, FaultProxy]]:
    data = tmp_path_factory.mktemp("matrix-registry")
    with RegistryProcess(data, TOKEN) as registry, FaultProxy(registry.url) as proxy:
        yield registry, proxy


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

    first = _upload(proxy, tmp_path, f"{user}/{name}")
    assert rule.fired == 1, f"the fault never fired: {proxy.seen}"
    for seen in proxy.seen:  # the token goes to the API only, never with the file
        assert ("X-Atlas-Token" in seen.headers) == (seen.method != "PUT"), seen.target
    assert "Traceback" not in first.stderr
    assert TOKEN not in first.stderr + first.stdout
    for secret in proxy.upload_paths:
        assert secret not in first.stderr + first.stdout

    expected = EXPECTED_ERRORS.get((call, fault))
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
