"""A throwaway PostgreSQL cluster for tests: ``initdb`` in a temp directory, on a free port.

Started as a non-root user (``postgres`` when the tests run as root, as CI does), listening on
127.0.0.1 only, with password authentication over TCP so the tests go through the same
credential path as a real deployment. Nothing here needs a system service.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from atlas_ci.registry import schema
from atlas_ci.registry.database import open_database
from atlas_ci.registry.storage import STEPS

PG_BINDIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
SUPERUSER = "atlas"
BACKENDS = ("sqlite", "postgresql")
"""Every registry behaviour test runs on each: the embedded default and PostgreSQL."""


def find_bindir() -> Path | None:
    """The newest Debian PostgreSQL's bin directory, or the one on PATH; None if none."""
    for bindir in PG_BINDIRS:
        if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists():
            return bindir
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresCluster:
    """``with PostgresCluster(bindir) as pg``: ``pg.url(db)``, ``pg.create_database()``."""

    def __init__(self, bindir: Path, *, durable: bool = False) -> None:
        self.bindir = bindir
        self.durable = durable  # False (tests): no fsync, which a throwaway cluster never needs
        self.password = secrets.token_urlsafe(16)
        self.port = 0
        self.root = Path(tempfile.mkdtemp(prefix="atlas-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self._counter = 0
        self._options = ""
        self._run_as: str | None = "postgres" if os.geteuid() == 0 else None

    def _cmd(self, *args: str) -> list[str]:
        if self._run_as is None:
            return list(args)
        return ["runuser", "-u", self._run_as, "--", *args]

    def start(self) -> PostgresCluster:
        if self._run_as is not None:
            entry = pwd.getpwnam(self._run_as)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        pwfile = self.root / "pw"
        pwfile.write_text(self.password + "\n")
        if self._run_as is not None:
            os.chown(pwfile, pwd.getpwnam(self._run_as).pw_uid, -1)
        subprocess.run(
            self._cmd(
                str(self.bindir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                SUPERUSER,
                f"--pwfile={pwfile}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ),
            check=True,
            capture_output=True,
        )
        pwfile.unlink()
        for _ in range(5):
            self.port = _free_port()
            options = (
                f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                "-c max_connections=200"
            )
            if not self.durable:
                options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            self._options = options
            if self._pg_ctl("start").returncode == 0:
                return self
        raise RuntimeError(f"postgres did not start:\n{self.log_text()}")

    def _pg_ctl(self, action: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            self._cmd(
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.log),
                "-o",
                self._options,
                "-m",
                "fast",
                "-w",
                "-t",
                "60",
                action,
            ),
            capture_output=True,
            check=False,
        )

    def _checked(self, action: str) -> None:
        done = self._pg_ctl(action)
        if done.returncode != 0:
            raise RuntimeError(f"pg_ctl {action} failed:\n{done.stderr!r}\n{self.log_text()}")

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every open connection is ended, as in a real restart."""
        self._checked("restart")

    def pause(self) -> None:
        """Stop the server (the cluster stays, for :meth:`resume`): the database is down."""
        self._checked("stop")

    def resume(self) -> None:
        """Start the server stopped by :meth:`pause` again, on the same port."""
        self._checked("start")

    def log_text(self) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")
        return ""

    def stop(self) -> None:
        if self.data.exists():
            subprocess.run(
                self._cmd(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "stop"),
                capture_output=True,
                check=False,
            )
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str, *, password: bool = True) -> str:
        secret = f":{self.password}" if password else ""
        return f"postgresql://{SUPERUSER}{secret}@127.0.0.1:{self.port}/{database}"

    def _superuser(self) -> Any:
        """A connection over the cluster's Unix socket (trusted: it works whatever the
        superuser's password is at the moment)."""
        import psycopg

        return psycopg.connect(
            host=str(self.root), port=self.port, user=SUPERUSER, dbname="postgres", autocommit=True
        )

    def admin(self, sql: str) -> None:
        """Run one statement as the superuser on the maintenance database."""
        with self._superuser() as conn:
            conn.execute(sql.encode())

    def terminate(self, database: str) -> int:
        """End every session on ``database``, as a failover or an administrator does, and wait
        until each has gone; returns how many there were."""
        with self._superuser() as conn:
            ended = conn.execute(
                "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (database,),
            ).fetchall()
        assert all(row[0] for row in ended), "a backend outlived pg_terminate_backend's wait"
        return len(ended)

    def create_database(self) -> str:
        """A new empty database; returns its name."""
        self._counter += 1
        name = f"t{self._counter}_{secrets.token_hex(3)}"
        self.admin(f"CREATE DATABASE {name} TEMPLATE template0")
        return name

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def cluster_or_none() -> Iterator[PostgresCluster | None]:
    """A started cluster, or None when PostgreSQL or psycopg is not installed here."""
    bindir = find_bindir()
    try:
        import psycopg  # noqa: F401
    except ImportError:
        bindir = None
    if bindir is None:
        yield None
        return
    with PostgresCluster(bindir) as cluster:
        yield cluster


@contextlib.contextmanager
def started_cluster() -> Iterator[PostgresCluster]:
    """A started cluster; the test is skipped without PostgreSQL here, and fails on CI."""
    with cluster_or_none() as cluster:
        if cluster is None:
            reason = "PostgreSQL (initdb, pg_ctl) or psycopg is not installed"
            if os.environ.get("CI") == "true":
                pytest.fail(f"{reason}; CI must test the PostgreSQL backend (.ci/run installs it)")
            pytest.skip(reason)
        yield cluster


def fresh_database(request: pytest.FixtureRequest, backend: str) -> str | None:
    """A ``--database`` URL of a new, migrated database (None: SQLite in the data dir)."""
    if backend == "sqlite":
        return None
    cluster: PostgresCluster = request.getfixturevalue("pg_cluster")  # tests/conftest.py
    url = cluster.url(cluster.create_database())
    db = open_database(url, Path("."))
    try:
        schema.migrate(db, STEPS)
    finally:
        db.close()
    return url
