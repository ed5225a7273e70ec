"""Values that would change a request's path, or cannot be sent at all, stop the run first.

The user, name and type are path segments of every API call: ``--artifact-type x/../search``
once made a version of type ``search``, and ``--artifact ../..`` sent the POST to
``/api/v1``. A lone surrogate in an artifact JSON's id was sent on and failed at the registry.
Each case runs the real command against a recording server and asserts it saw nothing.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests import artifacts
from tests.artifacts import write_manifest
from tests.recording_server import RecordingServer

TOKEN = "input-paths-token-0123456789"
ROOT = Path(__file__).resolve().parents[2]

# (argument list, words the one error line must hold: the value as written and the fault)
BAD_NAMES = {
    "type-with-dot-dot-path": (["--artifact-type", "x/../search"], ["'x/../search'", "'/'"]),
    "type-dot-dot": (["--artifact-type", ".."], ["'..'", "resolves away"]),
    "type-dot": (["--artifact-type", "."], ["'.'", "resolves away"]),
    "type-slash": (["--artifact-type", "vagrant/box"], ["'vagrant/box'", "'/'"]),
    "type-control": (["--artifact-type", "vagrant\x1b.box"], ["'vagrant\\x1b.box'", "control"]),
    "type-not-utf8": (["--artifact-type", "box\udcff"], ["'box\\udcff'", "0xff, not UTF-8"]),
    "type-bidi-override": (["--artifact-type", "box\u202e"], ["'box\\u202e'", "control"]),
    "slug-up-up": (["--artifact", "../.."], ['"../.."', "user is '..'"]),
    "slug-name-up": (["--artifact", "acme/.."], ['"acme/.."', "name is '..'"]),
    "slug-user-dot": (["--artifact", "./web"], ['"./web"', "user is '.'"]),
    "slug-two-slashes": (["--artifact", "acme/web/x"], ['"acme/web/x"', "exactly one '/'"]),
    "slug-empty-user": (["--artifact", "/web"], ['"/web"', "exactly one '/'"]),
    "slug-control": (["--artifact", "acme/w\x7fb"], ["'acme/w\\x7fb'", "control"]),
    "slug-tab": (["--artifact", "acme/w\tb"], ["'acme/w\\tb'", "control"]),
    "slug-not-utf8": (["--artifact", "acme/w\udce9b"], ["'acme/w\\udce9b'", "0xe9"]),
}


def _args(case: list[str]) -> list[str]:
    args = ["--artifact", "acme/web", "--artifact-type", "vagrant.box"]
    for flag, value in zip(case[::2], case[1::2], strict=True):
        args[args.index(flag) + 1] = value
    return args


def _one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


@pytest.mark.parametrize("case", BAD_NAMES.values(), ids=BAD_NAMES.keys())
@pytest.mark.parametrize("command", ["upload", "search"])
def test_path_characters_in_user_name_or_type_exit_2_before_any_request(
    tmp_path: Path, command: str, case: tuple[list[str], list[str]]
) -> None:
    flags, words = case
    artifacts.make_box(tmp_path / "out" / "web.box")
    write_manifest(
        tmp_path,
        [artifacts.file_build("web", "virtualbox-iso", "virtualbox", ["out/web.box"])],
    )
    with RecordingServer() as srv:
        proc = artifacts.run_cli(
            [command, *_args(flags), "--atlas-url", srv.url], tmp_path, {"ATLAS_TOKEN": TOKEN}
        )
        assert proc.returncode == 2, proc.stderr
        line = _one_error_line(proc)
        for word in words:
            assert word in line, line
        assert "how" in line or "give the" in line, line  # says how to fix it
        assert srv.requests == []


@pytest.mark.parametrize(
    ("inputs", "words"),
    [
        ({"INPUT_ARTIFACT_TYPE": "x/../search"}, ["artifact_type 'x/../search' holds a '/'"]),
        ({"INPUT_ARTIFACT": "../.."}, ["malformed slug \"../..\": the user is '..'"]),
        ({"INPUT_ARTIFACT": "acme/web\udcc0"}, ["the name holds '\\udcc0'", "0xc0"]),
    ],
)
def test_the_action_checks_its_inputs_the_same_way(
    tmp_path: Path, inputs: dict[str, str], words: list[str]
) -> None:
    artifacts.make_box(tmp_path / "out" / "web.box")
    write_manifest(
        tmp_path,
        [artifacts.file_build("web", "virtualbox-iso", "virtualbox", ["out/web.box"])],
    )
    (tmp_path / "output").write_text("")
    with RecordingServer() as srv:
        env = {**artifacts.action_env(tmp_path, tmp_path, url=srv.url, token=TOKEN), **inputs}
        proc = artifacts.run_entrypoint(tmp_path, env)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        error = [line for line in proc.stdout.splitlines() if line.startswith("::error ")]
        assert len(error) == 1, proc.stdout
        assert error[0].startswith("::error title=atlas-ci%3A configuration::")
        for word in words:
            assert word in error[0], error[0]
        assert srv.requests == []
        assert (tmp_path / "output").read_text() == ""


# --- text with no UTF-8 form in the input files (JSON "\ud800") ------------------------------

LONE = "\\ud800"  # as the JSON text holds it


def _artifact_json(tmp_path: Path, **fields: str) -> str:
    artifacts.make_box(tmp_path / "out" / "web.box")
    body = {"id": "virtualbox", "files": ["out/web.box"], "builder_type": "virtualbox-iso"}
    text = json.dumps(body)
    for key, raw in fields.items():
        text = text.replace(json.dumps(body[key]), raw, 1)
    (tmp_path / "artifact.json").write_text(text)
    return "artifact.json"


BAD_FILES = {
    "artifact-json-id": (
        {"id": f'"vbox{LONE}"'},
        "artifact JSON 'artifact.json': \"id\" holds a lone surrogate ('\\ud800')",
    ),
    "artifact-json-builder-type": (
        {"builder_type": f'"{LONE}"'},
        "artifact JSON 'artifact.json': \"builder_type\" holds a lone surrogate",
    ),
    "artifact-json-file-name": (
        {"files": f'["out/web.box{LONE}"]'},
        "artifact JSON 'artifact.json': \"files\" entry #1 'out/web.box\\ud800' holds a lone",
    ),
    "artifact-json-metadata-value": (
        {"files": f'["out/web.box"], "metadata": {{"provider": "x{LONE}"}}'},
        "metadata 'provider' in artifact JSON 'artifact.json' is not valid Unicode text",
    ),
    "artifact-json-metadata-key": (
        {"files": f'["out/web.box"], "metadata": {{"k{LONE}": "x"}}'},
        "in artifact JSON 'artifact.json' is not valid Unicode text",
    ),
}


@pytest.mark.parametrize("case", BAD_FILES.values(), ids=BAD_FILES.keys())
def test_a_lone_surrogate_in_the_artifact_json_exits_3_before_any_request(
    tmp_path: Path, case: tuple[dict[str, str], str]
) -> None:
    fields, words = case
    name = _artifact_json(tmp_path, **fields)
    with RecordingServer() as srv:
        args = ["upload", "--artifact", "acme/web", "--artifact-json", name, "--atlas-url", srv.url]
        proc = artifacts.run_cli(args, tmp_path, {"ATLAS_TOKEN": TOKEN})
        assert proc.returncode == 3, proc.stderr
        line = _one_error_line(proc)
        assert words in line, line
        assert srv.requests == []


@pytest.mark.parametrize(
    ("field", "raw", "words"),
    [
        (
            "artifact_id",
            f'"vbox{LONE}"',
            "build 'web' in manifest 'packer-manifest.json': \"artifact_id\" holds a lone surrogate",
        ),
        ("builder_type", f'"vb{LONE}"', '"builder_type" holds a lone surrogate'),
        (
            "name",
            f'"web{LONE}"',
            "build #1 in manifest 'packer-manifest.json': \"name\" holds a lone",
        ),
        (
            "files",
            f'[{{"name": "out/web.box{LONE}"}}]',
            "file #1 'out/web.box\\ud800' holds a lone",
        ),
    ],
)
def test_a_lone_surrogate_in_the_manifest_exits_3_before_any_request(
    tmp_path: Path, field: str, raw: str, words: str
) -> None:
    artifacts.make_box(tmp_path / "out" / "web.box")
    build = artifacts.file_build("web", "virtualbox-iso", "virtualbox", ["out/web.box"])
    path = write_manifest(tmp_path, [build])
    data = json.loads(path.read_text())
    data["builds"][0][field] = "@@HERE@@"
    path.write_text(json.dumps(data).replace('"@@HERE@@"', raw))
    with RecordingServer() as srv:
        args = ["upload", "--artifact", "acme/web", "--atlas-url", srv.url]
        proc = artifacts.run_cli(args, tmp_path, {"ATLAS_TOKEN": TOKEN})
        assert proc.returncode == 3, proc.stderr
        assert words in _one_error_line(proc)
        assert srv.requests == []


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--build", "b\udcff"], "--build 'b\\udcff' holds"),
        (["--metadata", "k=v\udcff"], "--metadata 'k=v\\udcff' holds"),
        (["--version", "\u0663"], "--version '\u0663' is not latest, any or a number"),
        # Past 64 bits: the registry's 400 (exit 5, blaming it) before; now the user's input.
        (["--version", "9223372036854775808"], "--version '9223372036854775808' is out of range"),
        (["--version", "9" * 5000], "is out of range"),
    ],
)
def test_search_filters_that_are_not_utf8_exit_2_before_any_request(
    tmp_path: Path, flags: list[str], words: str
) -> None:
    with RecordingServer() as srv:
        args = ["search", "--artifact", "acme/web", "--artifact-type", "t", *flags]
        proc = artifacts.run_cli([*args, "--atlas-url", srv.url], tmp_path, {"ATLAS_TOKEN": TOKEN})
        assert proc.returncode == 2, proc.stderr
        assert words in _one_error_line(proc)
        assert srv.requests == []


def test_an_atlas_url_that_is_not_utf8_exits_2_before_any_request(tmp_path: Path) -> None:
    proc = artifacts.run_cli(
        ["search", "--artifact", "acme/web", "--artifact-type", "t"],
        tmp_path,
        {"ATLAS_TOKEN": TOKEN, "ATLAS_ADDRESS": "http://127.0.0.1:9/\udcff"},
    )
    assert proc.returncode == 2, proc.stderr
    assert "atlas_url 'http://127.0.0.1:9/\\udcff' (env ATLAS_ADDRESS) holds" in proc.stderr
