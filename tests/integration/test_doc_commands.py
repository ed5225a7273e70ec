"""Every command block of README.md and docs/*.md runs as written (docs/doc-examples.md).

The convention, for whoever writes a document:

- A fenced block marked ```bash or ```sh is **run** by this test. Every other fence is only
  shown: ```console for commands that cannot run on a test machine (they need your own
  registry and token, a database server, a load balancer, Docker Hub, or are the test suite
  itself), each command line starting with ``$ ``; ```text, ```json, ```yaml, ```hcl, ...
  for everything that is not a command. Fences that look like a shell but are neither
  (```shell, ```zsh, ...) are refused, so that nobody believes a block is tested when it is not.
- The runnable blocks of one document run in the order they appear, as one script, in one
  fresh ``bash`` with ``errexit`` and ``pipefail``: what a reader following the document from
  the top in a new terminal would type. Variables set by one block are there for the next.
- The shell starts in an empty temporary directory (also its ``HOME``), with the ``atlas-ci``
  under test first on ``PATH``, no ``ATLAS_*``/``VAGRANT_*``/``PG*`` variables from outside,
  and ``VAGRANT_CHECKPOINT_DISABLE=1`` (network only to 127.0.0.1).
- One substitution: the port ``8080`` becomes a free port (8080 may be taken on a shared
  machine). A document that needs a registry starts one itself (``atlas-ci serve --port 8080
  ... &``); whatever it leaves running is stopped with the shell's process group.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.registry_proc import REPO_ROOT

RUN_FENCES = ("bash", "sh")
SHOWN_FENCES = (
    "",
    "console",
    "text",
    "json",
    "yaml",
    "hcl",
    "nginx",
    "groovy",
    "markdown",
    "python",
    "toml",
    "ini",
    "dockerfile",
)
"""Shown, never run; any other fence is refused."""
DOCUMENTS = sorted([REPO_ROOT / "README.md", *(REPO_ROOT / "docs").glob("*.md")])
TIMEOUT = 300.0

_FENCE = re.compile(r"^\s*```(\S*)\s*$")


@dataclass(frozen=True)
class Block:
    line: int
    fence: str
    text: str


def blocks(document: Path) -> list[Block]:
    """The fenced blocks of ``document``, in order (an unclosed fence is an error)."""
    found: list[Block] = []
    opened: tuple[int, str] | None = None
    body: list[str] = []
    for number, line in enumerate(document.read_text().splitlines(), start=1):
        match = _FENCE.match(line)
        if opened is None:
            if match:
                opened, body = (number, match[1]), []
        elif match and not match[1]:
            found.append(Block(opened[0], opened[1], "\n".join(body) + "\n"))
            opened = None
        else:
            body.append(line)
    assert opened is None, f"{document.name}:{opened[0]}: a ``` fence is never closed"
    return found


def runnable(document: Path) -> list[Block]:
    return [b for b in blocks(document) if b.fence in RUN_FENCES]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def script(document: Path, port: int) -> str:
    """The document's runnable blocks as one script; each announces itself on stderr."""
    parts = ["set -eo pipefail"]
    for block in runnable(document):
        parts.append(f"printf '\\n### {document.name}:{block.line}\\n' >&2")
        parts.append(re.sub(r"\b8080\b", str(port), block.text))
    return "\n".join(parts) + "\n"


def _environment(home: Path) -> dict[str, str]:
    tool_dir = Path(sys.executable).parent
    assert (tool_dir / "atlas-ci").exists(), f"no atlas-ci next to {sys.executable}"
    keep = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ATLAS_", "VAGRANT_", "PG", "PYTHON", "VIRTUAL_ENV"))
    }
    return {
        **keep,
        "HOME": str(home),
        "PATH": f"{tool_dir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "VAGRANT_CHECKPOINT_DISABLE": "1",
        "VAGRANT_NO_COLOR": "1",
    }


def _stop_group(pgid: int) -> None:
    """Stop whatever the document left running (a registry in the background), then wait."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
    raise AssertionError(f"processes of group {pgid} survived SIGKILL")


def _needs_tools(text: str) -> None:
    for tool in ("vagrant", "curl"):
        if re.search(rf"(^|\s){tool}\s", text, re.MULTILINE) and shutil.which(tool) is None:
            if os.environ.get("CI"):
                pytest.fail(f"{tool} is not installed; CI must install it (.ci/run)")
            pytest.skip(f"{tool} is not installed (CI installs it and runs this test)")


RUN_DOCUMENTS = [d for d in DOCUMENTS if runnable(d)]


def test_every_fence_is_run_or_shown() -> None:
    unknown = [
        f"{d.relative_to(REPO_ROOT)}:{b.line}: ```{b.fence}"
        for d in DOCUMENTS
        for b in blocks(d)
        if b.fence not in RUN_FENCES + SHOWN_FENCES
    ]
    assert not unknown, (
        "fences neither run nor known as shown (```bash/```sh to run a command, ```console "
        f"to show one that cannot run here): {unknown}"
    )
    # The documents this convention exists for do hold runnable blocks.
    assert {d.name for d in RUN_DOCUMENTS} >= {"README.md", "registry.md"}


@pytest.mark.parametrize("document", RUN_DOCUMENTS, ids=lambda d: d.name)
def test_the_commands_of_a_document_run_as_written(document: Path, tmp_path: Path) -> None:
    text = script(document, _free_port())
    _needs_tools(text)
    work = tmp_path / "work"
    work.mkdir()
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    # Files, not pipes: a server the document leaves in the background keeps its stdout open.
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            ["bash", "-c", text],
            cwd=work,
            env=_environment(work),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
        try:
            code = proc.wait(timeout=TIMEOUT)
        finally:
            _stop_group(proc.pid)
            proc.wait()
    output = out.read_text(errors="replace")
    errors = err.read_text(errors="replace")
    assert code == 0, f"{document.name}: exit {code}\n--- stdout\n{output}\n--- stderr\n{errors}"
    assert "Traceback" not in errors, errors
