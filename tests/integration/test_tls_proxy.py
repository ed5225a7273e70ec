"""Real TLS on 127.0.0.1 (a CA made with the openssl CLI at test time), and proxies from the
environment: HTTP_PROXY, HTTPS_PROXY (CONNECT) and NO_PROXY.

The fault proxy terminates TLS in front of the registry, which is started with
``--public-url https://<proxy>`` so the upload goes over TLS too.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.faults import FaultProxy
from tests.registry_proc import RegistryProcess
from tests.upload_harness import (
    Outcome,
    box_build,
    file_sha256,
    run_upload_subprocess,
    versions,
)

TOKEN = "tls-test-token-41c2e9"

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca_and_server_cert(directory: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate for IP 127.0.0.1 signed by it: (ca, cert, key)."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl(
        "req",
        "-x509",
        *ec,
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=atlas-ci test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )
    _openssl(
        "req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1",
        cwd=directory,
    )  # fmt: skip
    (directory / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid\n"
    )
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "server.ext",
        cwd=directory,
    )  # fmt: skip
    return directory / "ca.pem", directory / "server.pem", directory / "server.key"


@dataclass
class Stack:
    registry: RegistryProcess
    tls: FaultProxy
    ca: Path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    certs = tmp_path_factory.mktemp("certs")
    ca, cert, key = make_ca_and_server_cert(certs)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    # The proxy binds first, so the registry can hand out upload URLs that go through it.
    with (
        FaultProxy(tls=context) as tls,
        RegistryProcess(
            tmp_path_factory.mktemp("tls-registry"), TOKEN, extra_args=[f"--public-url={tls.url}"]
        ) as registry,
    ):
        tls.set_upstream(registry.url)
        yield Stack(registry, tls, ca)


@pytest.fixture
def plain(tmp_path: Path) -> Iterator[tuple[RegistryProcess, FaultProxy]]:
    """A plain registry (upload URLs from the Host header) and a proxy to use as *_PROXY."""
    with (
        RegistryProcess(tmp_path / "plain-registry", TOKEN) as registry,
        FaultProxy(registry.url) as proxy,
    ):
        yield registry, proxy


def _upload(stack: Stack, cwd: Path, name: str, args: list[str], env: dict[str, str]) -> Outcome:
    return run_upload_subprocess(
        ["--artifact", f"tls/{name}", "--retries", "1", "--max-wait", "0", "--json", *args],
        {"ATLAS_TOKEN": TOKEN, **env},
        cwd,
    )


def _assert_uploaded(registry: RegistryProcess, out: Outcome, slug: str, sha: str) -> None:
    assert out.code == 0, out.stderr
    found = versions(registry, slug)
    assert [(v["version"], v["state"]) for v in found] == [(out.result["version"], "ready")]
    assert file_sha256(registry, slug, out.result["version"]) == sha
    assert TOKEN not in out.stdout + out.stderr
    assert "Traceback" not in out.stderr


def test_unknown_ca_fails_verification_with_exit_6_naming_ca_file(
    stack: Stack, tmp_path: Path
) -> None:
    box_build(tmp_path, "web", 4096, seed=1)
    out = _upload(stack, tmp_path, "no-ca", ["--atlas-url", stack.tls.url], {})
    assert out.code == 6, out.stderr
    [line] = out.error_lines()
    assert "TLS verification failed" in line and "--ca-file" in line
    assert versions(stack.registry, "tls/no-ca/vagrant.box") == []


@pytest.mark.parametrize("how", ["--ca-file", "ATLAS_CAFILE", "ATLAS_CAPATH"])
def test_registry_ca_given_verifies_and_uploads_over_tls(
    stack: Stack, tmp_path: Path, how: str
) -> None:
    _, sha = box_build(tmp_path, "web", 64 * 1024, seed=2)
    name = how.lower().strip("-").replace("_", "-")
    args, env = ["--atlas-url", stack.tls.url], {}
    if how == "--ca-file":
        args += ["--ca-file", str(stack.ca)]
    elif how == "ATLAS_CAFILE":
        env["ATLAS_CAFILE"] = str(stack.ca)
    else:
        capath = tmp_path / "cas"
        capath.mkdir()
        shutil.copy(stack.ca, capath / "my-registry-ca.pem")  # a plain name, not a hash link
        env["ATLAS_CAPATH"] = str(capath)
    out = _upload(stack, tmp_path, name, args, env)
    _assert_uploaded(stack.registry, out, f"tls/{name}/vagrant.box", sha)
    assert "warning" not in out.stderr


@pytest.mark.parametrize("how", ["--insecure", "ATLAS_TLS_NOVERIFY"])
def test_insecure_uploads_and_warns_once_in_one_line(
    stack: Stack, tmp_path: Path, how: str
) -> None:
    _, sha = box_build(tmp_path, "web", 8192, seed=3)
    name = how.lower().strip("-").replace("_", "-")
    args, env = ["--atlas-url", stack.tls.url], {}
    if how == "--insecure":
        args.append("--insecure")
    else:
        env["ATLAS_TLS_NOVERIFY"] = "1"
    out = _upload(stack, tmp_path, name, args, env)
    _assert_uploaded(stack.registry, out, f"tls/{name}/vagrant.box", sha)
    warnings = [line for line in out.stderr.splitlines() if "warning" in line.lower()]
    assert warnings == [
        "warning: TLS certificate verification is off (--insecure / ATLAS_TLS_NOVERIFY)"
    ]


def test_https_proxy_tunnels_to_the_registry(
    stack: Stack, plain: tuple[RegistryProcess, FaultProxy], tmp_path: Path
) -> None:
    _, sha = box_build(tmp_path, "web", 8192, seed=4)
    _, proxy = plain
    out = _upload(
        stack,
        tmp_path,
        "https-proxy",
        ["--atlas-url", stack.tls.url, "--ca-file", str(stack.ca)],
        {"HTTPS_PROXY": proxy.url},
    )
    _assert_uploaded(stack.registry, out, "tls/https-proxy/vagrant.box", sha)
    assert {s.method for s in proxy.seen} == {"CONNECT"}


def test_http_proxy_carries_every_call_and_no_proxy_bypasses_it(
    stack: Stack, plain: tuple[RegistryProcess, FaultProxy], tmp_path: Path
) -> None:
    _, sha = box_build(tmp_path, "web", 8192, seed=5)
    registry, proxy = plain
    # A host name only the proxy can reach: the upload works only through HTTP_PROXY.
    unreachable = f"http://registry.invalid:{registry.port}"
    out = _upload(
        stack, tmp_path, "http-proxy", ["--atlas-url", unreachable], {"HTTP_PROXY": proxy.url}
    )
    _assert_uploaded(registry, out, "tls/http-proxy/vagrant.box", sha)
    methods = [s.method for s in proxy.seen]
    assert "PUT" in methods and "POST" in methods
    put = next(s for s in proxy.seen if s.method == "PUT")
    assert "X-Atlas-Token" not in put.headers

    proxy.clear()
    direct = _upload(
        stack,
        tmp_path,
        "no-proxy",
        ["--atlas-url", registry.url],
        {"HTTP_PROXY": proxy.url, "NO_PROXY": "127.0.0.1"},
    )
    assert direct.code == 0, direct.stderr
    assert proxy.seen == []


def test_upload_host_with_an_unknown_ca_is_not_retried_and_names_ca_file(
    stack: Stack, tmp_path: Path
) -> None:
    """The API over plain HTTP, upload_path on the TLS proxy whose CA is not given."""
    with RegistryProcess(
        tmp_path / "split-registry", TOKEN, extra_args=[f"--public-url={stack.tls.url}"]
    ) as split:
        stack.tls.set_upstream(split.url)
        try:
            box_build(tmp_path, "web", 4096, seed=6)
            out = _upload(stack, tmp_path, "split", ["--atlas-url", split.url], {})
        finally:
            stack.tls.set_upstream(stack.registry.url)
    assert out.code == 6, out.stderr
    [line] = out.error_lines()
    assert "TLS verification failed" in line and "--ca-file" in line
    assert "/binstore/" not in out.stderr
    assert "retry" not in out.stderr
