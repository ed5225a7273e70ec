"""Hostile input through the real CLI: one clear line, exit 2 or 3, nothing written anywhere.

Every case runs ``atlas-ci upload`` as a subprocess against the registry (behind a
recording proxy). The cases run in parallel in one module fixture; each test then checks
its own outcome.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.artifacts import action_env, run_entrypoint
from tests.faults import FaultProxy
from tests.registry_proc import RegistryProcess
from tests.upload_harness import RUN_UUID, Outcome, make_box, run_upload_subprocess

TOKEN = "hostile-token-0c5d2a91"


def _manifest(files: list[dict[str, Any]] | None, **build: Any) -> str:
    entry = {
        "name": "b",
        "builder_type": "virtualbox-iso",
        "artifact_id": "virtualbox",
        "packer_run_uuid": RUN_UUID,
        "files": files,
        **build,
    }
    return json.dumps({"builds": [entry], "last_run_uuid": RUN_UUID})


def _with_file(name: str, make: Callable[[Path], None]) -> Callable[[Path], None]:
    """A manifest naming ``name``, which ``make`` creates (or does not) in the directory."""

    def setup(d: Path) -> None:
        make(d)
        (d / "packer-manifest.json").write_text(_manifest([{"name": name, "size": 0}]))

    return setup


def _write(name: str, text: str | bytes) -> Callable[[Path], None]:
    def setup(d: Path) -> None:
        data = text.encode() if isinstance(text, str) else text
        (d / name).write_bytes(data)
        if name != "packer-manifest.json":
            make_box(d / "ok.box", 1024, seed=1)
            (d / "packer-manifest.json").write_text(_manifest([{"name": "ok.box", "size": 0}]))

    return setup


def _huge_manifest(d: Path) -> None:
    with open(d / "packer-manifest.json", "wb") as fh:
        fh.truncate(65 * 1024 * 1024)  # sparse: over the 64 MiB limit, no disk used


def _outside(d: Path) -> None:
    outside = d.parent / f"{d.name}-elsewhere"
    outside.mkdir()
    make_box(outside / "far.box", 1024, seed=2)
    (d / "packer-manifest.json").write_text(
        _manifest([{"name": str(outside / "far.box"), "size": 0}])
    )


def _box_ok(d: Path) -> None:
    make_box(d / "ok.box", 1024, seed=3)
    (d / "packer-manifest.json").write_text(_manifest([{"name": "ok.box", "size": 0}]))


def _many_metadata(d: Path) -> None:
    _box_ok(d)
    (d / "meta.json").write_text(json.dumps({f"k{i}": "v" for i in range(257)}))


@dataclass
class Case:
    setup: Callable[[Path], None]
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    code: int = 3
    words: str = ""


CASES: dict[str, Case] = {
    # --- the manifest itself
    "manifest-missing": Case(lambda d: None, words="packer-manifest.json"),
    "manifest-not-json": Case(_write("packer-manifest.json", "{builds: nope"), words="JSON"),
    "manifest-not-utf8": Case(_write("packer-manifest.json", b"\xff\xfe{}"), words="UTF-8"),
    "manifest-a-list": Case(_write("packer-manifest.json", "[]"), words="manifest"),
    "manifest-builds-not-list": Case(
        _write("packer-manifest.json", '{"builds": "x", "last_run_uuid": "r"}'), words="builds"
    ),
    "manifest-build-not-object": Case(
        _write("packer-manifest.json", '{"builds": [7], "last_run_uuid": "r"}'), words="build"
    ),
    "manifest-no-builds": Case(
        _write("packer-manifest.json", '{"builds": [], "last_run_uuid": "r"}'), words="no builds"
    ),
    "manifest-last-run-not-text": Case(
        _write("packer-manifest.json", '{"builds": [], "last_run_uuid": 5}'),
        words="last_run_uuid",
    ),
    "manifest-files-not-list": Case(
        _write("packer-manifest.json", _manifest("x")),  # type: ignore[arg-type]
        words="files",
    ),
    "manifest-huge": Case(_huge_manifest, words="MiB"),
    "manifest-is-directory": Case(lambda d: (d / "packer-manifest.json").mkdir()),
    "manifest-is-fifo": Case(lambda d: os.mkfifo(d / "packer-manifest.json")),
    # --- the files it names
    "file-missing": Case(_with_file("gone.box", lambda d: None), words="gone.box"),
    "file-directory": Case(_with_file("out", lambda d: (d / "out").mkdir()), words="out"),
    "file-fifo": Case(_with_file("pipe.box", lambda d: os.mkfifo(d / "pipe.box"))),
    "file-device": Case(_with_file("/dev/null", lambda d: None), words="/dev/null"),
    "file-dangling-symlink": Case(
        _with_file("link.box", lambda d: (d / "link.box").symlink_to(d / "nowhere")),
        words="link.box",
    ),
    "file-symlink-loop": Case(
        _with_file(
            "loop.box",
            lambda d: (
                (d / "loop.box").symlink_to("loop2.box"),
                (d / "loop2.box").symlink_to("loop.box"),
            ),
        ),
        words="loop.box",
    ),
    "file-nul-in-name": Case(_with_file("a\u0000b.box", lambda d: None), words="NUL"),
    "file-outside-workspace": Case(_outside, args=["--workspace", "."], words="workspace"),
    # --- metadata
    "metadata-not-mapping": Case(
        _write("meta.json", '["a", "b"]'), args=["--metadata-file", "meta.json"], code=2
    ),
    "metadata-nested-value": Case(
        _write("meta.json", '{"a": {"b": "c"}}'),
        args=["--metadata-file", "meta.json"],
        code=2,
        words="'a'",
    ),
    "metadata-newline-in-key": Case(
        _write("meta.json", '{"a\\nb": "c"}'), args=["--metadata-file", "meta.json"], code=2
    ),
    "metadata-nul-in-value": Case(
        _write("meta.json", '{"a": "b\\u0000c"}'), args=["--metadata-file", "meta.json"], code=2
    ),
    "metadata-newline-in-flag": Case(_box_ok, args=["--metadata", "k=v\nx"], code=2),
    "metadata-flag-without-equals": Case(_box_ok, args=["--metadata", "novalue"], code=2),
    "metadata-too-many": Case(
        _many_metadata, args=["--metadata-file", "meta.json"], code=2, words="257"
    ),
    "metadata-file-yaml-garbage": Case(
        _write("meta.yml", "a: [unclosed\n"), args=["--metadata-file", "meta.yml"], code=2
    ),
    # --- settings
    "slug-no-slash": Case(_box_ok, args=["--artifact", "acme"], code=2, words="malformed slug"),
    "slug-empty-part": Case(_box_ok, args=["--artifact", "/web"], code=2, words="malformed slug"),
    "slug-two-slashes": Case(_box_ok, args=["--artifact", "a/b/c"], code=2, words="malformed"),
    "slug-newline": Case(_box_ok, args=["--artifact", "a/b\nc"], code=2, words="slug"),
    "url-no-scheme": Case(_box_ok, args=["--atlas-url", "127.0.0.1:1"], code=2, words="scheme"),
    "url-ftp": Case(_box_ok, args=["--atlas-url", "ftp://127.0.0.1/"], code=2, words="http"),
    "url-bad-port": Case(_box_ok, args=["--atlas-url", "http://127.0.0.1:99999"], code=2),
    "url-credentials-bad-port": Case(
        _box_ok, args=["--atlas-url", "http://user:hunter2pass@127.0.0.1:x/"], code=2
    ),
    "build-id-not-int": Case(
        _box_ok, env={"ATLAS_BUILD_ID": "12x"}, code=2, words="ATLAS_BUILD_ID"
    ),
    "compile-id-overflow": Case(
        _box_ok, env={"ATLAS_COMPILE_ID": str(2**64)}, code=2, words="ATLAS_COMPILE_ID"
    ),
    "retries-not-number": Case(_box_ok, args=["--retries", "many"], code=2, words="--retries"),
    "timeout-zero": Case(_box_ok, args=["--timeout", "0"], code=2, words="--timeout"),
    "ca-file-missing": Case(_box_ok, args=["--ca-file", "nope.pem"], code=2, words="nope.pem"),
    "both-manifest-and-json": Case(
        _box_ok, args=["--artifact-json", "x.json"], code=2, words="both"
    ),
}


@dataclass
class Run:
    outcome: Outcome
    artifact: str


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, Run], FaultProxy]]:
    base = tmp_path_factory.mktemp("hostile")
    with (
        RegistryProcess(base / "registry", TOKEN) as registry,
        FaultProxy(registry.url) as proxy,
    ):

        def one(name: str) -> Run:
            case = CASES[name]
            work = base / name
            work.mkdir()
            case.setup(work)
            artifact = f"hostile/{name}"
            args = ["--artifact", artifact, "--atlas-url", proxy.url, "--retries", "0"]
            if name == "both-manifest-and-json":
                args += ["--manifest", "packer-manifest.json"]
            args += case.args  # a later --artifact/--atlas-url wins
            return Run(
                run_upload_subprocess(args, {"ATLAS_TOKEN": TOKEN, **case.env}, work), artifact
            )

        with ThreadPoolExecutor(max_workers=4) as pool:
            results = dict(zip(CASES, pool.map(one, CASES), strict=True))
        for run in results.values():
            response = requests.get(
                f"{registry.url}/api/v1/artifacts/{run.artifact}",
                headers=registry.headers,
                timeout=10,
            )
            assert response.status_code == 404, f"{run.artifact} was created"
        yield results, proxy


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_input_is_one_clear_line_and_changes_nothing(
    runs: tuple[dict[str, Run], FaultProxy], name: str
) -> None:
    results, proxy = runs
    case, out = CASES[name], results[name].outcome
    lines = out.stderr.strip().splitlines()
    assert out.code == case.code, out.stderr
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("error: ") and len(lines[0]) < 1000
    assert case.words in lines[0]
    assert "Traceback" not in out.stderr
    assert out.stdout == ""
    assert TOKEN not in out.stderr and "hunter2pass" not in out.stderr
    writes = [s for s in proxy.seen if s.method not in ("GET", "HEAD")]
    assert writes == []


def test_action_input_that_is_not_a_boolean_is_one_annotation_and_changes_nothing(
    runs: tuple[dict[str, Run], FaultProxy], tmp_path: Path
) -> None:
    _, proxy = runs
    _box_ok(tmp_path)
    files = tmp_path / "file_commands"
    files.mkdir()
    env = action_env(
        tmp_path,
        files,
        url=proxy.url,
        token=TOKEN,
        artifact="hostile/action-boolean",
        dry_run="yes",
    )
    before = len(proxy.seen)
    proc = run_entrypoint(tmp_path, env, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    errors = [line for line in proc.stdout.splitlines() if line.startswith("::error")]
    assert len(errors) == 1 and "'dry_run' is 'yes', not a boolean" in errors[0]
    assert "Traceback" not in proc.stdout + proc.stderr
    assert TOKEN not in "\n".join(proc.stdout.splitlines()[1:])  # line 1 is ::add-mask::
    assert TOKEN not in (files / "summary").read_text()
    assert len(proxy.seen) == before  # not even a GET
