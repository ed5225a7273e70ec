"""``atlas-ci upload`` as a subprocess against the recording server: the wire of atlas-wire.md."""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests import artifacts
from tests.artifacts import write_manifest
from tests.recording_server import Recorded, RecordingServer

TOKEN = "wire-test-token-0123456789"


def run_cli(
    args: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return artifacts.run_cli(args, cwd, {"ATLAS_TOKEN": TOKEN, **(env or {})})


def api_calls(srv: RecordingServer) -> list[tuple[str, str]]:
    return [(r.method, r.path.split("?")[0]) for r in srv.requests]


def wire(srv: RecordingServer) -> list[Recorded]:
    """The requests of Packer's sequence: without our baseline searches."""
    return [r for r in srv.requests if "/search" not in r.path]


def assert_clean_output(proc: subprocess.CompletedProcess[str]) -> None:
    for stream in (proc.stdout, proc.stderr):
        assert TOKEN not in stream
        assert "presigned-secret" not in stream
        assert "/binstore/" not in stream


def check_headers(requests: list[Recorded]) -> None:
    for r in requests:
        assert r.headers["User-Agent"].startswith("atlas-ci/")
        assert "Accept" not in r.headers
        if r.method == "PUT":
            assert "X-Atlas-Token" not in r.headers
            assert "Content-Type" not in r.headers
            assert "Transfer-Encoding" not in r.headers
            assert int(r.headers["Content-Length"]) == len(r.body)
        else:
            assert r.headers["X-Atlas-Token"] == TOKEN
            if r.method == "POST":
                assert r.headers["Content-Type"] == "application/json"
            else:
                assert "Content-Type" not in r.headers


def test_amazon_ebs_two_regions(tmp_path: Path) -> None:
    write_manifest(
        tmp_path,
        [
            {
                "name": "web",
                "builder_type": "amazon-ebs",
                "files": None,
                "artifact_id": "us-east-1:ami-1111,us-west-2:ami-2222",
            }
        ],
    )
    with RecordingServer() as srv:
        proc = run_cli(
            ["upload", "--artifact", "acme/web", "--atlas-url", srv.url, "--json"],
            tmp_path,
            env={"ATLAS_BUILD_ID": "0x10"},
        )
        assert proc.returncode == 0, proc.stderr
        assert api_calls(srv) == [
            ("GET", "/api/v1/authenticate"),
            ("GET", "/api/v1/artifacts/acme/web"),
            ("POST", "/api/v1/artifacts"),
            # our addition (issue 6): the newest version before the non-idempotent POST
            ("GET", "/api/v1/artifacts/acme/web/amazon.ami/search"),
            ("POST", "/api/v1/artifacts/acme/web/amazon.ami"),
        ]
        assert srv.requests[3].path.endswith("search?version=latest&include_pending=1")
        check_headers(srv.requests)
        assert srv.requests[2].body == b'{"artifact":{"name":"web","username":"acme"}}'
        assert srv.requests[4].body == (
            b'{"artifact_version":{"build_id":16,"compile_id":0,"file":false,'
            b'"id":"us-east-1:ami-1111,us-west-2:ami-2222",'
            b'"metadata":{"region.us-east-1":"ami-1111","region.us-west-2":"ami-2222"}}}'
        )
    result = json.loads(proc.stdout)
    assert result["version"] == 1
    assert result["id"] == "acme/web/amazon.ami/1"
    assert result["builds"][0]["file"] is None
    assert "Creating artifact: acme/web" in proc.stderr
    assert "Uploaded acme/web/amazon.ami version 1" in proc.stderr
    assert_clean_output(proc)


def test_vagrant_box_uploaded_byte_for_byte_with_provider(tmp_path: Path) -> None:
    box = tmp_path / "output" / "web.box"
    box.parent.mkdir()
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w") as tf:
        info = tarfile.TarInfo("metadata.json")
        payload = b'{"provider": "virtualbox"}'
        info.size = len(payload)
        tf.addfile(info, io.BytesIO(payload))
    box.write_bytes(gzip.compress(tar_bytes.getvalue(), compresslevel=9, mtime=123))
    write_manifest(
        tmp_path,
        [
            {
                "name": "vbox",
                "builder_type": "virtualbox-iso",
                "files": [{"name": "output/web.box", "size": box.stat().st_size}],
                "artifact_id": "virtualbox",
            }
        ],
    )
    with RecordingServer() as srv:
        proc = run_cli(
            ["upload", "--artifact", "acme/box", "--atlas-url", srv.url + "/api/v1", "--json"],
            tmp_path,
        )
        assert proc.returncode == 0, proc.stderr
        calls = wire(srv)
        assert [(r.method, r.path.split("?")[0]) for r in calls[3:]] == [
            ("POST", "/api/v1/artifacts/acme/box/vagrant.box"),
            ("PUT", "/binstore/1"),
        ]
        check_headers(srv.requests)
        version = calls[3].json()["artifact_version"]
        assert version == {
            "build_id": 0,
            "compile_id": 0,
            "file": True,
            "id": "virtualbox",
            "metadata": {"provider": "virtualbox"},
        }
        put = calls[4]
        assert put.path == "/binstore/1?sig=presigned-secret-1"  # query kept
        assert put.body == box.read_bytes()
    result = json.loads(proc.stdout)
    import hashlib

    assert result["builds"][0]["file"] == {
        "size": box.stat().st_size,
        "sha256": hashlib.sha256(box.read_bytes()).hexdigest(),
    }
    assert "provider=virtualbox" in proc.stderr
    assert_clean_output(proc)


def test_docker_export_tar_is_wrapped_in_a_tar_gz(tmp_path: Path) -> None:
    export = tmp_path / "export.tar"
    with tarfile.open(export, "w") as tf:
        info = tarfile.TarInfo("etc/hostname")
        info.size = 4
        tf.addfile(info, io.BytesIO(b"web\n"))
    write_manifest(
        tmp_path,
        [
            {
                "name": "docker",
                "builder_type": "docker",
                "files": [{"name": "export.tar", "size": export.stat().st_size}],
                "artifact_id": "Container",
            }
        ],
    )
    with RecordingServer() as srv:
        proc = run_cli(["upload", "--artifact", "acme/app", "--atlas-url", srv.url], tmp_path)
        assert proc.returncode == 0, proc.stderr
        calls = wire(srv)
        assert (calls[3].method, calls[3].path) == (
            "POST",
            "/api/v1/artifacts/acme/app/docker.image",
        )
        check_headers(srv.requests)
        assert calls[3].json()["artifact_version"]["metadata"] is None
        put = calls[4]
    with tarfile.open(fileobj=io.BytesIO(put.body), mode="r:gz") as tf:
        assert tf.getnames() == ["export.tar"]
        inner = tf.extractfile("export.tar")
        assert inner is not None
        assert inner.read() == export.read_bytes()
    assert_clean_output(proc)


def test_vmware_directory_archived_from_common_prefix(tmp_path: Path) -> None:
    multi = tmp_path / "multi"
    (multi / "sub").mkdir(parents=True)
    (multi / "vm.vmx").write_text("config")
    (multi / "disk.vmdk").write_bytes(b"\0" * 4096)
    (multi / "sub" / "n.txt").write_text("note")
    (multi / "unlisted.log").write_text("left out")
    files = ["multi/vm.vmx", "multi/disk.vmdk", "multi/sub/n.txt"]
    write_manifest(
        tmp_path,
        [
            {
                "name": "vmware",
                "builder_type": "vmware-iso",
                "files": [{"name": f, "size": 0} for f in files],
                "artifact_id": "VM",
            }
        ],
    )
    with RecordingServer() as srv:
        proc = run_cli(
            [
                "upload",
                "--artifact",
                "acme/vm",
                "--artifact-type",
                "vmware.image",
                "--atlas-url",
                srv.url,
                "--metadata",
                "version=1.10",
            ],
            tmp_path,
        )
        assert proc.returncode == 0, proc.stderr
        check_headers(srv.requests)
        calls = wire(srv)
        assert calls[3].json()["artifact_version"]["metadata"] == {"version": "1.10"}
        put = calls[4]
    with tarfile.open(fileobj=io.BytesIO(put.body), mode="r:gz") as tf:
        assert tf.getnames() == ["disk.vmdk", "sub", "sub/n.txt", "vm.vmx"]
        assert tf.getmember("sub").isdir()
    assert_clean_output(proc)


def test_second_upload_reuses_the_artifact_and_bumps_the_version(tmp_path: Path) -> None:
    write_manifest(
        tmp_path,
        [{"name": "g", "builder_type": "googlecompute", "files": None, "artifact_id": "img-1"}],
    )
    with RecordingServer() as srv:
        args = ["upload", "--artifact", "acme/gce", "--atlas-url", srv.url, "--json"]
        first = run_cli(args, tmp_path)
        second = run_cli(args, tmp_path)
        assert first.returncode == 0, first.stderr
        assert second.returncode == 0, second.stderr
        assert json.loads(second.stdout)["version"] == 2
        assert [(r.method, r.path) for r in wire(srv)[4:]] == [
            ("GET", "/api/v1/authenticate"),
            ("GET", "/api/v1/artifacts/acme/gce"),
            ("POST", "/api/v1/artifacts/acme/gce/googlecompute.image"),
        ]


@pytest.mark.parametrize(
    ("args", "env", "code", "text"),
    [
        (["--artifact", "acme"], {}, 2, 'malformed slug "acme"'),
        (["--artifact", "acme/web"], {"ATLAS_TOKEN": ""}, 2, "ATLAS_TOKEN"),
        (["--artifact", "acme/web", "--atlas-url", "atlas.example.com"], {}, 2, "no scheme"),
        (["--artifact", "acme/web", "--manifest", "nope.json"], {}, 3, "nope.json"),
        (["--artifact", "acme/web"], {"ATLAS_BUILD_ID": "12x"}, 2, "ATLAS_BUILD_ID"),
    ],
)
def test_bad_input_is_one_line_and_a_documented_code(
    tmp_path: Path, args: list[str], env: dict[str, str], code: int, text: str
) -> None:
    write_manifest(
        tmp_path, [{"name": "a", "builder_type": "amazon-ebs", "files": None, "artifact_id": "r:a"}]
    )
    with RecordingServer() as srv:
        if "--atlas-url" not in args:
            args = [*args, "--atlas-url", srv.url]
        proc = run_cli(["upload", *args], tmp_path, env=env)
        assert proc.returncode == code, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert lines[0].startswith("error: ")
        assert text in lines[0]
        assert [r for r in srv.requests if r.method != "GET"] == []


def test_unreachable_registry_exits_6(tmp_path: Path) -> None:
    write_manifest(
        tmp_path, [{"name": "a", "builder_type": "amazon-ebs", "files": None, "artifact_id": "r:a"}]
    )
    with RecordingServer() as srv:
        dead = srv.url
    proc = run_cli(
        ["upload", "--artifact", "a/b", "--atlas-url", dead, "--retries", "1", "--max-wait", "0"],
        tmp_path,
    )
    assert proc.returncode == 6, proc.stderr
    assert "connection refused" in proc.stderr
