"""The action layer alone: inputs onto settings, and a result or an error onto the runner's
files and commands. The core is replaced at its one coupling point (``action._upload``);
runs against the real core and registry are in tests/integration/test_action_registry.py.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from atlas_ci import action
from atlas_ci.errors import ConfigError, InputFileError, RegistryUnavailable
from atlas_ci.result import BuildResult, FileInfo, Result
from atlas_ci.settings import Settings

TOKEN = "tok-Action-0123456789"
SHA = "5e" * 32


def runner_env(tmp_path: Path, **inputs: str) -> dict[str, str]:
    """What the runner passes: GITHUB_* files, the workspace, INPUT_* of every input."""
    (tmp_path / "fc").mkdir(exist_ok=True)
    (tmp_path / "ws").mkdir(exist_ok=True)
    env = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_WORKSPACE": str(tmp_path / "ws"),
        "GITHUB_OUTPUT": str(tmp_path / "fc" / "output"),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "fc" / "summary"),
        "INPUT_TOKEN": TOKEN,
        "INPUT_ARTIFACT": "acme/web",
        "INPUT_MANIFEST": "packer-manifest.json",
        "INPUT_DRY_RUN": "false",
    }
    env.update({f"INPUT_{k.upper()}": v for k, v in inputs.items()})
    return env


def a_result(dry_run: bool = False) -> Result:
    def one(name: str, version: int, file: FileInfo | None) -> BuildResult:
        return BuildResult(
            build=name,
            artifact="acme/web",
            artifact_type="vagrant.box",
            version=None if dry_run else version,
            file=file,
            seconds=1.0,
            metadata={"provider": "virtualbox"},
        )

    return Result(
        builds=(one("vbox", 3, None), one("web", 4, FileInfo(size=123, sha256=SHA))),
        dry_run=dry_run,
    )


# --- inputs ---------------------------------------------------------------------------


def test_inputs_map_onto_the_cli_settings(tmp_path: Path) -> None:
    env = runner_env(
        tmp_path,
        artifact_type="vagrant.box",
        atlas_url="http://127.0.0.1:9/api/v1",
        build="web\n\n  worker  \n",
        dry_run="True",
    )
    settings = action.settings_from_inputs(env)
    ws = tmp_path / "ws"
    assert settings.artifact == "acme/web"
    assert settings.artifact_type == "vagrant.box"
    assert settings.atlas_url == "http://127.0.0.1:9"
    assert settings.manifest == str(ws / "packer-manifest.json")
    assert settings.builds == ("web", "worker")
    assert settings.dry_run is True
    assert settings.workspace == ws
    assert settings.allow_outside_workspace is False
    assert settings.token is not None
    assert settings.token.reveal() == TOKEN


def test_hyphenated_input_names_are_read_too(tmp_path: Path) -> None:
    env = runner_env(tmp_path)
    env["INPUT_ARTIFACT-TYPE"] = "amazon.ami"
    assert action.settings_from_inputs(env).artifact_type == "amazon.ami"


def test_token_falls_back_to_the_step_env(tmp_path: Path) -> None:
    env = runner_env(tmp_path, token="")
    env["ATLAS_TOKEN"] = "tok-from-env-0001"
    token = action.settings_from_inputs(env).token
    assert token is not None
    assert token.reveal() == "tok-from-env-0001"


def test_token_input_beats_the_step_env(tmp_path: Path) -> None:
    env = runner_env(tmp_path)
    env["ATLAS_TOKEN"] = "tok-from-env-0001"
    token = action.settings_from_inputs(env).token
    assert token is not None
    assert token.reveal() == TOKEN


def test_empty_atlas_url_leaves_atlas_address_in_force(tmp_path: Path) -> None:
    env = runner_env(tmp_path, atlas_url="")
    env["ATLAS_ADDRESS"] = "https://atlas.example.com"
    assert action.settings_from_inputs(env).atlas_url == "https://atlas.example.com"


def test_absolute_paths_stay_absolute(tmp_path: Path) -> None:
    other = tmp_path / "elsewhere" / "m.json"
    settings = action.settings_from_inputs(runner_env(tmp_path, manifest=str(other)))
    assert settings.manifest == str(other)


def test_artifact_json_replaces_the_default_manifest(tmp_path: Path) -> None:
    settings = action.settings_from_inputs(runner_env(tmp_path, artifact_json="out/a.json"))
    assert settings.artifact_json == str(tmp_path / "ws" / "out" / "a.json")
    assert settings.manifest is None


def test_artifact_json_and_a_chosen_manifest_conflict(tmp_path: Path) -> None:
    env = runner_env(tmp_path, artifact_json="a.json", manifest="m.json")
    with pytest.raises(ConfigError, match="artifact_json"):
        action.settings_from_inputs(env)


@pytest.mark.parametrize(
    ("inputs", "words"),
    [
        ({"artifact": ""}, "artifact input"),
        ({"dry_run": "yes"}, "dry_run"),
        ({"artifact": "noslash"}, "malformed slug"),
    ],
)
def test_bad_inputs_are_config_errors(tmp_path: Path, inputs: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        action.settings_from_inputs(runner_env(tmp_path, **inputs))


# --- outputs --------------------------------------------------------------------------


def test_outputs_of_a_run() -> None:
    assert action.outputs(a_result()) == {
        "version": "4",
        "id": "acme/web/vagrant.box/4",
        "versions": '{"vbox":3,"web":4}',
        "file_sha256": SHA,
        "file_size": "123",
    }


def test_outputs_of_a_dry_run() -> None:
    values = action.outputs(a_result(dry_run=True))
    assert values["version"] == ""
    assert values["id"] == ""
    assert json.loads(values["versions"]) == {"vbox": None, "web": None}
    assert values["file_sha256"] == SHA


# --- a whole run, the core replaced at its coupling point --------------------------------


def run(
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    upload: Callable[[Settings, Callable[[str], None]], Result],
) -> tuple[int, list[str]]:
    monkeypatch.setattr(action, "_upload", lambda settings, log, debug: upload(settings, log))
    out = io.StringIO()
    code = action.run(env, stream=out)
    return code, out.getvalue().splitlines()


def test_success_masks_first_folds_the_log_and_writes_outputs_and_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = runner_env(tmp_path)

    def upload(settings: Settings, log: Callable[[str], None]) -> Result:
        log("Uploading acme/web/vagrant.box version 1 (123 bytes)")
        log(f"::set-output name=version::666 (a server echoing {TOKEN})")
        return a_result()

    code, lines = run(monkeypatch, env, upload)
    assert code == 0
    assert lines[0] == f"::add-mask::{TOKEN}"
    assert "::debug::setting token from input" in lines
    shown = [line for line in lines[1:] if not line.startswith("::debug::")]
    assert shown[0].startswith("::group::atlas-ci ")
    assert "acme/web to http" in shown[0]
    assert shown[1] == "Uploading acme/web/vagrant.box version 1 (123 bytes)"
    assert shown[2] == "%3A:set-output name=version::666 (a server echoing ***)"
    assert shown[3] == "::endgroup::"
    assert "output version=4" in shown
    assert not any(TOKEN in line for line in lines[1:])
    outputs = (tmp_path / "fc" / "output").read_text()
    assert "version=4\n" in outputs
    assert "id=acme/web/vagrant.box/4\n" in outputs
    assert 'versions={"vbox":3,"web":4}\n' in outputs
    summary = (tmp_path / "fc" / "summary").read_text()
    assert "| web | acme/web | vagrant.box | 4 |" in summary


def test_input_file_error_is_an_annotation_on_the_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = runner_env(tmp_path)
    manifest = str(tmp_path / "ws" / "packer-manifest.json")

    def upload(settings: Settings, log: Callable[[str], None]) -> Result:
        raise InputFileError("the manifest has no builds", "run packer build first", path=manifest)

    code, lines = run(monkeypatch, env, upload)
    assert code == 3
    assert lines[-1] == (
        "::error title=atlas-ci%3A input file,file=packer-manifest.json::"
        "the manifest has no builds; run packer build first"
    )
    summary = (tmp_path / "fc" / "summary").read_text()
    assert "### Atlas upload failed" in summary
    assert "run packer build first" in summary
    assert not (tmp_path / "fc" / "output").exists()


def test_a_file_outside_the_workspace_is_not_named_in_the_annotation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def upload(settings: Settings, log: Callable[[str], None]) -> Result:
        raise InputFileError("missing", "", path="/elsewhere/x.box")

    code, lines = run(monkeypatch, runner_env(tmp_path), upload)
    assert code == 3
    assert lines[-1] == "::error title=atlas-ci%3A input file::missing"


def test_registry_errors_keep_the_cli_exit_codes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def upload(settings: Settings, log: Callable[[str], None]) -> Result:
        raise RegistryUnavailable("connection refused", "is atlas_url right?")

    code, lines = run(monkeypatch, runner_env(tmp_path), upload)
    assert code == 6
    assert lines[-1].startswith("::error title=atlas-ci%3A the registry is unavailable::")


def test_config_error_is_reported_before_any_upload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def upload(settings: Settings, log: Callable[[str], None]) -> Result:
        raise AssertionError("must not be called")

    code, lines = run(monkeypatch, runner_env(tmp_path, dry_run="maybe"), upload)
    assert code == 2
    assert lines[0] == f"::add-mask::{TOKEN}"
    assert lines[-1].startswith("::error title=atlas-ci%3A configuration::input 'dry_run'")


def test_a_bug_is_exit_1_with_the_traceback_only_in_debug_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def upload(settings: Settings, log: Callable[[str], None]) -> Result:
        raise KeyError(TOKEN)

    code, lines = run(monkeypatch, runner_env(tmp_path), upload)
    assert code == 1
    errors = [line for line in lines if line.startswith("::error")]
    assert len(errors) == 1
    assert "internal error (KeyError)" in errors[0]
    assert all(line.startswith("::") for line in lines)
    assert not any(TOKEN in line for line in lines[1:])


def test_no_token_anywhere_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = runner_env(tmp_path, token="")
    code, lines = run(monkeypatch, env, lambda s, log: a_result())
    assert code == 2
    assert not lines[0].startswith("::add-mask::")
    assert "ATLAS_TOKEN" in lines[-1]


def test_a_path_that_is_not_utf8_does_not_crash_a_strict_stdout(tmp_path: Path) -> None:
    # On a runner whose locale is not C/C.UTF-8, stdout refuses the lone surrogate a
    # non-UTF-8 byte of a path decodes to; the annotation used to crash with exit 1.
    env = runner_env(tmp_path, manifest="x\udcffy.json")
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="utf-8", errors="strict", write_through=True)
    assert action.run(env, stream=out) == 3
    last = raw.getvalue().decode("utf-8").splitlines()[-1]
    assert last.startswith("::error title=atlas-ci%3A input file,file=x\\udcffy.json::manifest")
