"""Box downloads from ``atlas-ci serve`` against nginx serving the same stored file, in one run.

    python3 bench/downloads.py [--size-mib 1024] [--clients 4] [--pairs 9] [--out BENCHMARKS.md]

One 1 GiB box (random bytes) is uploaded to a real ``atlas-ci serve`` (``curl -T``); nginx
(``sendfile on``, one worker, ``daemon off``, a temp config on 127.0.0.1) serves the very file
the registry stored, ``<data>/files/<row id>``, so both read the same page cache. Two rows:

- ``whole``: ``--clients`` concurrent ``curl`` GETs of the whole file;
- ``ranged``: ``--clients`` concurrent ``curl -r`` GETs, client i asking for half the file
  from offset i * size / (2 * clients) (206 answers, what resumed downloads ask for).

Each row is timed ``--pairs`` times per server, as pairs taken one after the other, the order
alternating (registry first, then nginx first): the machine is shared, and another tenant's
load lands on both halves of a pair alike. The ratio printed is the median of the pairs'
ratios (registry time / nginx time; under 1 is faster than nginx). Every curl's status and
byte count is checked, and the registry's access log must hold each 206. Wall time of a row
is from the first curl's start to the last one's exit; curl writes to /dev/null. The server
CPU column (user + system seconds of the registry process, of nginx's master and worker) does
not depend on the other tenants' load the way wall time does.

``--out FILE`` puts the table in FILE's section ``## Downloads: atlas-ci serve and nginx``
(replaced, or appended if missing; bench/run.py rewrites the rest of BENCHMARKS.md, not
this). Not a test: it asserts only that every answer is right.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-admin-token"
SECTION = "## Downloads: atlas-ci serve and nginx"
TARGET = 1.1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _cpu_seconds(parent: int, *, children: bool) -> float:
    """User + system seconds of ``parent`` (all its threads), and of its child processes."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        pid, ppid = int(stat.parent.name), int(fields[1])
        if pid == parent or (children and ppid == parent):
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _need(tool: str) -> str:
    found = shutil.which(tool) or (
        f"/usr/sbin/{tool}" if Path(f"/usr/sbin/{tool}").exists() else None
    )
    if found is None:
        raise SystemExit(f"{tool} is not installed: apt-get install {tool}")
    return found


class Registry:
    """``atlas-ci serve`` on a fresh data dir, its access log in a file."""

    def __init__(self, workdir: Path) -> None:
        self.data = workdir / "data"
        self.log = workdir / "registry.log"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.pop("ATLAS_REGISTRY_TOKENS", None)
        env.pop("ATLAS_REGISTRY_DATABASE", None)
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "atlas_ci", "serve", "--port", "0"),
                    *(f"--data={self.data}", f"--token={TOKEN}"),
                ],
                stdout=subprocess.PIPE,
                stderr=log,
                env=env,
            )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().decode().strip()
        if not self.url.startswith("http://"):
            self.stop()
            raise SystemExit(f"atlas-ci serve did not start: {self.log.read_text()}")

    def _api(self, curl: str, method: str, path: str, body: object) -> dict[str, object]:
        done = subprocess.run(
            [
                *(curl, "-sSf", "-X", method, "-H", f"X-Atlas-Token: {TOKEN}"),
                *("-H", "Content-Type: application/json", "-d", json.dumps(body), self.url + path),
            ],
            capture_output=True,
            check=True,
        )
        answer: dict[str, object] = json.loads(done.stdout)
        return answer

    def store(self, curl: str, box: Path) -> tuple[str, Path]:
        """Upload ``box`` as acme/web/vagrant.box; its download URL and the stored blob."""
        self._api(
            curl, "POST", "/api/v1/artifacts", {"artifact": {"username": "acme", "name": "web"}}
        )
        version = self._api(
            curl,
            "POST",
            "/api/v1/artifacts/acme/web/vagrant.box",
            {"artifact_version": {"file": True, "metadata": {"provider": "virtualbox"}}},
        )
        subprocess.run(
            [curl, "-sSf", "-o", os.devnull, "-T", str(box), str(version["upload_path"])],
            check=True,
        )
        [blob] = list((self.data / "files").iterdir())
        return f"{self.url}/api/v1/artifacts/acme/web/vagrant.box/{version['version']}/file", blob

    def cpu(self) -> float:
        return _cpu_seconds(self.proc.pid, children=False)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


class Nginx:
    """nginx serving the directory of the stored blob: ``sendfile on``, one worker."""

    def __init__(self, binary: str, workdir: Path, root: Path) -> None:
        self.dir = workdir / "nginx"
        self.dir.mkdir()
        self.port = _free_port()
        # As root, the worker would run as nobody, shut out of the registry's 0700 files/.
        user = "user root;" if os.geteuid() == 0 else ""
        conf = self.dir / "nginx.conf"
        conf.write_text(
            f"""
{user}
worker_processes 1;
daemon off;
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log warn;
events {{ worker_connections 256; }}
http {{
  sendfile on;
  access_log {self.dir}/access.log;
  client_body_temp_path {self.dir};
  proxy_temp_path {self.dir};
  fastcgi_temp_path {self.dir};
  uwsgi_temp_path {self.dir};
  scgi_temp_path {self.dir};
  default_type application/octet-stream;
  server {{
    listen 127.0.0.1:{self.port};
    root {root};
  }}
}}
"""
        )
        self.proc = subprocess.Popen(
            [binary, "-c", str(conf), "-p", str(self.dir), "-e", str(self.dir / "error.log")]
        )
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise SystemExit(f"nginx did not start: {(self.dir / 'error.log').read_text()}")

    def cpu(self) -> float:
        """The master's and the worker's."""
        return _cpu_seconds(self.proc.pid, children=True)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def fetch_all(curl: str, url: str, ranges: list[str | None], size: int) -> float:
    """Run one curl per entry of ``ranges`` at once (None: the whole file); wall seconds.
    Exits if any answer is not the status and byte count it must be."""
    procs = []
    started = time.perf_counter()
    for spec in ranges:
        argv = [curl, "-sS", "-o", os.devnull, "-w", "%{http_code} %{size_download}"]
        argv += ["-H", f"X-Atlas-Token: {TOKEN}"]
        if spec is not None:
            argv += ["-r", spec]
        procs.append(subprocess.Popen([*argv, url], stdout=subprocess.PIPE))
    outputs = [p.communicate()[0].decode() for p in procs]
    elapsed = time.perf_counter() - started
    for spec, out in zip(ranges, outputs, strict=True):
        if spec is None:
            expected = f"200 {size}"
        else:
            first, last = (int(x) for x in spec.split("-"))
            expected = f"206 {last - first + 1}"
        if out != expected:
            raise SystemExit(f"{url} {spec}: got {out!r}, expected {expected!r}")
    return elapsed


Figures = dict[str, dict[str, list[tuple[float, float]]]]
"""Row -> server -> one (wall seconds, server CPU seconds) per pair."""


def measure(
    curl: str, servers: dict[str, Registry | Nginx], urls: dict[str, str], size: int, args: Args
) -> Figures:
    """``args.pairs`` of each row and server, the order alternating pair by pair."""
    clients, half = args.clients, size // 2
    rows: dict[str, list[str | None]] = {
        "whole": [None] * clients,
        "ranged": [
            f"{i * size // (2 * clients)}-{i * size // (2 * clients) + half - 1}"
            for i in range(clients)
        ],
    }
    figures: Figures = {row: {"registry": [], "nginx": []} for row in rows}
    for name in servers:  # warm: the page cache, each server's first answer
        fetch_all(curl, urls[name], [None], size)
    for pair in range(args.pairs):
        for row, ranges in rows.items():
            order = ("registry", "nginx") if pair % 2 == 0 else ("nginx", "registry")
            for name in order:
                cpu = servers[name].cpu()
                wall = fetch_all(curl, urls[name], ranges, size)
                figures[row][name].append((wall, servers[name].cpu() - cpu))
            print(
                f"pair {pair + 1} {row}: registry {figures[row]['registry'][-1][0]:.2f} s, "
                f"nginx {figures[row]['nginx'][-1][0]:.2f} s",
                file=sys.stderr,
                flush=True,
            )
    return figures


def table(figures: Figures, size: int, clients: int) -> list[str]:
    lines = [
        "| row | atlas-ci serve | nginx | ratio (median of pairs) | each pair | server CPU "
        "(registry / nginx) | target |",
        "|---|---:|---:|---:|---|---:|---|",
    ]
    for row, by in figures.items():
        ratios = [r[0] / n[0] for r, n in zip(by["registry"], by["nginx"], strict=True)]
        ratio = statistics.median(ratios)
        mark = "met" if ratio <= TARGET else "**missed**"
        what = (
            f"{clients} x whole {size >> 20} MiB"
            if row == "whole"
            else f"{clients} x `-r` half ({size >> 21} MiB) at offsets"
        )
        wall = {name: statistics.median(x[0] for x in by[name]) for name in by}
        cpu = {name: statistics.median(x[1] for x in by[name]) for name in by}
        lines.append(
            f"| {what} | {wall['registry']:.2f} s | {wall['nginx']:.2f} s | {ratio:.2f}x | "
            + " ".join(f"{x:.2f}" for x in ratios)
            + f" | {cpu['registry']:.2f} s / {cpu['nginx']:.2f} s | <= {TARGET}x ({mark}) |"
        )
    return lines


class Args(argparse.Namespace):
    size_mib: int
    clients: int
    pairs: int
    out: Path | None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--clients", type=int, default=4, help="concurrent downloads (N)")
    parser.add_argument("--pairs", type=int, default=9, help="timed pairs per row")
    parser.add_argument("--out", type=Path, help="write the section into this Markdown file")
    args = parser.parse_args(argv, namespace=Args())
    curl, nginx = _need("curl"), _need("nginx")
    size = args.size_mib << 20
    with tempfile.TemporaryDirectory(prefix="atlas-downloads-") as tmp:
        work = Path(tmp)
        box = work / "web.box"
        with box.open("wb") as out:
            for _ in range(args.size_mib):
                out.write(os.urandom(1 << 20))
        registry = Registry(work)
        try:
            url, blob = registry.store(curl, box)
            box.unlink()  # only the stored copy stays: both servers read that one
            server = Nginx(nginx, work, blob.parent)
            try:
                load_before = _loadavg()
                urls = {"registry": url, "nginx": f"http://127.0.0.1:{server.port}/{blob.name}"}
                servers: dict[str, Registry | Nginx] = {"registry": registry, "nginx": server}
                figures = measure(curl, servers, urls, size, args)
                load_after = _loadavg()
            finally:
                server.stop()
        finally:
            registry.stop()
        ranged = sum(1 for line in registry.log.read_text().splitlines() if " 206 " in line)
        if ranged != args.clients * args.pairs:
            raise SystemExit(
                f"the registry's log holds {ranged} answers 206, not {args.clients * args.pairs}"
            )
    lines = table(figures, size, args.clients)
    print("\n".join(lines))
    print(f"load average before {load_before}, after {load_after}")
    if args.out is not None:
        _write_section(args.out, _section(args, lines, load_before, load_after))
        print(f"written to {args.out}", file=sys.stderr)
    return 0


def _section(args: Args, lines: list[str], before: str, after: str) -> str:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    command = "python3 bench/downloads.py"
    if (args.size_mib, args.clients, args.pairs) != (1024, 4, 9):
        command += f" --size-mib {args.size_mib} --clients {args.clients} --pairs {args.pairs}"
    return (
        f"{SECTION}\n\n"
        f"Made by `{command} --out BENCHMARKS.md` ({now}; {os.cpu_count()} cores shared with "
        f"other tenants, load average before {before}, after {after}; Python "
        f"{sys.version.split()[0]}). The same stored file served by `atlas-ci serve` and by "
        "nginx (`sendfile on`, one worker), concurrent `curl` downloads to /dev/null over "
        "127.0.0.1, registry and nginx timed as pairs taken one after the other (what each "
        "row asks: bench/downloads.py's docstring). A ratio under 1 is faster than nginx; the "
        "ratio is the median of the pairs' ratios, every pair listed. Wall times move with the "
        "other tenants' load from pair to pair; the server CPU seconds much less.\n\n"
        + "\n".join(lines)
        + "\n\nBoth send the file with `sendfile(2)`, a range from its offset; the registry's "
        "part per request is a database lookup, the access check and the headers.\n"
    )


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
