"""``atlas-ci serve --database`` and ``atlas-ci registry migrate/export/import`` as processes."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from atlas_ci.registry import schema
from atlas_ci.registry.database import open_database
from atlas_ci.registry.storage import SCHEMA_VERSION, STEPS
from tests.integration.registry_api import api, create_artifact, create_version, publish, put_file
from tests.postgres import PostgresCluster
from tests.registry_proc import REPO_ROOT, RegistryProcess
from tests.upload_harness import file_sha256, versions


def _atlas_ci(
    *args: str, env: dict[str, str] | None = None, pythonpath: str = ""
) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("ATLAS_REGISTRY_", "PGPASS"))}
    full.update(env or {})
    full["PYTHONPATH"] = os.pathsep.join(p for p in (pythonpath, str(REPO_ROOT)) if p)
    return subprocess.run(
        [sys.executable, "-m", "atlas_ci", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=full,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def _one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), proc.stderr
    return lines[0]


def test_serve_without_psycopg_is_a_configuration_error(tmp_path: Path) -> None:
    blocker = tmp_path / "no-psycopg"
    blocker.mkdir()
    (blocker / "psycopg.py").write_text("raise ImportError('not installed')\n")
    proc = _atlas_ci(
        "serve",
        f"--data={tmp_path / 'd'}",
        "--token=t",
        env={"ATLAS_REGISTRY_DATABASE": "postgresql://reg:hunter2@127.0.0.1:1/atlas"},
        pythonpath=str(blocker),
    )
    assert proc.returncode == 2
    line = _one_error_line(proc)
    assert "pip install 'atlas-ci[postgres]'" in line
    assert "hunter2" not in proc.stderr + proc.stdout


def test_serve_refuses_an_unmigrated_postgresql_database(
    tmp_path: Path, pg_cluster: PostgresCluster
) -> None:
    url = pg_cluster.url(pg_cluster.create_database())
    proc = _atlas_ci("serve", f"--data={tmp_path / 'd'}", "--token=t", "--database", url)
    assert proc.returncode == 2
    line = _one_error_line(proc)
    assert "atlas-ci registry --database URL migrate" in line
    assert pg_cluster.password not in proc.stderr + proc.stdout


def test_serve_with_a_wrong_password_says_so_without_it(
    tmp_path: Path, pg_cluster: PostgresCluster
) -> None:
    url = pg_cluster.url("postgres").replace(pg_cluster.password, "Wr0ng-pa55word")
    proc = _atlas_ci("serve", f"--data={tmp_path / 'd'}", "--token=t", f"--database={url}")
    assert proc.returncode == 2
    line = _one_error_line(proc)
    assert "password authentication failed" in line
    assert "Wr0ng-pa55word" not in proc.stderr + proc.stdout


def test_migrate_twice_then_serve_with_the_password_from_pgpassword(
    tmp_path: Path, pg_cluster: PostgresCluster
) -> None:
    name = pg_cluster.create_database()
    url = pg_cluster.url(name, password=False)
    env = {"PGPASSWORD": pg_cluster.password}
    first = _atlas_ci("registry", "--database", url, "migrate", env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout == f"{url}: schema upgraded from version 0 to {SCHEMA_VERSION}\n"
    again = _atlas_ci("registry", "--database", url, "migrate", env=env)
    assert again.returncode == 0, again.stderr
    assert again.stdout == f"{url}: schema already at version {SCHEMA_VERSION}\n"
    with RegistryProcess(tmp_path / "d", env=env, database=url) as registry:
        create_artifact(registry)
        assert publish(registry, b"payload") == 1
    assert f"database {url}" in registry.stderr_text()
    assert pg_cluster.password not in registry.stderr_text()


@pytest.mark.parametrize(
    ("database", "code", "words"),
    [
        ("mysql://u@h/db", 2, "unknown scheme 'mysql'"),
        (
            "postgresql://u:s3cr3t-pw@127.0.0.1:1/db",
            6,
            "cannot connect to postgresql://u@127.0.0.1:1/db",
        ),
    ],
)
def test_registry_command_errors_are_one_line(
    tmp_path: Path, database: str, code: int, words: str
) -> None:
    proc = _atlas_ci("registry", "--data", str(tmp_path), "--database", database, "migrate")
    assert proc.returncode == code
    line = _one_error_line(proc)
    assert words in line
    assert "s3cr3t-pw" not in proc.stderr + proc.stdout


def _rows(path: Path) -> dict[str, list[tuple[object, ...]]]:
    conn = sqlite3.connect(path)
    try:
        return {
            table: conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()  # noqa: S608
            for table in ("artifacts", "versions", "pending_uploads", "idempotency_keys")
        }
    finally:
        conn.close()


def _keyed_version(registry: RegistryProcess) -> dict[str, object]:
    """POST a version of u/other/t with one fixed Idempotency-Key."""
    response = api(
        registry,
        "POST",
        "/api/v1/artifacts/u/other/t",
        json={"artifact_version": {"build_id": 7, "file": False}},
        headers={"Idempotency-Key": "moved-key-1"},
    )
    assert response.status_code in (200, 201), response.text
    version: dict[str, object] = response.json()
    return version


def test_export_to_postgresql_serve_there_and_import_back_to_sqlite(
    tmp_path: Path, pg_cluster: PostgresCluster
) -> None:
    data = tmp_path / "data"
    bodies = [os.urandom(10_000 + i) for i in range(3)]
    with RegistryProcess(data) as registry:
        create_artifact(registry)
        create_artifact(registry, "u", "other")
        for i, body in enumerate(bodies):
            publish(registry, body, build_id=i, metadata={"n": str(i)})
        pending = create_version(registry, file=True)  # v4, its file not sent yet
        keyed = _keyed_version(registry)
        assert keyed["version"] == 1
        token = registry.token
    before = _rows(data / "registry.sqlite3")

    pg = pg_cluster.url(pg_cluster.create_database())
    exported = _atlas_ci("registry", "--data", str(data), "export", "--to", pg)
    assert exported.returncode == 0, exported.stderr
    assert "2 artifacts, 5 versions, 1 pending_uploads, 1 idempotency_keys" in exported.stdout
    assert pg_cluster.password not in exported.stdout + exported.stderr

    # The same data directory (files, upload.key) now served from PostgreSQL.
    with RegistryProcess(data, token, database=pg) as registry:
        assert [v["version"] for v in versions(registry, "u/n/t")] == [4, 3, 2, 1]
        for number, body in enumerate(bodies, 1):
            assert file_sha256(registry, "u/n/t", number) == hashlib.sha256(body).hexdigest()
        late = os.urandom(5000)
        path = pending["upload_path"].replace(
            pending["upload_path"].split("/binstore")[0], registry.url
        )
        assert put_file(path, late).status_code in (200, 201)
        assert publish(registry, b"after the move") == 5  # row ids go on past the copied ones
        assert file_sha256(registry, "u/n/t", 4) == hashlib.sha256(late).hexdigest()
        response = api(registry, "GET", "/api/v1/artifacts/u/other")
        assert response.status_code == 200
        assert _keyed_version(registry) == keyed  # the key moved with its version

    back = tmp_path / "back" / "registry.sqlite3"
    imported = _atlas_ci("registry", "--database", f"sqlite://{back}", "import", "--from", pg)
    assert imported.returncode == 0, imported.stderr
    assert "2 artifacts, 6 versions, 0 pending_uploads, 1 idempotency_keys" in imported.stdout
    after = _rows(back)
    assert after["artifacts"] == before["artifacts"]
    assert after["versions"][:3] == before["versions"][:3]
    assert [row[10] for row in after["versions"]] == ["ready"] * 6

    again = _atlas_ci("registry", "--database", f"sqlite://{back}", "import", "--from", pg)
    assert again.returncode == 2
    assert "already holds rows in artifacts; copy into an empty database" in _one_error_line(again)
    assert _rows(back) == after


def test_serve_refuses_a_schema_newer_than_it_knows(
    tmp_path: Path, database_url: str | None
) -> None:
    data = tmp_path / "d"
    data.mkdir()
    db = open_database(database_url, data)
    try:
        schema.migrate(db, STEPS)
        with db.transaction() as conn:  # what a newer atlas-ci's migrate leaves behind
            conn.execute(
                "INSERT INTO schema_version (version, applied) VALUES (?, ?)",
                (SCHEMA_VERSION + 1, "x"),
            )
    finally:
        db.close()
    env = {"ATLAS_REGISTRY_DATABASE": database_url} if database_url else {}
    proc = _atlas_ci("serve", f"--data={data}", "--token=t", env=env)
    assert proc.returncode == 2
    line = _one_error_line(proc)
    assert (
        f"has schema version {SCHEMA_VERSION + 1}, newer than this atlas-ci knows "
        f"({SCHEMA_VERSION}); run a newer atlas-ci"
    ) in line


def test_serve_keeps_sqlite_where_the_url_says(tmp_path: Path) -> None:
    elsewhere = tmp_path / "db" / "nested" / "atlas.sqlite3"
    # sqlite:// + an absolute path: three slashes in all.
    with RegistryProcess(tmp_path / "data", database=f"sqlite://{elsewhere}") as registry:
        create_artifact(registry)
        assert publish(registry, b"kept elsewhere") == 1
    assert not (tmp_path / "data" / "registry.sqlite3").exists()
    assert _rows(elsewhere)["artifacts"][0][:2] == ("u", "n")
    assert f"database sqlite://{elsewhere}\n" in registry.stderr_text()


def test_account_commands_use_the_database_and_want_it_migrated(
    tmp_path: Path, pg_cluster: PostgresCluster
) -> None:
    data = tmp_path / "d"
    data.mkdir()
    url = pg_cluster.url(pg_cluster.create_database())
    refused = _atlas_ci(
        "registry", "--data", str(data), "user", "create", "alice", "--database", url
    )
    assert refused.returncode == 2
    assert "run: atlas-ci registry --database URL migrate" in _one_error_line(refused)
    assert pg_cluster.password not in refused.stderr
    assert _atlas_ci("registry", "--database", url, "migrate").returncode == 0
    env = {"ATLAS_REGISTRY_DATABASE": url}
    made = _atlas_ci("registry", "--data", str(data), "user", "create", "alice", env=env)
    assert made.returncode == 0, made.stderr
    listed = _atlas_ci("registry", "--data", str(data), "user", "list", env=env)
    assert listed.stdout.split()[0] == "alice"
    # Nothing went to a SQLite file in the data directory on the way.
    assert not (data / "registry.sqlite3").exists()


@pytest.mark.parametrize("command", [["migrate"], ["user", "list"]])
def test_an_unreachable_database_is_exit_6_without_its_password(
    tmp_path: Path, command: list[str]
) -> None:
    # Nothing listens on port 1 of 127.0.0.1: the connection is refused at once.
    url = "postgresql://reg:hunter2@127.0.0.1:1/atlas?connect_timeout=5"
    proc = _atlas_ci("registry", "--data", str(tmp_path), "--database", url, *command)
    assert proc.returncode == 6, proc.stderr
    line = _one_error_line(proc)
    assert "127.0.0.1" in line
    assert "hunter2" not in proc.stderr + proc.stdout
