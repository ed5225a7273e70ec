"""No form of the token reaches any output, whatever characters it holds.

Encoders used to run before the redactor: the job summary HTML-escaped a token holding ``&``,
``<`` or ``>`` (GitHub renders it back as the token) and ``search --json`` JSON-escaped one
holding ``"`` or ``\\``. Each test runs the real command (or the action's entry point, or the
real registry) with such a token against a server that quotes it back in every answer, raw
and escaped, and looks for the token raw, HTML-escaped, JSON-escaped, percent-encoded,
workflow-escaped and as ``repr`` in stdout, stderr, ``--debug``, ``--json``, the dotenv file,
``GITHUB_OUTPUT``, the job summary, the annotations and the registry's log.
"""

from __future__ import annotations

import contextlib
import html
import io
import json
import os
import re
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from atlas_ci import action, redaction
from atlas_ci.cli import main as cli_main
from tests import artifacts
from tests.artifacts import write_manifest
from tests.echo_server import EchoServer
from tests.registry_proc import RegistryProcess

ROOT = Path(__file__).resolve().parents[2]

_SPECIAL = {
    "amp": "&",
    "lt": "<",
    "gt": ">",
    "quot": '"',
    "backslash": "\\",
    "apos": "'",
    "percent": "%",
}
TOKENS = {name: f"Tk{c}leak{c}{c}-{name}-{c}0123456789" for name, c in _SPECIAL.items()}
# Every character at once, in the real processes (each token above runs in this process).
ALL = "Tk&<>\"\\'%-all-&amp;-%26-0123456789"
TOKENS["all"] = ALL
# A token an HTTP header cannot carry: refused, and still never shown.
UNICODE_TOKEN = "Tk\u00f6\u20ac\u00fc-unicode-\u2603-0123456789"


def forms(token: str) -> set[str]:
    """Every form an encoder of ours or a server could give the token (computed here, not
    by the code under test)."""
    from urllib.parse import quote, quote_plus

    found = {
        token,
        html.escape(token),
        html.escape(token, quote=False),
        html.escape(token).replace("&#x27;", "&#39;"),
        json.dumps(token)[1:-1],
        json.dumps(token, ensure_ascii=False)[1:-1],
        repr(token)[1:-1],
        quote(token, safe=""),
        quote(token),
        quote_plus(token),
    }
    data = token.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    found |= {data, data.replace(":", "%3A").replace(",", "%2C")}
    found |= {re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), f) for f in found}
    return found


def assert_no_form(token: str, **outputs: str) -> None:
    for where, text in outputs.items():
        for form in forms(token):
            assert form not in text, f"{where} shows the token as {form!r}:\n{text}"


def _workspace(tmp_path: Path) -> None:
    artifacts.make_box(tmp_path / "out" / "web.box")
    write_manifest(
        tmp_path, [artifacts.file_build("web", "virtualbox-iso", "virtualbox", ["out/web.box"])]
    )


# --- running the real entry points: in a process of their own, or (fast) in this one ---------


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


@contextlib.contextmanager
def _environ(env: Mapping[str, str], cwd: Path) -> Iterator[None]:
    saved, previous = dict(os.environ), Path.cwd()
    with redaction._lock:  # what a fresh process would know: nothing
        redaction._secrets.clear()
    for key in [k for k in os.environ if k.startswith(("ATLAS_", "GITHUB_", "INPUT_", "RUNNER_"))]:
        del os.environ[key]
    os.environ.update(env)
    os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(previous)
        os.environ.clear()
        os.environ.update(saved)


def run_command(args: list[str], cwd: Path, token: str, *, here: bool) -> Ran:
    """``atlas-ci ARGS`` with ``ATLAS_TOKEN=token``: a subprocess, or ``cli.main`` here."""
    if not here:
        proc = artifacts.run_cli(args, cwd, {"ATLAS_TOKEN": token})
        return Ran(proc.returncode, proc.stdout, proc.stderr)
    out, err = io.StringIO(), io.StringIO()
    with (
        _environ({"ATLAS_TOKEN": token}, cwd),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        code = cli_main(args)
    return Ran(code, out.getvalue(), err.getvalue())


def run_action(tmp_path: Path, url: str, token: str, *, here: bool) -> Ran:
    """The action from the runner's environment: ``entrypoint.py``, or ``action.run`` here."""
    files = tmp_path / "file_commands"
    files.mkdir(exist_ok=True)
    env = {
        "RUNNER_DEBUG": "1",
        **artifacts.action_env(
            tmp_path,
            files,
            url=url,
            token=token,
            # JSON metadata (tried before YAML): the token in a value, quoted exactly.
            metadata=json.dumps({"note": token}),
        ),
    }
    if here:
        out = io.StringIO()
        with _environ(env, tmp_path):
            code = action.run(dict(os.environ), stream=out)
        return Ran(code, out.getvalue(), "")
    proc = artifacts.run_entrypoint(tmp_path, env)
    return Ran(proc.returncode, proc.stdout, proc.stderr)


# --- the command ------------------------------------------------------------------------------

CLI_CASES = {
    # mode: (command and flags after --atlas-url, the expected exit code)
    "upload-ok": ("ok", ["upload", "--json", "--dotenv", "atlas.env"], 0),
    "upload-refused": ("refuse", ["upload", "--json", "--dotenv", "atlas.env"], 5),
    "upload-failing": ("fail", ["upload", "--retries", "1", "--max-wait", "0.1"], 6),
    "upload-odd-status": ("odd", ["upload"], 5),
    "upload-unauthorized": ("unauthorized", ["upload", "--json"], 4),
    "search-json": ("ok", ["search", "--artifact-type", "vagrant.box", "--json"], 0),
    "search-text": ("ok", ["search", "--artifact-type", "vagrant.box", "--version", "any"], 0),
    "search-refused": ("refuse", ["search", "--artifact-type", "vagrant.box", "--json"], 5),
}
# Each token in this process, and the one holding every character in a real process.
RUNS = [(name, token, True) for name, token in TOKENS.items()] + [("all-process", ALL, False)]


@pytest.mark.parametrize(("token", "here"), [r[1:] for r in RUNS], ids=[r[0] for r in RUNS])
@pytest.mark.parametrize("case", CLI_CASES.values(), ids=CLI_CASES.keys())
def test_the_command_shows_no_form_of_an_echoed_token(
    tmp_path: Path, case: tuple[str, list[str], int], token: str, here: bool
) -> None:
    mode, args, code = case
    _workspace(tmp_path)
    command, *flags = args
    if command == "upload":
        # The token in the metadata too: --json prints the metadata back.
        flags += ["--metadata", f"note={token}"]
    with EchoServer(mode) as srv:
        ran = run_command(
            [command, "--artifact", "acme/web", "--atlas-url", srv.url, "--debug", *flags],
            tmp_path,
            token,
            here=here,
        )
    assert ran.returncode == code, ran.stderr
    assert "debug: " in ran.stderr
    if mode != "unauthorized":
        # The echoed token reached the output and was cut there, so the search below looks
        # where the token would be (a run that printed nothing of the answers passes it).
        # A 401 prints nothing of its answer: that case only shows we add no form ourselves.
        assert "***" in ran.stdout + ran.stderr, ran.stdout + ran.stderr
    dotenv = tmp_path / "atlas.env"
    assert_no_form(
        token,
        stdout=ran.stdout,
        stderr=ran.stderr,
        dotenv=dotenv.read_text() if dotenv.exists() else "",
    )
    if code == 0 and "--json" in flags:
        json.loads(ran.stdout)  # still one valid JSON line, with *** where the token was
        assert "***" in ran.stdout


def test_a_token_no_header_can_carry_is_refused_without_being_shown(tmp_path: Path) -> None:
    _workspace(tmp_path)
    with EchoServer("ok") as srv:
        args = ["upload", "--artifact", "acme/web", "--atlas-url", srv.url, "--debug", "--json"]
        ran = run_command(args, tmp_path, UNICODE_TOKEN, here=False)
    assert ran.returncode == 2, ran.stderr
    assert "ATLAS_TOKEN holds" in ran.stderr
    assert_no_form(UNICODE_TOKEN, stdout=ran.stdout, stderr=ran.stderr)


# --- the action -------------------------------------------------------------------------------


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


ACTION_RUNS = [*RUNS, ("unicode-process", UNICODE_TOKEN, False)]


@pytest.mark.parametrize(
    ("token", "here"), [r[1:] for r in ACTION_RUNS], ids=[r[0] for r in ACTION_RUNS]
)
@pytest.mark.parametrize(
    # A status the action retries would sleep through its backoff (it has no --retries): the
    # reason phrase reaches the summary just the same from a 418.
    ("mode", "code"),
    [("ok", 0), ("refuse", 5), ("odd", 5), ("unauthorized", 4)],
)
def test_the_action_shows_no_form_of_an_echoed_token(
    tmp_path: Path, mode: str, code: int, token: str, here: bool
) -> None:
    _workspace(tmp_path)
    with EchoServer(mode) as srv:
        ran = run_action(tmp_path, srv.url, token, here=here)
    if token == UNICODE_TOKEN:
        code = 2  # refused before any request
    assert ran.returncode == code, ran.stdout + ran.stderr
    lines = ran.stdout.splitlines()
    # The one place the token may be: the mask command that hides it from the runner's log.
    assert lines[0] == f"::add-mask::{_escape_data(token)}"
    annotations = [line for line in lines if line.startswith(("::error", "::warning"))]
    if code:
        assert any(line.startswith("::error ") for line in annotations), ran.stdout
    files = tmp_path / "file_commands"
    output = files / "output"
    summary = (files / "summary").read_text()
    assert "### Atlas upload" in summary
    assert_no_form(
        token,
        stdout="\n".join(lines[1:]),
        stderr=ran.stderr,
        annotations="\n".join(annotations),
        github_output=output.read_text() if output.exists() else "",
        summary=summary,
    )


# --- the registry's log -----------------------------------------------------------------------

SEARCH = ["search", "--artifact", "acme/web", "--artifact-type", "vagrant.box"]


@pytest.mark.parametrize("token", TOKENS.values(), ids=TOKENS.keys())
def test_the_registry_log_shows_no_form_of_its_token(tmp_path: Path, token: str) -> None:
    _workspace(tmp_path)
    with RegistryProcess(tmp_path / "registry", token) as registry:
        good = artifacts.run_cli(
            ["upload", "--artifact", "acme/web", "--atlas-url", registry.url, "--json"],
            tmp_path,
            {"ATLAS_TOKEN": token},
        )
        # A client holding a token that is one character off: refused, and not logged.
        wrong = artifacts.run_cli(
            [*SEARCH, "--atlas-url", registry.url],
            tmp_path,
            {"ATLAS_TOKEN": token + "x"},
        )
    assert good.returncode == 0, good.stderr
    assert wrong.returncode == 4, wrong.stderr
    log = registry.stderr_text()
    assert " POST /api/v1/artifacts/acme/web/vagrant.box 201 " in log
    assert " 401 " in log
    assert_no_form(token, registry_log=log, stdout=good.stdout, stderr=good.stderr)
    assert_no_form(token + "x", registry_log=log, stderr=wrong.stderr)


def test_the_registry_refuses_a_token_no_header_can_carry_without_showing_it(
    tmp_path: Path,
) -> None:
    # Run to its end, not started: it must refuse the token and exit.
    serve = RegistryProcess(tmp_path / "registry", UNICODE_TOKEN).command()
    proc = subprocess.run(
        serve,
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "printable ASCII" in proc.stderr
    assert_no_form(UNICODE_TOKEN, stdout=proc.stdout, stderr=proc.stderr)
