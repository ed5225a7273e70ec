"""PostgreSQL restarted, down, or refusing the password under a running ``atlas-ci serve``.

A registry behind a load balancer must not answer 500 because its database restarted a
minute ago: the pooled connections the restart ended are replaced before a request uses
them. While the database is down every request is 503 with ``Retry-After`` (nothing was
done; the client retries), and the server serves again once it is back. No password
reaches the server's output on any of these paths.

These tests stop and restart PostgreSQL, so they have a cluster of their own.
"""

from __future__ import annotations

import concurrent.futures
import os
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from atlas_ci.registry import schema
from atlas_ci.registry.database import open_database
from atlas_ci.registry.storage import STEPS
from tests.integration.registry_api import api, create_artifact
from tests.postgres import PostgresCluster, started_cluster
from tests.registry_proc import REPO_ROOT, RegistryProcess

READS = (
    "/api/v1/authenticate",
    "/api/v1/artifacts/u/n",
    "/api/v1/artifacts/u/n/t/search?version=any&include_pending=1",
)


@pytest.fixture
def unused() -> Iterator[socket.socket]:
    """A socket bound to a 127.0.0.1 port and not listening: a connection to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[PostgresCluster]:
    with started_cluster() as cluster:
        yield cluster


@pytest.fixture
def database(own_cluster: PostgresCluster) -> str:
    """A ``--database`` URL (with the password) of a new, migrated database."""
    url = own_cluster.url(own_cluster.create_database())
    db = open_database(url, Path("."))
    try:
        schema.migrate(db, STEPS)
    finally:
        db.close()
    return url


@pytest.fixture
def registry(tmp_path: Path, database: str) -> Iterator[RegistryProcess]:
    with RegistryProcess(tmp_path / "data", database=database) as process:
        yield process


def _statuses(registry: RegistryProcess, paths: list[str], workers: int) -> list[int]:
    """GET every path, ``workers`` at a time; each answer's status."""

    def one(path: str) -> int:
        return api(registry, "GET", path).status_code

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, paths))


def _new_version(registry: RegistryProcess) -> requests.Response:
    body = {"artifact_version": {"file": False, "metadata": {"k": "v"}}}
    return api(registry, "POST", "/api/v1/artifacts/u/n/t", json=body)


def _fill_the_pool(registry: RegistryProcess) -> None:
    """Several pooled connections, each used, all idle afterwards (what a restart ends)."""
    for _ in range(3):
        assert set(_statuses(registry, list(READS) * 6, workers=12)) == {200}


def test_a_postgresql_restart_costs_no_request(
    registry: RegistryProcess, own_cluster: PostgresCluster
) -> None:
    create_artifact(registry)
    assert _new_version(registry).status_code == 201
    _fill_the_pool(registry)

    own_cluster.restart()

    # Reads (autocommit) and writes (transactions), one at a time and many at once: every
    # pooled connection the restart ended is met by some request, and none may fail.
    statuses = [api(registry, "GET", path).status_code for path in READS * 4]
    statuses += [_new_version(registry).status_code for _ in range(8)]
    statuses += _statuses(registry, list(READS) * 10, workers=12)
    assert statuses == [200] * 12 + [201] * 8 + [200] * 30, statuses

    # The versions made after the restart follow on without a gap.
    found = api(registry, "GET", READS[2]).json()["versions"]
    assert sorted(v["version"] for v in found) == list(range(1, 10))
    assert "internal error" not in registry.stderr_text()


def test_backends_ended_one_by_one_cost_no_request(
    registry: RegistryProcess, own_cluster: PostgresCluster, database: str
) -> None:
    create_artifact(registry)
    _fill_the_pool(registry)
    name = database.rsplit("/", 1)[1]
    # A failover, or an administrator ending idle sessions: the connections die, the server
    # stays up.
    assert own_cluster.terminate(name) > 0
    statuses = [api(registry, "GET", path).status_code for path in READS * 3]
    statuses += [_new_version(registry).status_code for _ in range(4)]
    assert statuses == [200] * 9 + [201] * 4, statuses


def test_while_postgresql_is_down_requests_are_503_and_serving_resumes(
    registry: RegistryProcess, own_cluster: PostgresCluster
) -> None:
    create_artifact(registry)
    assert _new_version(registry).status_code == 201
    _fill_the_pool(registry)

    own_cluster.pause()
    try:
        down = [api(registry, "GET", path) for path in READS[1:] * 2]
        down.append(_new_version(registry))
    finally:
        own_cluster.resume()
    assert [r.status_code for r in down] == [503] * 5, [(r.status_code, r.text) for r in down]
    assert all(r.headers.get("Retry-After") == "1" for r in down)
    assert all("retry" in r.json()["errors"][0] for r in down)

    statuses = [api(registry, "GET", path).status_code for path in READS * 2]
    statuses += [_new_version(registry).status_code]
    assert statuses == [200] * 6 + [201], statuses
    found = api(registry, "GET", READS[2]).json()["versions"]
    assert sorted(v["version"] for v in found) == [1, 2]  # the refused POST made nothing
    assert "internal error" not in registry.stderr_text()
    assert own_cluster.password not in registry.stderr_text()


# -- no password in the output, whatever fails --------------------------------------------------


def _serve(data: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("ATLAS_REGISTRY_", "PG"))}
    full.update(env)
    full["PYTHONPATH"] = str(REPO_ROOT)
    return subprocess.run(
        [sys.executable, "-m", "atlas_ci", "serve", "--port=0", f"--data={data}", "--token=t"],
        capture_output=True,
        text=True,
        timeout=60,
        env=full,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("wrong password in the URL", "password authentication failed"),
        ("wrong PGPASSWORD", "password authentication failed"),
        ("missing database", "does not exist"),
        ("connection refused", "Connection refused"),
    ],
)
def test_serve_never_prints_the_password_it_was_given(
    tmp_path: Path, own_cluster: PostgresCluster, unused: socket.socket, case: str, words: str
) -> None:
    wrong = "Wr0ng-" + secrets.token_urlsafe(12)
    right = own_cluster.password
    base = "postgresql://atlas:{pw}@127.0.0.1:{port}/{db}"
    port, db = own_cluster.port, "postgres"
    env: dict[str, str] = {}
    if case == "wrong password in the URL":
        url = base.format(pw=wrong, port=port, db=db)
    elif case == "wrong PGPASSWORD":
        url = f"postgresql://atlas@127.0.0.1:{port}/{db}"
        env["PGPASSWORD"] = wrong
    elif case == "missing database":
        url = base.format(pw=right, port=port, db="no_such_db")
    else:
        url = base.format(pw=wrong, port=unused.getsockname()[1], db=db)
        env["PGPASSWORD"] = right
    env["ATLAS_REGISTRY_DATABASE"] = url
    proc = _serve(tmp_path / "data", env)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output
    assert words in output
    assert "cannot connect to postgresql://atlas@127.0.0.1:" in output
    assert wrong not in output
    assert right not in output


def test_a_password_refused_while_serving_is_503_and_never_printed(
    registry: RegistryProcess, own_cluster: PostgresCluster, database: str
) -> None:
    """The password changed under a running server (and its connections ended): every
    request is 503 with the reason in the log, and no password is printed."""
    create_artifact(registry)
    _fill_the_pool(registry)
    right, changed = own_cluster.password, "Ch4nged-" + secrets.token_urlsafe(12)
    name = database.rsplit("/", 1)[1]
    own_cluster.admin(f"ALTER ROLE atlas PASSWORD '{changed}'")
    try:
        assert own_cluster.terminate(name) > 0
        refused = [api(registry, "GET", path) for path in READS[1:]]
    finally:
        own_cluster.admin(f"ALTER ROLE atlas PASSWORD '{right}'")
    assert [r.status_code for r in refused] == [503, 503], [r.text for r in refused]
    assert api(registry, "GET", READS[1]).status_code == 200  # the old password works again
    log = registry.stderr_text()
    assert "password authentication failed" in log
    assert right not in log
    assert changed not in log
    assert all(right not in r.text and changed not in r.text for r in refused)
