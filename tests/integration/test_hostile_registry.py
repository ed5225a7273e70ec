"""A hostile registry through the real command: bounded memory and time, one clear line.

Each case runs ``atlas-ci`` as a process against a ``RecordingServer`` that answers one
call in a hostile way, with ``--retries 1 --max-wait 1 --timeout 3`` (the flags of the
hardening issue). The cases run in parallel in one module fixture; each test then checks
its own outcome, and the process's peak memory (its VmHWM, read by itself at exit).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests import hostile_registry as hostile
from tests.faults import Fault, FaultProxy
from tests.recording_server import RecordingServer
from tests.upload_harness import Outcome, box_build, run_upload_cli, subprocess_env

TOKEN = "hostile-registry-token-51c9e0"
FLAGS = ["--retries", "1", "--max-wait", "1", "--timeout", "3"]
MAX_RSS_KIB = 160 * 1024  # the run's peak: python, requests, a 64 KiB box, the caps
BOMB = 512 << 20  # inflated; about 0.5 MB on the wire
ARTIFACT = r"^/api/v1/artifacts/hostile/box$"
VERSION = r"^/api/v1/artifacts/hostile/box/vagrant\.box$"


@dataclass
class Case:
    rules: dict[str, hostile.Behaviour]
    code: int
    words: tuple[str, ...]
    command: str = "upload"
    extra: list[str] = field(default_factory=list)


CASES: dict[str, Case] = {
    "endless-token-check": Case(
        {"GET /authenticate$": hostile.endless()}, 5, ("token check", "larger than 8 MiB")
    ),
    "gzip-bomb-artifact-lookup": Case(
        {f"GET {ARTIFACT}": hostile.gzip_bomb(BOMB)}, 5, ("artifact lookup", "larger than 8 MiB")
    ),
    "endless-error-body": Case(
        {"GET /authenticate$": hostile.endless(status=422)}, 5, ("could not be decoded",)
    ),
    "drip-token-check": Case(
        {"GET /authenticate$": hostile.drip()}, 6, ("token check failed: timed out", "3s")
    ),
    "endless-100-continue-on-put": Case(
        {"PUT ^/binstore/": hostile.endless_continue()}, 6, ("file upload failed: timed out",)
    ),
    "nested-json-artifact-lookup": Case(
        {f"GET {ARTIFACT}": hostile.nested_json(status=200)}, 5, ("artifact lookup", "not JSON")
    ),
    "nested-json-version-answer": Case(
        {f"POST {VERSION}": hostile.nested_json()}, 5, ("not JSON", "may exist", "--pending")
    ),
    "redirect-to-file": Case(
        {"GET /authenticate$": hostile.redirect("file:///etc/passwd")}, 5, ("file: address",)
    ),
    "redirect-to-bad-port": Case(
        {"GET /authenticate$": hostile.redirect("http://127.0.0.1:99999/x")},
        5,
        ("an unusable address",),
    ),
    "two-content-lengths": Case(
        {
            "GET /authenticate$": hostile.raw(
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\n{}"
            )
        },
        5,
        ("token check is malformed",),
    ),
    "terminal-escapes-in-answer": Case(
        {
            f"GET {ARTIFACT}": hostile.raw(
                b"HTTP/1.1 422 \x1b[31mred\r\nContent-Length: 29\r\n\r\n"
                b'{"errors": ["\\u001b[2Jgone"]}'  # 29 bytes
            )
        },
        5,
        ("?[2Jgone",),
    ),
    "endless-search": Case(
        {"GET /search$": hostile.endless()},
        5,
        ("version search", "larger than 8 MiB"),
        command="search",
        extra=["--artifact-type", "vagrant.box"],
    ),
}


@dataclass
class Run:
    outcome: Outcome
    max_rss_kib: int
    requests: list[str]
    seconds: float = 0.0  # the whole process, wall clock; printed with -s, never asserted


# The child's own peak, read by itself at exit: the kernel's ru_maxrss of a child counts
# the memory of the parent it was forked (or vforked) from, which is the test suite's.
_MEASURED = """
import atexit, os, runpy, sys
def _report():
    with open("/proc/self/status") as status:
        peak = next(line for line in status if line.startswith("VmHWM:")).split()[1]
    with open(os.environ["ATLAS_TEST_PEAK_FILE"], "w") as out:
        out.write(peak)
atexit.register(_report)
sys.argv = ["atlas-ci", *sys.argv[1:]]
runpy.run_module("atlas_ci", run_name="__main__", alter_sys=True)
"""


def run_measured(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 90) -> Run:
    """``atlas-ci ARGS`` as a child process, and its peak resident memory (KiB)."""
    peak_file = cwd / "peak-kib"
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", _MEASURED, *args],
        cwd=cwd,
        env=subprocess_env({**env, "ATLAS_TEST_PEAK_FILE": str(peak_file)}),
        capture_output=True,
        text=True,
        timeout=timeout,  # a hang fails the test instead of holding the suite
        check=False,
    )
    peak = int(peak_file.read_text()) if peak_file.exists() else -1
    seconds = time.monotonic() - started
    return Run(Outcome(proc.returncode, proc.stdout, proc.stderr), peak, [], seconds)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Run]]:
    base = tmp_path_factory.mktemp("hostile-registry")
    hostile.bomb_bytes(BOMB)  # made once, before any client waits for it

    def one(name: str) -> Run:
        case = CASES[name]
        work = base / name
        work.mkdir()
        box_build(work, "box", 64 * 1024, seed=len(name))
        with RecordingServer(hostile=case.rules) as srv:
            args = [case.command, "--artifact", "hostile/box", "--atlas-url", srv.url]
            run = run_measured(args + FLAGS + case.extra, {"ATLAS_TOKEN": TOKEN}, work)
            run.requests = [f"{r.method} {r.path.split('?')[0]}" for r in srv.requests]
        return run

    with ThreadPoolExecutor(max_workers=5) as pool:
        yield dict(zip(CASES, pool.map(one, CASES), strict=True))


@pytest.mark.parametrize("name", list(CASES))
def test_a_hostile_registry_ends_in_one_clear_line_in_bounded_memory(
    runs: dict[str, Run], name: str
) -> None:
    case, run = CASES[name], runs[name]
    out = run.outcome
    # The figures of the hardening notes: `pytest tests/integration/test_hostile_registry.py -s`.
    print(f"\n{name}: exit {out.code} in {run.seconds:.1f} s, peak {run.max_rss_kib >> 10} MiB")
    assert out.code == case.code, out.stderr
    [line] = out.error_lines()
    assert all(w in line for w in case.words), line
    assert len(line) < 1000
    assert all(c.isprintable() for c in line)  # no terminal escape from the registry
    assert "Traceback" not in out.stderr and TOKEN not in out.stderr + out.stdout
    assert 0 < run.max_rss_kib < MAX_RSS_KIB, f"{run.max_rss_kib} KiB"


def test_a_redirect_to_another_scheme_is_not_retried(runs: dict[str, Run]) -> None:
    run = runs["redirect-to-file"]
    assert run.requests == ["GET /api/v1/authenticate"]
    assert "retry" not in run.outcome.stderr


def test_each_try_ends_within_the_timeout_and_the_run_within_its_retries(
    runs: dict[str, Run],
) -> None:
    # --retries 1: the drip gets two tries, the 100-Continue PUT two, then the run ends.
    assert runs["drip-token-check"].requests == ["GET /api/v1/authenticate"] * 2
    puts = [r for r in runs["endless-100-continue-on-put"].requests if r.startswith("PUT")]
    assert len(puts) == 2


# --- Idempotency-Key (atlas-wire §11) --------------------------------------------------


def _upload_through(proxy: FaultProxy, cwd: Path, *extra: str) -> Outcome:
    box_build(cwd, "box", 64 * 1024, seed=7)
    args = ["--artifact", "hostile/box", "--atlas-url", proxy.url, "--max-wait", "0"]
    return run_upload_cli([*args, "--timeout", "3", "--debug", *extra], {"ATLAS_TOKEN": TOKEN}, cwd)


def test_a_registry_that_honours_the_key_gets_the_lost_post_again_and_makes_one_version(
    tmp_path: Path,
) -> None:
    with (
        RecordingServer(idempotency=True) as srv,
        FaultProxy(srv.url) as proxy,
    ):
        proxy.add("POST", VERSION, Fault("reset_after"))
        out = _upload_through(proxy, tmp_path, "--retries", "2", "--json")
        posts = [r for r in srv.requests if r.method == "POST" and "vagrant.box" in r.path]
    assert out.code == 0, out.stderr
    assert len(posts) == 2
    keys = {r.headers.get("Idempotency-Key") for r in posts}
    [key] = keys
    assert key and len(key) >= 20
    assert posts[0].body == posts[1].body
    assert out.result["version"] == 1  # the version the lost POST made, not a second one
    assert key not in out.stdout + out.stderr  # --debug included
    assert "version creation failed (connection reset); retry 1/2" in out.stderr


def test_a_registry_that_does_not_announce_the_key_never_gets_the_post_twice(
    tmp_path: Path,
) -> None:
    with RecordingServer() as srv, FaultProxy(srv.url) as proxy:
        proxy.add("POST", VERSION, Fault("reset_after"))
        out = _upload_through(proxy, tmp_path, "--retries", "2")
        posts = [r for r in srv.requests if r.method == "POST" and "vagrant.box" in r.path]
    assert out.code == 6, out.stderr
    assert len(posts) == 1
    assert posts[0].headers.get("Idempotency-Key")  # sent all the same: harmless
    [line] = out.error_lines()
    assert "may exist" in line and "--pending" in line


def test_a_keyed_post_that_keeps_failing_says_what_may_exist(tmp_path: Path) -> None:
    with (
        RecordingServer(idempotency=True) as srv,
        FaultProxy(srv.url) as proxy,
    ):
        proxy.add("POST", VERSION, Fault("reset_after"), occurrences=None)
        out = _upload_through(proxy, tmp_path, "--retries", "1")
        posts = [r for r in srv.requests if r.method == "POST" and "vagrant.box" in r.path]
    assert out.code == 6, out.stderr
    assert len(posts) == 2  # 1 + --retries, not more
    [line] = out.error_lines()
    assert "may exist" in line and "atlas-ci search" in line
