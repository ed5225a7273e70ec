"""The image's entrypoint, run as a process the way the container runs it (minus ``-I``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from atlas_ci import __version__

ROOT = Path(__file__).resolve().parents[2]


def entrypoint(
    *args: str, env: dict[str, str] | None = None, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "INPUT_"))}
    return subprocess.run(
        [sys.executable, str(ROOT / "entrypoint.py"), *args],
        env={**base, **(env or {})},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_options_go_to_atlas_ci() -> None:
    proc = entrypoint("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"atlas-ci {__version__}"


def test_subcommands_go_to_atlas_ci() -> None:
    proc = entrypoint("upload", "--help")
    assert proc.returncode == 0
    assert "--artifact" in proc.stdout


def test_other_programs_replace_the_entrypoint() -> None:
    # Jenkins' docker.image().inside starts the container with `cat` and feeds it nothing.
    proc = entrypoint("cat", stdin="kept open by cat\n")
    assert proc.returncode == 0
    assert proc.stdout == "kept open by cat\n"
    proc = entrypoint("sh", "-c", 'echo "$0 ran"; exit 7')
    assert proc.returncode == 7
    assert proc.stdout == "sh ran\n"


def test_an_unknown_program_is_127_and_says_what_to_try() -> None:
    proc = entrypoint("no-such-program-xyz")
    assert proc.returncode == 127
    assert "atlas-ci --help" in proc.stderr


def test_no_arguments_outside_github_prints_the_usage() -> None:
    proc = entrypoint()
    assert proc.returncode == 2
    assert "usage: atlas-ci" in proc.stderr


@pytest.mark.parametrize("token", ["", "tok-entry-000111"])
def test_no_arguments_on_github_runs_the_action(tmp_path: Path, token: str) -> None:
    env = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_WORKSPACE": str(tmp_path),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        "INPUT_TOKEN": token,
    }
    proc = entrypoint(env=env)
    assert proc.returncode == 2
    lines = proc.stdout.splitlines()
    if token:
        assert lines[0] == f"::add-mask::{token}"
    assert lines[-1] == (
        "::error title=atlas-ci%3A configuration::the artifact input is not set; "
        "add `artifact: USER/NAME` under the step's `with:`"
    )
    assert "### Atlas upload failed" in (tmp_path / "summary.md").read_text()


def test_the_entry_points_exit_with_main_s_code_after_freezing_the_collector() -> None:
    # exit_process skips the interpreter's final walk over every object; the exit code,
    # atexit handlers and what was printed must all survive it.
    probe = (
        "import atexit, gc, sys\n"
        "from atlas_ci.errors import exit_process\n"
        "atexit.register(lambda: print('atexit ran', gc.get_freeze_count() > 0))\n"
        "print('buffered', end='')\n"
        "exit_process(5)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 5
    assert proc.stdout == "bufferedatexit ran True\n"
    for argv in (["-m", "atlas_ci", "search"], [str(ROOT / "entrypoint.py"), "search"]):
        done = subprocess.run(
            [sys.executable, *argv], capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 2, done.stderr  # no --artifact: a configuration error
        assert done.stderr.startswith("error: "), done.stderr
