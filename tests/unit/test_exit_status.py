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
