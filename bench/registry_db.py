"""The registry's database side by side: SQLite and PostgreSQL under `atlas-ci serve`.

    python3 bench/registry_db.py [--versions 100000] [--posts 2000] [--clients 8]
                                 [--searches 300] [--out BENCHMARKS.md]

For each backend: a fresh registry (SQLite in a temp data directory; PostgreSQL in a throwaway
cluster started as in the tests, `tests/postgres.py`) whose artifact type already holds
``--versions`` ready versions (inserted in bulk, not through HTTP), then

- version POSTs per second: ``--clients`` threads, each with a keep-alive session, POST
  ``--posts`` versions in all (no file) to one artifact type;
- search latency: ``--searches`` sequential ``GET .../search?version=latest``, median and p95.

Both go over HTTP on 127.0.0.1 to a real ``atlas-ci serve`` process, so the figures include
the server's HTTP and JSON work, not only the database's. With ``--out`` the table replaces
this script's part of that file, between its markers (appended the first time). Needs
psycopg and Debian's PostgreSQL (``apt-get install postgresql``); asserts nothing.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import os
import signal
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from atlas_ci.registry import schema  # noqa: E402
from atlas_ci.registry.database import open_database  # noqa: E402
from atlas_ci.registry.storage import STEPS  # noqa: E402
from tests.postgres import PostgresCluster, find_bindir  # noqa: E402
from tests.registry_proc import RegistryProcess  # noqa: E402

SECTION = "## Registry database: SQLite and PostgreSQL"
START = "<!-- bench/registry_db.py: start -->\n"
END = "<!-- bench/registry_db.py: end -->\n"


def write_between_markers(out: Path, text: str) -> None:
    """Replace this script's part of ``out`` (appended the first time); the rest is kept."""
    old = out.read_text() if out.exists() else ""
    if START in old and END in old:
        before, rest = old.split(START, 1)
        after = rest.split(END, 1)[1]
    else:
        before, after = old.rstrip("\n") + "\n\n" if old else "", ""
    out.write_text(before + START + text.rstrip("\n") + "\n" + END + after)


def fill(database: str | None, data: Path, count: int) -> None:
    """``count`` ready versions of u/n/t, written straight into the database in one go."""
    db = open_database(database, data)
    try:
        schema.migrate(db, STEPS)
        rows = [
            ("u", "n", "t", i, "", i, 0, f'{{"n": "{i}"}}', 0, "ready", "2026-01-01T00:00:00.000Z")
            for i in range(1, count + 1)
        ]
        with db.transaction() as conn:
            conn.execute(
                'INSERT INTO artifacts ("user", name, created) VALUES (?, ?, ?)',
                ("u", "n", "2026-01-01T00:00:00.000Z"),
            )
            conn.executemany(
                'INSERT INTO versions ("user", name, type, version, id, build_id, compile_id, '
                "metadata, file, state, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
    finally:
        db.close()


def post_rate(registry: RegistryProcess, posts: int, clients: int) -> float:
    url = f"{registry.url}/api/v1/artifacts/u/n/t"
    body = {"artifact_version": {"build_id": 1, "metadata": {"k": "v"}, "file": False}}
    local = threading.local()

    def one(_: int) -> None:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        response = session.post(url, json=body, headers=registry.headers, timeout=60)
        response.raise_for_status()

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(clients)))  # connections open, imports warm
        started = time.perf_counter()
        list(pool.map(one, range(posts)))
        elapsed = time.perf_counter() - started
    return posts / elapsed


def search_latency(registry: RegistryProcess, searches: int) -> tuple[float, float]:
    session = requests.Session()
    url = f"{registry.url}/api/v1/artifacts/u/n/t/search"
    times = []
    for i in range(searches + 5):
        started = time.perf_counter()
        response = session.get(
            url, params={"version": "latest"}, headers=registry.headers, timeout=60
        )
        elapsed = time.perf_counter() - started
        response.raise_for_status()
        assert len(response.json()["versions"]) == 1
        if i >= 5:
            times.append(elapsed * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1]


def measure(
    name: str, database: str | None, data: Path, args: argparse.Namespace
) -> dict[str, float]:
    data.mkdir(parents=True)
    started = time.perf_counter()
    fill(database, data, args.versions)
    filled = time.perf_counter() - started
    with RegistryProcess(data, database=database) as registry:
        rate = post_rate(registry, args.posts, args.clients)
        median, p95 = search_latency(registry, args.searches)
    print(
        f"{name}: fill {filled:.1f} s, {rate:.0f} POST/s, search latest {median:.1f} ms "
        f"(p95 {p95:.1f} ms)",
        flush=True,
    )
    return {"rate": rate, "median": median, "p95": p95, "fill": filled}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--versions", type=int, default=100_000)
    parser.add_argument("--posts", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--searches", type=int, default=300)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C, so the cluster and the servers are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    bindir = find_bindir()
    if bindir is None:
        print("error: PostgreSQL is not installed (apt-get install postgresql)", file=sys.stderr)
        return 2
    load_before = os.getloadavg()
    results = {}
    with (
        tempfile.TemporaryDirectory(prefix="bench-db-") as tmp,
        PostgresCluster(bindir, durable=True) as pg,
    ):
        results["SQLite"] = measure("SQLite", None, Path(tmp) / "sqlite", args)
        pg_url = pg.url(pg.create_database())
        results["PostgreSQL"] = measure("PostgreSQL", pg_url, Path(tmp) / "pg", args)
        pg_version = (bindir / "postgres").parent.parent.name
    load_after = os.getloadavg()

    table = [
        SECTION,
        "",
        f"Made by `python3 bench/registry_db.py --versions {args.versions} --posts {args.posts} "
        f"--clients {args.clients} --searches {args.searches}` on "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; SQLite "
        f"{sqlite3.sqlite_version} (WAL, `synchronous=FULL`), PostgreSQL {pg_version} (a "
        "throwaway cluster on the same machine and disk, default durability: `fsync` and "
        "`synchronous_commit` on). One `atlas-ci serve` process per backend, "
        f"{args.versions:,} ready versions of one artifact type stored first; load average "
        f"{load_before[0]:.2f} before, {load_after[0]:.2f} after (2 cores shared with other "
        "work: read the ratio, not the absolute figures).",
        "",
        "| measure | SQLite | PostgreSQL |",
        "|---|---|---|",
        f"| version POSTs per second ({args.clients} clients over HTTP, no file) | "
        f"{results['SQLite']['rate']:.0f} | {results['PostgreSQL']['rate']:.0f} |",
        f"| `search?version=latest` median latency, ms | {results['SQLite']['median']:.1f} | "
        f"{results['PostgreSQL']['median']:.1f} |",
        f"| `search?version=latest` p95 latency, ms | {results['SQLite']['p95']:.1f} | "
        f"{results['PostgreSQL']['p95']:.1f} |",
        "",
    ]
    text = "\n".join(table)
    print(text)
    if args.out:
        write_between_markers(args.out, text)
        print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
