"""How the registry's read path grows with the number of versions of one artifact.

    python3 bench/growth.py [--sizes 100 10000 100000] [--requests 30] [--out BENCHMARKS.md]

For each size: a fresh data directory filled directly through the storage layer (one
transaction of ready ``vagrant.box`` versions of ``acme/web``, metadata ``provider``,
``commit`` and ``region``), a real ``atlas-ci serve`` on it, and one keep-alive client
timing, over 127.0.0.1:

- ``search latest``: ``/search?version=latest`` (Terraform's default);
- ``search metadata, newest``: ``version=latest&metadata.1.key=provider&metadata.1.value=
  virtualbox``, which the newest version matches (Terraform's usual question);
- ``search metadata, middle``: ``version=latest`` with ``metadata.1.key=commit&metadata.1.value=``
  the commit of the version in the middle: half the versions are newer and do not match,
  so half the rows are read (the worst case short of no match at all);
- ``box catalog``: ``GET /acme/web``, Vagrant's catalog (the newest 1,000 versions);
- the same three with a user's read token (the policy's lookups) instead of the
  administrator token.

Prints a Markdown table of medians and 90th percentiles in milliseconds; ``--out FILE``
also puts it in FILE's section ``## Read path growth`` (replaced, or appended if missing;
``bench/run.py`` rewrites the rest of BENCHMARKS.md, not this). Not a test: asserts nothing
but that each answer is 200 and holds what was asked for.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

from atlas_ci.registry import metadata_index  # noqa: E402
from atlas_ci.registry.accounts import Accounts  # noqa: E402
from atlas_ci.registry.storage import Storage  # noqa: E402
from atlas_ci.registry.vagrant import CATALOG_LIMIT  # noqa: E402

TOKEN = "bench-admin-token"


def fill(data: Path, count: int) -> str:
    """``count`` ready versions of acme/web/vagrant.box; returns a read token of a user."""
    storage = Storage(data)
    try:
        storage.create_artifact("acme", "web")
        rows = [
            (
                "acme",
                "web",
                "vagrant.box",
                n,
                "virtualbox",
                n,
                0,
                json.dumps(
                    {"provider": "virtualbox", "commit": f"c{n:07d}", "region": "eu"},
                    sort_keys=True,
                ),
                1,
                "ready",
                3,
                f"{n:064x}",
                "2025-01-01T00:00:00.000Z",
            )
            for n in range(1, count + 1)
        ]
        with storage.transaction() as conn:
            conn.executemany(
                "INSERT INTO versions (user, name, type, version, id, build_id, compile_id, "
                "metadata, file, state, size, sha256, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            for row in rows:  # what Storage.create_version does besides the INSERT
                metadata_index.add(conn, "acme", "web", "vagrant.box", row[3], json.loads(row[7]))
        accounts = Accounts(storage)
        accounts.create("organization", "acme")
        accounts.create("user", "deploy")
        accounts.set_member("acme", "deploy", "read")
        token, _ = accounts.create_token("deploy", read_only=True, lifetime=None)
        return token
    finally:
        storage.close()


def timed(call: Callable[[], requests.Response], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        response = call()
        elapsed = time.perf_counter() - start
        if response.status_code != 200:
            raise SystemExit(f"{response.request.url}: {response.status_code} {response.text}")
        times.append(elapsed * 1000)
    return times


def measure(count: int, runs: int) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory(prefix="atlas-growth-") as tmp:
        data = Path(tmp) / "data"
        user_token = fill(data, count)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.pop("ATLAS_REGISTRY_TOKENS", None)
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "atlas_ci",
                "serve",
                "--port",
                "0",
                f"--data={data}",
                f"--token={TOKEN}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        try:
            assert server.stdout is not None
            url = server.stdout.readline().decode().strip()
            session = requests.Session()
            middle = f"c{count // 2 + 1:07d}"
            search = f"{url}/api/v1/artifacts/acme/web/vagrant.box/search"
            results: dict[str, list[float]] = {}
            for who, token in (("admin", TOKEN), ("read token", user_token)):
                headers = {"X-Atlas-Token": token}

                def latest(h: dict[str, str] = headers) -> requests.Response:
                    return session.get(search, params={"version": "latest"}, headers=h)

                def by_provider(h: dict[str, str] = headers) -> requests.Response:
                    params = {"metadata.1.key": "provider", "metadata.1.value": "virtualbox"}
                    return session.get(search, params=params, headers=h)

                def by_metadata(h: dict[str, str] = headers) -> requests.Response:
                    params = {"metadata.1.key": "commit", "metadata.1.value": middle}
                    return session.get(search, params=params, headers=h)

                def catalog(h: dict[str, str] = headers) -> requests.Response:
                    return session.get(f"{url}/acme/web", headers=h)

                for call in (latest, by_provider, by_metadata, catalog):
                    call()  # warm: connection, page cache
                got = latest().json()["versions"]
                assert [v["version"] for v in got] == [count], got
                got = by_metadata().json()["versions"]
                assert [v["metadata"]["commit"] for v in got] == [middle], got
                assert len(catalog().json()["versions"]) == min(count, CATALOG_LIMIT)
                results[f"search latest ({who})"] = timed(latest, runs)
                assert [v["version"] for v in by_provider().json()["versions"]] == [count]
                results[f"search metadata, newest ({who})"] = timed(by_provider, runs)
                results[f"search metadata, middle ({who})"] = timed(by_metadata, runs)
                results[f"box catalog ({who})"] = timed(catalog, max(5, runs // 3))
            return results
        finally:
            server.terminate()
            server.wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 10_000, 100_000])
    parser.add_argument("--requests", type=int, default=30, help="timed requests per row")
    parser.add_argument("--out", type=Path, help="write the section into this Markdown file")
    args = parser.parse_args(argv)
    load_before = _loadavg()
    table: dict[str, dict[int, tuple[float, float]]] = {}
    for count in args.sizes:
        print(f"measuring {count} versions ...", file=sys.stderr, flush=True)
        for row, times in measure(count, args.requests).items():
            ordered = sorted(times)
            p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
            table.setdefault(row, {})[count] = (statistics.median(times), p90)
    sizes = args.sizes
    lines = [
        "| read (ms, median / p90) | " + " | ".join(f"{n:,} versions" for n in sizes) + " |",
        "|---|" + "---:|" * len(sizes),
    ]
    for row, cells in table.items():
        lines.append(
            f"| {row} | "
            + " | ".join(f"{cells[n][0]:.1f} / {cells[n][1]:.1f}" for n in sizes)
            + " |"
        )
    print("\n".join(lines))
    if args.out is not None:
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        section = (
            f"{SECTION}\n\n"
            f"Made by `python3 bench/growth.py --requests {args.requests}` ({now}; load average "
            f"before {load_before}, after {_loadavg()}; Python {sys.version.split()[0]}). "
            "What each row asks: bench/growth.py's docstring. The box catalog lists the newest "
            "1,000 versions, so it stops growing there. Target: median under 20 ms at "
            "100,000 versions.\n\n" + "\n".join(lines) + "\n\n"
            "A search reads versions newest first and stops at the first match; with a "
            "metadata filter it reads only the versions the metadata index names for that "
            "key and value (atlas_ci/registry/metadata_index.py), so the `middle` rows do not "
            "read the 50,000 newer versions that do not match.\n"
        )
        _write_section(args.out, section)
        print(f"written to {args.out}", file=sys.stderr)
    return 0


SECTION = "## Read path growth"


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _write_section(path: Path, section: str) -> None:
    text = path.read_text() if path.exists() else ""
    start = text.find(SECTION)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(SECTION))
        text = text[:start] + section + ("" if end < 0 else text[end:])
    path.write_text(text)


if __name__ == "__main__":
    raise SystemExit(main())
