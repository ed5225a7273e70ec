"""The action end to end: runner environment -> action -> core -> a real ``atlas-ci serve``."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from atlas_ci import action
from tests.artifacts import action_env, run_entrypoint

ROOT = Path(__file__).resolve().parents[2]
RUN = "run-0001"


def make_box(path: Path) -> str:
    """A small real Vagrant box (gzip'd tar); returns its sha256."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tf:
        for name, data in (("metadata.json", b'{"provider": "virtualbox"}'), ("disk", b"x" * 4096)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw.getvalue()))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def workspace(tmp_path: Path) -> tuple[Path, str]:
    ws = tmp_path / "workspace"
    sha = make_box(ws / "output-vbox" / "web.box")
    build = {
        "name": "web",
        "builder_type": "virtualbox-iso",
        "build_time": 1700000000,
        "files": [{"name": "output-vbox/web.box", "size": 0}],
        "artifact_id": "virtualbox",
        "packer_run_uuid": RUN,
    }
    manifest = {"builds": [build], "last_run_uuid": RUN}
    (ws / "packer-manifest.json").write_text(json.dumps(manifest))
    return ws, sha


def runner_env(tmp_path: Path, ws: Path, url: str, token: str, **inputs: str) -> dict[str, str]:
    files = tmp_path / "file_commands"
    files.mkdir(exist_ok=True)
    defaults = {
        "manifest": "packer-manifest.json",
        "dry_run": "false",
        "metadata": "team: infra\nversion: 1.10\n",
    }
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "CI": "true",
        **action_env(ws, files, url=url, token=token, **{**defaults, **inputs}),
    }


def read_outputs(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines())


def get(url: str, token: str) -> bytes:
    request = urllib.request.Request(url, headers={"X-Atlas-Token": token})
    with urllib.request.urlopen(request, timeout=30) as resp:
        body: bytes = resp.read()
        return body


def test_action_uploads_and_sets_outputs(
    tmp_path: Path, registry: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    ws, sha = workspace(tmp_path)
    env = runner_env(tmp_path, ws, registry.url, registry.token)
    assert action.run(env) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"::add-mask::{registry.token}"
    assert registry.token not in "\n".join(out.splitlines()[1:])
    outputs = read_outputs(tmp_path / "file_commands" / "output")
    assert outputs["version"] == "1"
    assert outputs["id"] == "acme/web/vagrant.box/1"
    assert json.loads(outputs["versions"]) == {"web": 1}
    assert outputs["file_sha256"] == sha
    file = get(f"{registry.url}/api/v1/artifacts/acme/web/vagrant.box/1/file", registry.token)
    assert hashlib.sha256(file).hexdigest() == sha
    summary = (tmp_path / "file_commands" / "summary").read_text()
    assert "| web | acme/web | vagrant.box | 1 |" in summary


def test_dry_run_creates_nothing(
    tmp_path: Path, registry: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    ws, sha = workspace(tmp_path)
    env = runner_env(tmp_path, ws, registry.url, registry.token, dry_run="true")
    assert action.run(env) == 0
    outputs = read_outputs(tmp_path / "file_commands" / "output")
    assert outputs["version"] == ""
    assert outputs["file_sha256"] == sha
    # The next real upload is version 1: the dry run created none.
    env = runner_env(tmp_path, ws, registry.url, registry.token)
    assert action.run(env) == 0
    assert "version=1\n" in (tmp_path / "file_commands" / "output").read_text()


def test_wrong_token_is_exit_4_and_an_annotation(
    tmp_path: Path, registry: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    ws, _ = workspace(tmp_path)
    env = runner_env(tmp_path, ws, registry.url, "tok-wrong-000000000")
    assert action.run(env) == 4
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].startswith("::error title=atlas-ci%3A authentication failed::")
    assert not any("tok-wrong-000000000" in line for line in lines[1:])


def test_missing_manifest_annotates_the_file(
    tmp_path: Path, registry: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    ws, _ = workspace(tmp_path)
    env = runner_env(tmp_path, ws, registry.url, registry.token, manifest="nope.json")
    assert action.run(env) == 3
    assert "file=nope.json" in capsys.readouterr().out.splitlines()[-1]


def test_entrypoint_runs_the_action_from_the_environment_alone(
    tmp_path: Path, registry: Any
) -> None:
    ws, sha = workspace(tmp_path)
    env = runner_env(tmp_path, ws, registry.url, registry.token)
    proc = run_entrypoint(ws, env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert read_outputs(tmp_path / "file_commands" / "output")["file_sha256"] == sha


SUMMARY_WARNING = (
    "::warning title=atlas-ci%3A job summary::the job summary could not be written to "
    "GITHUB_STEP_SUMMARY '{path}': No such file or directory; the step's result and outputs "
    "do not depend on it"
)


def test_an_unwritable_summary_does_not_hide_a_failed_run_s_error(
    tmp_path: Path, registry: Any
) -> None:
    # A 401 used to become a traceback (the error summary's write raised in the handler).
    ws, _ = workspace(tmp_path)
    env = runner_env(tmp_path, ws, registry.url, "tok-wrong-000000000")
    env["GITHUB_STEP_SUMMARY"] = str(tmp_path / "missing-dir" / "summary.md")
    proc = run_entrypoint(ws, env)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert proc.stderr == ""
    lines = proc.stdout.splitlines()
    assert lines[-2].startswith("::error title=atlas-ci%3A authentication failed::")
    assert lines[-1] == SUMMARY_WARNING.format(path=env["GITHUB_STEP_SUMMARY"])


def test_an_unwritable_summary_does_not_fail_a_successful_upload(
    tmp_path: Path, registry: Any
) -> None:
    # The version was made: failing the step now ("internal error") invites a re-run that
    # makes a second version.
    ws, sha = workspace(tmp_path)
    env = runner_env(tmp_path, ws, registry.url, registry.token)
    env["GITHUB_STEP_SUMMARY"] = str(tmp_path / "missing-dir" / "summary.md")
    proc = run_entrypoint(ws, env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "internal error" not in proc.stdout
    assert SUMMARY_WARNING.format(path=env["GITHUB_STEP_SUMMARY"]) in proc.stdout.splitlines()
    outputs = read_outputs(tmp_path / "file_commands" / "output")
    assert (outputs["version"], outputs["file_sha256"]) == ("1", sha)
    assert not (tmp_path / "missing-dir").exists()
    search = f"{registry.url}/api/v1/artifacts/acme/web/vagrant.box/search"
    assert [v["version"] for v in json.loads(get(search, registry.token))["versions"]] == [1]


@pytest.mark.parametrize("variable", ["GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY"])
def test_a_fifo_as_a_runner_file_is_exit_2_before_the_first_request(
    tmp_path: Path, registry: Any, variable: str
) -> None:
    """A FIFO held the step for ever once the version was made."""
    ws, _ = workspace(tmp_path)
    env = runner_env(tmp_path, ws, registry.url, registry.token)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    env[variable] = str(fifo)
    proc = run_entrypoint(ws, env, timeout=30)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    error = next(line for line in proc.stdout.splitlines() if line.startswith("::error "))
    assert error.startswith("::error title=atlas-ci%3A configuration::")
    assert f"{variable} '{fifo}' is a FIFO (named pipe), not a regular file" in error
    search = f"{registry.url}/api/v1/artifacts/acme/web"
    with pytest.raises(urllib.error.HTTPError) as err:
        get(search, registry.token)
    assert err.value.code == 404  # not even the artifact: nothing was sent


def test_builds_that_share_a_name_each_keep_their_version_in_the_versions_output(
    tmp_path: Path, registry: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two builds named web gave {"web": 2}: version 1 vanished from the output."""
    ws = tmp_path / "workspace"
    builds = []
    for n, provider in enumerate(("virtualbox", "vmware_desktop")):
        make_box(ws / f"out{n}" / "web.box")
        builds.append(
            {
                "name": "web",
                "builder_type": "virtualbox-iso",
                "build_time": 1700000000 + n,
                "files": [{"name": f"out{n}/web.box", "size": 0}],
                "artifact_id": provider,
                "packer_run_uuid": RUN,
            }
        )
    (ws / "packer-manifest.json").write_text(json.dumps({"builds": builds, "last_run_uuid": RUN}))
    env = runner_env(tmp_path, ws, registry.url, registry.token)
    assert action.run(env) == 0, capsys.readouterr().out
    outputs = read_outputs(tmp_path / "file_commands" / "output")
    assert json.loads(outputs["versions"]) == {"web": 1, "web#2": 2}
    assert outputs["version"] == "2"
