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

import html
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

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
TOKENS["all"] = "Tk&<>\"\\'%-all-&amp;-%26-0123456789"
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


# --- the command ------------------------------------------------------------------------------

CLI_CASES = {
    # mode: (command and flags after --atlas-url, the expected exit code)
    "upload-ok": ("ok", ["upload", "--json", "--dotenv", "atlas.env"], 0),
    "upload-refused": ("refuse", ["upload", "--json", "--dotenv", "atlas.env"], 5),
    "upload-failing": ("fail", ["upload", "--retries", "1", "--max-wait", "0.1"], 6),
    "upload-unauthorized": ("unauthorized", ["upload", "--json"], 4),
    "search-json": ("ok", ["search", "--artifact-type", "vagrant.box", "--json"], 0),
    "search-text": ("ok", ["search", "--artifact-type", "vagrant.box", "--version", "any"], 0),
    "search-refused": ("refuse", ["search", "--artifact-type", "vagrant.box", "--json"], 5),
}


@pytest.mark.parametrize("token", TOKENS.values(), ids=TOKENS.keys())
@pytest.mark.parametrize("case", CLI_CASES.values(), ids=CLI_CASES.keys())
def test_the_command_shows_no_form_of_an_echoed_token(
    tmp_path: Path, case: tuple[str, list[str], int], token: str
) -> None:
    mode, args, code = case
    _workspace(tmp_path)
    command, *flags = args
    if command == "upload":
        # The token in the metadata too: --json prints the metadata back.
        flags += ["--metadata", f"note={token}"]
    with EchoServer(mode) as srv:
        proc = artifacts.run_cli(
            [command, "--artifact", "acme/web", "--atlas-url", srv.url, "--debug", *flags],
            tmp_path,
            {"ATLAS_TOKEN": token},
        )
    assert proc.returncode == code, proc.stderr
    assert "debug: " in proc.stderr
    dotenv = tmp_path / "atlas.env"
    assert_no_form(
        token,
        stdout=proc.stdout,
        stderr=proc.stderr,
        dotenv=dotenv.read_text() if dotenv.exists() else "",
    )
    if code == 0 and "--json" in flags:
        json.loads(proc.stdout)  # still one valid JSON line, with *** where the token was
        assert "***" in proc.stdout


def test_a_token_no_header_can_carry_is_refused_without_being_shown(tmp_path: Path) -> None:
    _workspace(tmp_path)
    with EchoServer("ok") as srv:
        proc = artifacts.run_cli(
            ["upload", "--artifact", "acme/web", "--atlas-url", srv.url, "--debug", "--json"],
            tmp_path,
            {"ATLAS_TOKEN": UNICODE_TOKEN},
        )
    assert proc.returncode == 2, proc.stderr
    assert "ATLAS_TOKEN holds" in proc.stderr
    assert_no_form(UNICODE_TOKEN, stdout=proc.stdout, stderr=proc.stderr)


# --- the action -------------------------------------------------------------------------------


def _run_action(tmp_path: Path, url: str, token: str) -> subprocess.CompletedProcess[str]:
    files = tmp_path / "file_commands"
    files.mkdir(exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(ROOT),
        "GITHUB_ACTIONS": "true",
        "RUNNER_DEBUG": "1",
        "GITHUB_WORKSPACE": str(tmp_path),
        "GITHUB_OUTPUT": str(files / "output"),
        "GITHUB_STEP_SUMMARY": str(files / "summary"),
        "INPUT_TOKEN": token,
        "INPUT_ARTIFACT": "acme/web",
        "INPUT_ATLAS_URL": url,
        # JSON metadata (tried before YAML): the token in a value, quoted exactly.
        "INPUT_METADATA": json.dumps({"note": token}),
    }
    return subprocess.run(
        [sys.executable, str(ROOT / "entrypoint.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


@pytest.mark.parametrize("token", [*TOKENS.values(), UNICODE_TOKEN], ids=[*TOKENS, "unicode"])
@pytest.mark.parametrize(
    ("mode", "code"), [("ok", 0), ("refuse", 5), ("fail", 6), ("unauthorized", 4)]
)
def test_the_action_shows_no_form_of_an_echoed_token(
    tmp_path: Path, mode: str, code: int, token: str
) -> None:
    _workspace(tmp_path)
    with EchoServer(mode) as srv:
        proc = _run_action(tmp_path, srv.url, token)
    if token == UNICODE_TOKEN:
        code = 2  # refused before any request
    assert proc.returncode == code, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    # The one place the token may be: the mask command that hides it from the runner's log.
    assert lines[0] == f"::add-mask::{_escape_data(token)}"
    annotations = [line for line in lines if line.startswith(("::error", "::warning"))]
    if code:
        assert any(line.startswith("::error ") for line in annotations), proc.stdout
    files = tmp_path / "file_commands"
    output = files / "output"
    summary = (files / "summary").read_text()
    assert "### Atlas upload" in summary
    assert_no_form(
        token,
        stdout="\n".join(lines[1:]),
        stderr=proc.stderr,
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
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "atlas_ci",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            f"--data={tmp_path / 'registry'}",
            f"--token={UNICODE_TOKEN}",
        ],
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "printable ASCII" in proc.stderr
    assert_no_form(UNICODE_TOKEN, stdout=proc.stdout, stderr=proc.stderr)
