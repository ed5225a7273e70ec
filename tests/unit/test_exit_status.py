"""One definition of the exit statuses (errors.ExitStatus), and one error boundary serving the
CLI and the action: the README's table, ``--help`` and the annotation titles derive from it."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest

from atlas_ci import cli
from atlas_ci.boundary import guarded
from atlas_ci.errors import AtlasCIError, AuthError, ExitStatus, exit_status_rows
from tests.unit.test_imports import import_graph

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_exit_table() -> list[tuple[str, str]]:
    text = README.read_text(encoding="utf-8")
    section = text.split("### Exit codes", 1)[1].split("\n#", 1)[0]
    rows = re.findall(r"^\| ([0-9][0-9 /]*) \| (.+) \|$", section, flags=re.MULTILINE)
    return [(codes.strip(), meaning.strip()) for codes, meaning in rows]


def test_the_readme_exit_code_table_is_the_enum() -> None:
    assert readme_exit_table() == exit_status_rows()


def test_every_status_is_in_the_help_epilog() -> None:
    for codes, meaning in exit_status_rows():
        assert re.search(rf"^  {re.escape(codes)} +\S", cli.EXIT_CODES, flags=re.MULTILINE)
        first_words = " ".join(meaning.replace("`", "").split()[:4])
        assert first_words in cli.EXIT_CODES


def test_every_failure_status_has_an_annotation_title() -> None:
    assert all(status.title for status in ExitStatus if status is not ExitStatus.OK)
    assert ExitStatus.from_signal(signal.SIGINT) == 130
    assert ExitStatus.from_signal(signal.SIGTERM) == 143


def test_the_action_uses_the_shared_boundary_not_the_cli() -> None:
    graph = import_graph()
    assert "atlas_ci.cli" not in graph["atlas_ci.action"]
    assert "atlas_ci.boundary" in graph["atlas_ci.action"]
    assert "atlas_ci.boundary" in graph["atlas_ci.cli"]


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def failed(self, error: AtlasCIError) -> None:
        self.calls.append(("failed", error))

    def interrupted(self, signum: int) -> None:
        self.calls.append(("interrupted", signum))

    def bug(self, error: Exception) -> None:
        self.calls.append(("bug", error))


def test_the_boundary_maps_each_ending_to_its_status() -> None:
    report = Recorder()
    assert guarded(lambda: 0, report) == 0
    error = AuthError("401", "check the token")

    def fail() -> int:
        raise error

    assert guarded(fail, report) == ExitStatus.AUTH

    def interrupt() -> int:
        raise KeyboardInterrupt

    assert guarded(interrupt, report) == 130

    def crash() -> int:
        raise KeyError("x")

    assert guarded(crash, report) == ExitStatus.BUG
    assert [kind for kind, _ in report.calls] == ["failed", "interrupted", "bug"]
    assert report.calls[0][1] is error and report.calls[1][1] == signal.SIGINT


def test_sigterm_inside_the_boundary_is_143_and_the_handler_is_restored() -> None:
    before = signal.getsignal(signal.SIGTERM)
    report = Recorder()

    def terminated() -> int:
        os.kill(os.getpid(), signal.SIGTERM)
        pytest.fail("SIGTERM did not interrupt the work")

    assert guarded(terminated, report) == 143
    assert report.calls == [("interrupted", signal.SIGTERM)]
    assert signal.getsignal(signal.SIGTERM) is before


# --- every interrupted last line says what the registry holds ---------------------------


def _made() -> object:
    from atlas_ci.result import BuildResult, Result

    build = BuildResult(
        build="web",
        artifact="acme/web",
        artifact_type="vagrant.box",
        version=4,
        file=None,
        seconds=0.1,
        metadata=None,
    )
    return Result(builds=(build,))


def _interrupt(*_args: object, **_kwargs: object) -> None:
    raise KeyboardInterrupt


def test_a_signal_while_the_cli_writes_its_outputs_names_the_versions_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """It said only "interrupted", with version 4 made."""
    from atlas_ci import reporters, upload

    monkeypatch.setenv("ATLAS_TOKEN", "tok-interrupt-1")
    monkeypatch.setattr(upload, "run_upload", lambda *a, **k: _made())
    monkeypatch.setattr(reporters, "write_dotenv", _interrupt)
    code = cli.main(["upload", "--artifact", "acme/web", "--dotenv", str(tmp_path / "a.env")])
    assert code == 130
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == (
        "error: interrupted while writing the outputs; uploaded acme/web/vagrant.box/4; the "
        "versions exist: do not re-run the upload; take them from the log"
    )


def test_a_signal_while_the_action_writes_its_outputs_names_the_versions_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    from atlas_ci import action, github

    monkeypatch.setattr(action, "_upload", lambda *a: _made())
    monkeypatch.setattr(github, "write_outputs", _interrupt)
    env = {
        "INPUT_ARTIFACT": "acme/web",
        "INPUT_TOKEN": "tok-interrupt-2",
        "GITHUB_WORKSPACE": str(tmp_path),
        "GITHUB_OUTPUT": str(tmp_path / "output"),
    }
    out = io.StringIO()
    assert action.run(env, stream=out) == 130
    last = out.getvalue().strip().splitlines()[-1]
    assert last.startswith("::error title=atlas-ci%3A interrupted::interrupted while writing")
    assert "uploaded acme/web/vagrant.box/4" in last


def test_a_signal_before_the_first_request_says_nothing_was_created(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from atlas_ci import upload
    from atlas_ci.errors import Interrupted
    from atlas_ci.settings import Settings

    monkeypatch.setattr(upload, "load_artifacts", _interrupt)
    try:
        upload.run_upload(Settings(artifact="acme/web"))
    except Interrupted as exc:
        error = exc
    except KeyboardInterrupt:  # uncaught, it would end the test session, not fail one test
        pytest.fail("the interrupt left the flow without saying what the registry holds")
    else:
        pytest.fail("no interrupt")
    assert error.one_line() == "interrupted; nothing was created on the registry"
    assert error.exit_code == 130


def test_a_signal_while_the_cli_checks_its_outputs_says_nothing_was_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from atlas_ci import reporters

    monkeypatch.setenv("ATLAS_TOKEN", "tok-interrupt-3")
    monkeypatch.setattr(reporters, "check_writable", _interrupt)
    code = cli.main(["upload", "--artifact", "acme/web", "--dotenv", str(tmp_path / "a.env")])
    assert code == 130
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == "error: interrupted; nothing was created on the registry"


def test_a_signal_while_the_action_checks_its_outputs_says_nothing_was_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    from atlas_ci import action, reporters

    monkeypatch.setattr(reporters, "check_writable", _interrupt)
    env = {
        "INPUT_ARTIFACT": "acme/web",
        "INPUT_TOKEN": "tok-interrupt-4",
        "GITHUB_WORKSPACE": str(tmp_path),
        "GITHUB_OUTPUT": str(tmp_path / "output"),
    }
    out = io.StringIO()
    assert action.run(env, stream=out) == 130
    last = out.getvalue().strip().splitlines()[-1]
    assert last == (
        "::error title=atlas-ci%3A interrupted::interrupted; nothing was created on the registry"
    )
