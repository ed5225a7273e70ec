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


# --- entrypoint.sh: what the image starts first ------------------------------------------


def shell_entrypoint(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None, stdin: str = ""
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run entrypoint.sh as the image does (``sh entrypoint.sh ARGS``), Python replaced.

    The stand-in for ``/usr/local/bin/python`` logs its arguments and then runs the real
    entrypoint.py, so a test sees both whether Python was started and what it did.
    """
    app = tmp_path / "app"
    app.mkdir(exist_ok=True)
    log = tmp_path / "python-started"
    fake = tmp_path / "fake-python"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {log}\nshift\nexec {sys.executable} "$@"\n')
    fake.chmod(0o755)
    script = (ROOT / "entrypoint.sh").read_text()
    assert "PYTHON=/usr/local/bin/python\n" in script
    (app / "entrypoint.sh").write_text(
        script.replace("PYTHON=/usr/local/bin/python\n", f"PYTHON={fake}\n")
    )
    (app / "entrypoint.py").write_text((ROOT / "entrypoint.py").read_text())
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "INPUT_"))}
    proc = subprocess.run(
        ["/bin/sh", str(app / "entrypoint.sh"), *args],
        env={**base, **(env or {})},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    started = log.read_text().splitlines() if log.exists() else []
    return proc, started


def test_shell_entrypoint_execs_programs_on_path_without_starting_python(
    tmp_path: Path,
) -> None:
    proc, started = shell_entrypoint(tmp_path, "cat", stdin="kept open by cat\n")
    assert (proc.returncode, proc.stdout) == (0, "kept open by cat\n")
    # `sh -c 'cat /proc/$$/comm'`: the shell GitLab asked for is the entrypoint's own
    # process (exec'd, not a child), and no Python ran before it.
    proc2, started2 = shell_entrypoint(tmp_path, "sh", "-c", 'echo "$0 ran as $$"; exit 7')
    assert proc2.returncode == 7
    assert proc2.stdout.startswith("sh ran as ")
    assert started == started2 == []


def test_shell_entrypoint_execs_a_program_by_path(tmp_path: Path) -> None:
    tool = tmp_path / "tool"
    tool.write_text('#!/bin/sh\necho "tool $*"\n')
    tool.chmod(0o755)
    proc, started = shell_entrypoint(tmp_path, str(tool), "a b")
    assert (proc.returncode, proc.stdout, started) == (0, "tool a b\n", [])


def test_shell_entrypoint_finds_programs_in_every_path_entry(tmp_path: Path) -> None:
    bin_dir = tmp_path / "later bin"
    bin_dir.mkdir()
    (bin_dir / "only-here").write_text("#!/bin/sh\necho found\n")
    (bin_dir / "only-here").chmod(0o755)
    path = f"/nonexistent-dir::{bin_dir}:/usr/bin:/bin"
    proc, started = shell_entrypoint(tmp_path, "only-here", env={"PATH": path})
    assert (proc.returncode, proc.stdout, started) == (0, "found\n", [])


@pytest.mark.parametrize(
    ("args", "code", "stream", "text"),
    [
        (("--version",), 0, "stdout", f"atlas-ci {__version__}"),
        (("upload", "--help"), 0, "stdout", "--artifact"),
        (("search",), 2, "stderr", "error: "),
        ((), 2, "stderr", "usage: atlas-ci"),
        (("no-such-program-xyz",), 127, "stderr", "atlas-ci --help"),
        (("/no/such/program",), 126, "stderr", "cannot run"),
    ],
)
def test_shell_entrypoint_hands_the_rest_to_python_isolated(
    tmp_path: Path, args: tuple[str, ...], code: int, stream: str, text: str
) -> None:
    proc, started = shell_entrypoint(tmp_path, *args)
    assert proc.returncode == code, proc.stderr
    assert text in getattr(proc, stream)
    assert started == [f"-I {tmp_path / 'app' / 'entrypoint.py'} {' '.join(args)}".rstrip()]


def test_shell_entrypoint_with_no_arguments_on_github_runs_the_action(tmp_path: Path) -> None:
    env = {"GITHUB_ACTIONS": "true", "GITHUB_WORKSPACE": str(tmp_path), "INPUT_TOKEN": ""}
    proc, started = shell_entrypoint(tmp_path, env=env)
    assert proc.returncode == 2
    assert "::error title=atlas-ci%3A configuration::the artifact input is not set" in proc.stdout
    assert len(started) == 1


def test_the_image_starts_the_shell_entrypoint() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["/bin/sh", "/app/entrypoint.sh"]' in dockerfile
    assert "COPY entrypoint.sh entrypoint.py /app/" in dockerfile
