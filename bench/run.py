"""Side-by-side benchmarks of the upload path against curl, hashlib, tar and Python itself.

    python3 bench/run.py [--runs 5] [--quick] [--only ROW ...] [--out BENCHMARKS.md]

See bench/README.md. Installs nginx, curl and openssl with apt-get when they are missing
(needs root), makes its test files in a temporary directory that it removes at the end,
starts nginx on 127.0.0.1 (plain and TLS) and stops it, and runs every comparison
``--runs`` times alternating the contenders. Prints a table of medians and ratios and
writes it, with the machine it ran on, to ``--out``.
"""

from __future__ import annotations

import argparse
import compileall
import datetime
import json
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CHILD = HERE / "child.py"
LAUNCH = HERE / "launch.py"
GIB = 1 << 30
MIB = 1 << 20


# -- running things -------------------------------------------------------------------


@dataclass
class Proc:
    wall: float  # seconds, the whole process
    maxrss_kib: int
    result: dict[str, object]
    cpu: float = 0.0  # user + system seconds of the process (all its threads)
    server_cpu: float = 0.0  # the same of the server it talked to, where measured

    @property
    def inner(self) -> float:
        """Seconds inside the library call, as the child reported it."""
        value = self.result.get("seconds")
        return float(value) if isinstance(value, (int, float)) else self.wall


def run_proc(argv: Sequence[str], *, cwd: Path | None = None) -> Proc:
    """Run a process to its end (through launch.py): its wall time, peak RSS and JSON line."""
    launcher = [sys.executable, "-S", str(LAUNCH)] + (["--cwd", str(cwd)] if cwd else [])
    with tempfile.TemporaryFile() as errfile:
        done = subprocess.run(
            [*launcher, *argv],
            stdout=subprocess.PIPE,
            stderr=errfile,
            env=_child_env(),
            check=False,
        )
        if done.returncode != 0:
            errfile.seek(0)
            err = errfile.read().decode(errors="replace")[-800:]
            raise RuntimeError(f"{list(argv[:3])} exited {done.returncode}: {err}")
    lines = done.stdout.decode().strip().splitlines()
    measured = json.loads(lines[-1])
    result: dict[str, object] = {}
    if len(lines) > 1 and lines[-2].startswith("{"):
        result = json.loads(lines[-2])
    return Proc(
        float(measured["wall"]), int(measured["maxrss_kib"]), result, float(measured["cpu"])
    )


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        env.pop(var, None)
    return env


def alternate(contenders: dict[str, Callable[[], Proc]], runs: int) -> dict[str, list[Proc]]:
    """Run each contender ``runs`` times, rotating who goes first every round."""
    names = list(contenders)
    results: dict[str, list[Proc]] = {name: [] for name in names}
    for i in range(runs):
        order = names[i % len(names) :] + names[: i % len(names)]
        for name in order:
            results[name].append(contenders[name]())
    return results


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


# -- the table ------------------------------------------------------------------------


@dataclass
class Row:
    what: str
    ours: str
    reference: str
    ratio: str
    target: str
    verdict: str
    note: str = ""


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)

    def add(self, row: Row) -> None:
        self.rows.append(row)
        print(f"  {row.what}: {row.ours} vs {row.reference} -> {row.ratio} ({row.verdict})")

    def markdown(self) -> str:
        head = (
            "| comparison | ours | reference | ratio | target | met |\n|---|---|---|---|---|---|\n"
        )
        body = "".join(
            f"| {r.what} | {r.ours} | {r.reference} | {r.ratio} | {r.target} | {r.verdict} |\n"
            for r in self.rows
        )
        notes = "".join(f"- {r.what}: {r.note}\n" for r in self.rows if r.note)
        return head + body + ("\nNotes:\n\n" + notes if notes else "")


def verdict(ok: bool) -> str:
    return "yes" if ok else "**no**"


def rate(size: int, seconds: float) -> str:
    return f"{size / seconds / GIB:.2f} GiB/s"


# -- tools and files ------------------------------------------------------------------


def find_tool(name: str) -> str | None:
    return shutil.which(name) or next(
        (str(p) for d in ("/usr/sbin", "/sbin") if (p := Path(d) / name).exists()), None
    )


def ensure_tools() -> dict[str, str]:
    wanted = {
        "nginx": "nginx",
        "curl": "curl",
        "openssl": "openssl",
        "tar": "tar",
        "gzip": "gzip",
        "dd": "coreutils",
    }
    missing = [pkg for tool, pkg in wanted.items() if find_tool(tool) is None]
    if missing:
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            raise SystemExit(f"missing {', '.join(missing)}: install them or run as root with apt")
        print(f"installing {' '.join(missing)} with apt-get")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
        )
    tools = {}
    for tool in wanted:
        path = find_tool(tool)
        if path is None:
            raise SystemExit(f"{tool} is still missing")
        tools[tool] = path
    return tools


def make_box(path: Path, size: int) -> None:
    """A gzip file of about ``size`` bytes of random data in stored deflate blocks."""
    base = bytearray(os.urandom(64 * MIB))
    comp = zlib.compressobj(0, zlib.DEFLATED, 31)
    with path.open("wb") as f:
        for i in range(max(1, size // len(base))):
            base[:8] = i.to_bytes(8, "little")  # no two chunks alike
            f.write(comp.compress(base))
        f.write(comp.flush())


def make_text_files(directory: Path, count: int, size: int) -> list[str]:
    """``count`` files of compressible log-like text (gzip -6 keeps roughly a third)."""
    rng = random.Random(7)
    letters = "etaoinshrdlcumwfgypbvkjxqz"
    freq = [12, 9, 8, 7.5, 7, 6.7, 6.3, 6, 5.9, 4.3, 4, 2.8, 2.8, 2.4, 2.4, 2.2, 2, 2, 1.9]
    freq += [1.5, 1, 0.8, 0.2, 0.2, 0.1, 0.07]
    words = ["".join(rng.choices(letters, freq, k=rng.randint(2, 10))) for _ in range(30000)]
    cum = []
    total = 0.0
    for rank in range(len(words)):
        total += 1 / (rank + 1)  # Zipf: a few words everywhere, most rare
        cum.append(total)
    lines = []
    n = 0
    while n < 16 * MIB:
        stamp = (
            f"2024-05-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}"
        )
        words_k = rng.choices(words, cum_weights=cum, k=rng.randint(4, 16))
        line = f"{stamp}Z host{rng.randint(1, 40)} {' '.join(words_k)}\n"
        lines.append(line)
        n += len(line)
    chunk = "".join(lines).encode()[: 16 * MIB]
    names = []
    for i in range(count):
        name = f"disk-{i}.img"
        with (directory / name).open("wb") as f:
            for _ in range(size // len(chunk)):
                cut = rng.randrange(len(chunk))
                f.write(chunk[cut:] + chunk[:cut])
        names.append(name)
    return names


# -- nginx ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Nginx:
    """nginx on 127.0.0.1: a TLS sink (201, body discarded) and a WebDAV PUT to disk."""

    def __init__(self, binary: str, openssl: str, workdir: Path) -> None:
        self.dir = workdir
        self.dir.mkdir()
        (self.dir / "tmp").mkdir()
        self.www = self.dir / "www"
        (self.www / "dav").mkdir(parents=True)
        # As root, nginx's workers would be nobody, shut out of this 0700 temp dir.
        user = "user root;" if os.geteuid() == 0 else ""
        self.cert = self.dir / "cert.pem"
        key = self.dir / "key.pem"
        subprocess.run(
            [
                *(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
                *("-keyout", str(key), "-out", str(self.cert), "-subj", "/CN=127.0.0.1"),
                *("-addext", "subjectAltName=IP:127.0.0.1"),
            ],
            check=True,
            capture_output=True,
        )
        self.https_port, self.http_port = free_port(), free_port()
        self.log = self.dir / "access.log"
        conf = self.dir / "nginx.conf"
        conf.write_text(
            f"""
{user}
worker_processes 1;
daemon off;
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log warn;
events {{ worker_connections 64; }}
http {{
  log_format bench '$request_length $status';
  access_log {self.log} bench;
  client_body_temp_path {self.dir}/tmp;
  client_max_body_size 0;
  client_body_timeout 120s;
  # `return` discards the body while it answers; give it time to read all of it
  lingering_time 3600s;
  lingering_timeout 120s;
  server {{
    listen 127.0.0.1:{self.https_port} ssl;
    ssl_certificate {self.cert};
    ssl_certificate_key {key};
    location / {{ return 201; }}
  }}
  server {{
    listen 127.0.0.1:{self.http_port};
    # the ingest reference: the body to a temp file, then renamed into place
    location /dav/ {{ root {self.www}; dav_methods PUT; }}
  }}
}}
"""
        )
        self.proc = subprocess.Popen(
            [binary, "-c", str(conf), "-p", str(self.dir), "-e", str(self.dir / "error.log")]
        )
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.https_port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            self.stop()
            raise SystemExit(f"nginx did not start: {(self.dir / 'error.log').read_text()}")

    def cpu(self) -> float:
        """User + system seconds used so far by nginx's master and worker processes."""
        tick = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            pid, ppid = int(stat.parent.name), int(fields[1])
            if self.proc.pid in (pid, ppid):
                total += (int(fields[11]) + int(fields[12])) / tick
        return total

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Sink:
    """bench/sink.py in a process of its own: reads whole bodies, logs their sizes."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.log = workdir / "sink.log"
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "sink.py"), str(self.port), str(self.log)],
            stdout=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != b"ready":
            raise SystemExit("the benchmark sink did not start")

    def check(self, size: int, who: str) -> None:
        """The last request must have brought all ``size`` bytes (logged before the 201)."""
        last = self.log.read_text().split()[-1] if self.log.exists() else "nothing"
        if last != str(size):
            raise SystemExit(f"the sink got {last} bytes from {who}, not {size}")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


# -- the comparisons ------------------------------------------------------------------


@dataclass
class Bench:
    tools: dict[str, str]
    nginx: Nginx
    sink: Sink
    work: Path
    runs: int
    report: Report
    rss: dict[str, int] = field(default_factory=dict)  # label -> peak KiB

    def curl(self, url: str, path: Path, ok: tuple[int, ...] = (201,)) -> Callable[[], Proc]:
        size = path.stat().st_size
        argv = [self.tools["curl"], "-sS", "-o", "/dev/null", "--fail", "-T", str(path)]
        argv += ["-w", '{"size_upload": %{size_upload}, "status": %{http_code}}\n']
        if url.startswith("https"):
            argv += ["--cacert", str(self.nginx.cert)]

        def run() -> Proc:
            proc = run_proc([*argv, url])
            if proc.result.get("size_upload") != size or proc.result.get("status") not in ok:
                raise SystemExit(f"curl did not upload the whole file: {proc.result}")
            return proc

        return run

    def put(self, url: str, path: Path, hashing: str) -> Callable[[], Proc]:
        argv = [sys.executable, str(CHILD), "put", url, str(path), str(path.stat().st_size)]
        argv += [hashing, str(self.nginx.cert)]
        return lambda: run_proc(argv)

    def sha256(self, path: Path) -> Callable[[], Proc]:
        return lambda: run_proc([sys.executable, str(CHILD), "sha256", str(path)])

    def plain_send(self, path: Path, label: str) -> None:
        size = path.stat().st_size
        url = f"http://127.0.0.1:{self.sink.port}/upload/{path.name}?X-Sig=bench"

        def checked(run: Callable[[], Proc], who: str) -> Callable[[], Proc]:
            def go() -> Proc:
                proc = run()
                self.sink.check(size, who)
                return proc

            return go

        contenders = {
            "curl": checked(self.curl(url, path), "curl"),
            "nohash": checked(self.put(url, path, "nohash"), "put_file"),
            "hash": checked(self.put(url, path, "hash"), "put_file + sha256"),
            "early": checked(self.put(url, path, "early"), "put_file + early sha256"),
            "sha256": self.sha256(path),
            "cli": checked(self.cli_upload(url, path), "atlas-ci upload"),
        }
        res = alternate(contenders, self.runs)
        curl_t = median([p.wall for p in res["curl"]])
        send_t = median([p.inner for p in res["nohash"]])
        self.report.add(
            Row(
                f"send {label} over http, hash off (library) vs `curl -T`",
                rate(size, send_t),
                rate(size, curl_t),
                f"{curl_t / send_t:.2f}x",
                ">= 2x",
                verdict(curl_t / send_t >= 2),
                "sendfile; time inside put_file, curl's whole process",
            )
        )
        sha_wall = median([p.wall for p in res["sha256"]])
        slower = max(curl_t, sha_wall)
        which = "curl -T" if curl_t >= sha_wall else "hashlib sha256"
        cli = median([p.wall for p in res["cli"]])
        self.report.add(
            Row(
                f"`atlas-ci upload` of a {label} .box over http (whole process: registry "
                "calls, PUT, sha256) vs slower of `curl -T` and one-core hashlib",
                f"{cli:.2f} s",
                f"{slower:.2f} s ({which}; curl {curl_t:.2f} s, sha256 {sha_wall:.2f} s)",
                f"{cli / slower:.2f}x",
                "<= 1.1x",
                verdict(cli / slower <= 1.1),
                "the API answered by bench/sink.py, upload_path on the same sink curl "
                "uses; the .box passes through as is",
            )
        )
        for name, how in (
            ("early", "sha256 started first thing (atlas_ci.digest)"),
            ("hash", "sha256 started by put_file"),
        ):
            ours = median([p.wall for p in res[name]])
            self.report.add(
                Row(
                    f"send + sha256 {label} over http, whole python process, {how}, vs "
                    "slower of `curl -T` and one-core hashlib",
                    f"{ours:.2f} s",
                    f"{slower:.2f} s ({which}; curl {curl_t:.2f} s, sha256 {sha_wall:.2f} s)",
                    f"{ours / slower:.2f}x",
                    "<= 1.1x",
                    verdict(ours / slower <= 1.1),
                    "imports (requests) included; the `atlas-ci upload` row below adds the "
                    "registry calls" + (_hash_contention(res) if name == "early" else ""),
                )
            )
        self.rss[f"`atlas-ci upload`, {label}"] = max(p.maxrss_kib for p in res["cli"])
        self.rss[f"put_file + sha256, {label}"] = max(p.maxrss_kib for p in res["hash"])
        self.rss[f"put_file, no hash, {label}"] = max(p.maxrss_kib for p in res["nohash"])
        self.rss[f"curl -T, {label}"] = max(p.maxrss_kib for p in res["curl"])

    def tls_send(self, path: Path, label: str) -> None:
        size = path.stat().st_size
        url = f"https://127.0.0.1:{self.nginx.https_port}/upload/{path.name}?X-Sig=bench"

        def with_nginx_cpu(run: Callable[[], Proc]) -> Callable[[], Proc]:
            def go() -> Proc:
                before = self.nginx.cpu()
                proc = run()
                proc.server_cpu = self.nginx.cpu() - before
                return proc

            return go

        contenders = {
            "curl": with_nginx_cpu(self.curl(url, path)),
            "nohash": with_nginx_cpu(self.put(url, path, "nohash")),
            "hash": with_nginx_cpu(self.put(url, path, "hash")),
        }
        res = alternate(contenders, self.runs)

        def cpu_share(name: str) -> str:
            runs = res[name]
            own = median([p.cpu for p in runs])
            server = median([p.server_cpu for p in runs])
            wall = median([p.wall for p in runs])
            return (
                f"{own:.2f} s + nginx {server:.2f} s of CPU in {wall:.2f} s "
                f"({(own + server) / (2 * wall):.0%} of two cores)"
            )

        curl_t = median([p.wall for p in res["curl"]])
        for name, what in (("nohash", "hash off"), ("hash", "sha256 on")):
            ours = median([p.inner for p in res[name]])
            whole = median([p.wall for p in res[name]])
            note = (
                f"time inside put_file; the whole python process: {rate(size, whole)} "
                f"({curl_t / whole:.2f}x); nginx decrypts on the same two cores"
            )
            if name == "hash":
                note += "; the hash is a third CPU-bound job on two cores"
            note += f". CPU, median per run: ours {cpu_share(name)}; curl {cpu_share('curl')}"
            self.report.add(
                Row(
                    f"send {label} over TLS, {what} (library) vs `curl -T`",
                    rate(size, ours),
                    rate(size, curl_t),
                    f"{curl_t / ours:.2f}x",
                    ">= 1x",
                    verdict(curl_t / ours >= 1),
                    note,
                )
            )

    def archive(self, directory: Path, names: list[str]) -> None:
        total = sum((directory / n).stat().st_size for n in names)
        ours_out = self.work / "ours.tar.gz"
        tar_out = self.work / "tar.tar.gz"

        def ours() -> Proc:
            ours_out.unlink(missing_ok=True)
            return run_proc(
                [sys.executable, str(CHILD), "archive", str(ours_out), str(directory), *names]
            )

        def tar() -> Proc:
            tar_out.unlink(missing_ok=True)
            return run_proc([self.tools["tar"], "czf", str(tar_out), *names], cwd=directory)

        res = alternate({"tar czf": tar, "pgzip": ours}, self.runs)
        # The output must be one gzip stream that gzip and tar read back, entries in order.
        subprocess.run([self.tools["gzip"], "-t", str(ours_out)], check=True)
        listed = subprocess.run(
            [self.tools["tar"], "tzf", str(ours_out)], check=True, capture_output=True, text=True
        ).stdout.split()
        if listed != names:
            raise SystemExit(f"the archive lists {listed}, not {names}")
        tar_t = median([p.wall for p in res["tar czf"]])
        ours_t = median([p.wall for p in res["pgzip"]])
        ours_size = ours_out.stat().st_size
        gzip_size = tar_out.stat().st_size  # tar czf runs gzip at its default level, 6
        self.report.add(
            Row(
                f"archive {len(names)} x {total // len(names) // MIB} MiB (whole process) "
                "vs `tar czf`",
                f"{total / ours_t / MIB:.0f} MiB/s",
                f"{total / tar_t / MIB:.0f} MiB/s",
                f"{tar_t / ours_t:.2f}x",
                ">= 1.8x",
                verdict(tar_t / ours_t >= 1.8),
                "tarfile + ParallelGzipWriter level 6, 1 MiB blocks, on all cores",
            )
        )
        self.report.add(
            Row(
                "archive size vs gzip -6 (`tar czf`)",
                f"{ours_size / MIB:.1f} MiB",
                f"{gzip_size / MIB:.1f} MiB",
                f"{ours_size / gzip_size:.4f}",
                "<= 1.02",
                verdict(ours_size / gzip_size <= 1.02),
                "checked with `gzip -t` and `tar tzf` (names and order)",
            )
        )
        ours_out.unlink(missing_ok=True)
        tar_out.unlink(missing_ok=True)

    def cli_upload(self, base: str, path: Path) -> Callable[[], Proc]:
        spec = self.work / f"artifact-{path.stem}.json"
        spec.write_text(json.dumps({"id": "virtualbox", "files": [str(path)]}))
        base = base.split("/upload/")[0]
        argv = ["env", "ATLAS_TOKEN=bench", sys.executable, "-m", "atlas_ci", "upload"]
        argv += ["--artifact", "bench/box", "--atlas-url", base, "--artifact-json", str(spec)]
        argv += ["--artifact-type", "vagrant.box", "--metadata", "provider=virtualbox", "--json"]
        return lambda: run_proc(argv, cwd=self.work)

    def registry_ingest(self, path: Path, label: str) -> None:
        """`atlas-ci serve` taking a PUT vs nginx writing the same body to disk (both curl)."""
        size = path.stat().st_size
        data = self.work / "registry"
        token = "bench-token"
        server = subprocess.Popen(
            [
                *(sys.executable, "-m", "atlas_ci", "serve", "--port", "0"),
                *("--data", str(data), f"--token={token}"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=_child_env(),
        )
        try:
            assert server.stdout is not None
            base = server.stdout.readline().strip()
            if not base.startswith("http://"):
                raise SystemExit("atlas-ci serve did not start")
            api = _Api(base, token)
            api.post("/api/v1/artifacts", {"artifact": {"username": "bench", "name": "box"}})

            def registry() -> Proc:
                version = api.post(
                    "/api/v1/artifacts/bench/box/vagrant.box",
                    {
                        "artifact_version": {
                            "build_id": 0,
                            "compile_id": 0,
                            "file": True,
                            "id": "virtualbox",
                            "metadata": {"provider": "virtualbox"},
                        }
                    },
                )
                proc = self.curl(str(version["upload_path"]), path, ok=(200, 201, 204))()
                for blob in (data / "files").iterdir():  # keep the disk and page cache calm
                    blob.unlink()
                os.sync()  # the unlink's journal commit (and discard) before the next run
                return proc

            dav_url = f"http://127.0.0.1:{self.nginx.http_port}/dav/{path.name}"
            dav_file = self.nginx.www / "dav" / path.name

            def nginx() -> Proc:
                proc = self.curl(dav_url, path, ok=(201, 204))()
                dav_file.unlink()
                os.sync()
                return proc

            floor_file = self.work / "dd-floor.out"
            dd = [self.tools["dd"], f"if={path}", f"of={floor_file}", "bs=4M", "conv=fdatasync"]

            def disk() -> Proc:
                proc = run_proc([*dd, "status=none"])
                if floor_file.stat().st_size != size:
                    raise SystemExit("dd did not write the whole file")
                floor_file.unlink()
                os.sync()
                return proc

            pipeline = [sys.executable, str(CHILD), "ingest-from-memory", str(floor_file)]
            pipeline.append(str(size))

            def memory() -> Proc:
                proc = run_proc(pipeline)
                if proc.result.get("size") != size:
                    raise SystemExit(f"ingest-from-memory wrote {proc.result}")
                floor_file.unlink()
                os.sync()
                return proc

            res = alternate(
                {"nginx": nginx, "registry": registry, "dd": disk, "memory": memory}, self.runs
            )
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(30)
        ngx = median([p.wall for p in res["nginx"]])
        reg = median([p.wall for p in res["registry"]])
        floor = median([p.wall for p in res["dd"]])
        piped = median([p.wall for p in res["memory"]])

        def spread(name: str) -> str:
            walls = sorted(p.wall for p in res[name])
            return f"{walls[0]:.2f}-{walls[-1]:.2f} s"

        self.report.add(
            Row(
                f"`atlas-ci serve` ingesting a {label} PUT vs nginx writing it to disk "
                "(both sent by `curl -T`)",
                rate(size, reg),
                rate(size, ngx),
                f"{ngx / reg:.2f}x",
                ">= 0.5x",
                verdict(ngx / reg >= 0.5),
                "the registry also hashes the body and makes it durable (fdatasync as it "
                "arrives, fsync of the blob and its directory before answering); nginx (WebDAV "
                "PUT) leaves it in the page cache. The disk's own floor for that durability, "
                f"`dd bs=4M conv=fdatasync` of the same file from the page cache: "
                f"{rate(size, floor)}, so the registry runs at {floor / reg:.2f}x of it. "
                "The registry's own pipeline fed from memory (no HTTP: `child.py "
                f"ingest-from-memory`, whole process): {rate(size, piped)}, the registry at "
                f"{piped / reg:.2f}x of that. Runs: registry {spread('registry')}, nginx "
                f"{spread('nginx')}, dd {spread('dd')}, from memory {spread('memory')}",
            )
        )

    def startup(self) -> None:
        runs = max(15, self.runs * 3)
        res = alternate(
            {
                "pass": lambda: run_proc(["sh", "-c", f"{sys.executable} -c pass >/dev/null"]),
                "help": lambda: _run_help(),
            },
            runs,
        )
        base = median([p.wall for p in res["pass"]])
        ours = median([p.wall for p in res["help"]])
        self.report.add(
            Row(
                "start-up: `python -m atlas_ci upload --help` vs `python -c pass`",
                f"{ours * 1000:.0f} ms",
                f"{base * 1000:.0f} ms",
                f"{(ours - base) * 1000:+.0f} ms",
                "<= +100 ms",
                verdict(ours - base <= 0.1),
                f"{runs} runs each; measures whatever the CLI on this checkout does for --help",
            )
        )

    def rss_rows(self) -> None:
        for label, kib in self.rss.items():
            if label.startswith("curl"):
                continue
            mib = kib / 1024
            self.report.add(
                Row(f"peak RSS, {label}", f"{mib:.1f} MiB", "", "", "<= 40 MiB", verdict(mib <= 40))
            )
        curl = ", ".join(
            f"{k.split(', ')[1]}: {v / 1024:.1f} MiB"
            for k, v in self.rss.items()
            if k.startswith("curl")
        )
        if curl:
            self.report.rows[-1].note = f"curl -T for comparison: {curl}"

    def pending(self) -> None:
        for what, target, needs in PENDING:
            self.report.add(Row(what, "pending", "", "", target, "pending", needs))


class _Api:
    """Just enough of an Atlas client to get upload_paths from `atlas-ci serve`."""

    def __init__(self, base: str, token: str) -> None:
        self.base = base
        self.token = token

    def post(self, path: str, body: dict[str, object]) -> dict[str, object]:
        import urllib.error
        import urllib.request

        request = urllib.request.Request(
            self.base + path,
            data=json.dumps(body).encode(),
            headers={"X-Atlas-Token": self.token, "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                answer: dict[str, object] = json.loads(resp.read())
                return answer
        except urllib.error.HTTPError as e:
            raise SystemExit(f"POST {path}: {e.code} {e.read()[:200]!r}") from None


def _hash_contention(res: dict[str, list[Proc]]) -> str:
    """How much longer the hash thread ran while the file was being sent than alone."""
    during = [p.result.get("hash_seconds") for p in res["early"]]
    alone = median([p.inner for p in res["sha256"]])
    if not all(isinstance(s, (int, float)) for s in during):
        return "; imports overlap the hash"
    hashed = median([float(s) for s in during if isinstance(s, (int, float))])
    return (
        f"; imports overlap the hash. The hash thread took {hashed:.2f} s while the send "
        f"ran, {alone:.2f} s alone (time inside hashlib of the sha256 process)"
    )


def _run_help() -> Proc:
    # Timed through `sh -c '... || true'` so a placeholder CLI that exits 1 still counts;
    # `python -c pass` goes through the same sh below.
    return run_proc(["sh", "-c", f"{sys.executable} -m atlas_ci upload --help >/dev/null || true"])


# Rows whose contenders are not on this branch yet: (what, target, what it needs). Add a
# Bench method and drop the entry when they land.
PENDING: list[tuple[str, str, str]] = []

# What --only can pick: `send` is both plain-http rows (and the RSS it records), `rss` the
# peak-RSS rows (it runs the sends too).
ROWS = ("send", "tls", "rss", "archive", "ingest", "startup")


# -- main -----------------------------------------------------------------------------


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def machine() -> str:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB
    versions = []
    for cmd in (["curl", "--version"], ["nginx", "-v"], ["openssl", "version"]):
        tool = find_tool(cmd[0])
        if tool:
            out = subprocess.run([tool, *cmd[1:]], capture_output=True, text=True, check=False)
            versions.append((out.stdout or out.stderr).splitlines()[0].strip())
    return (
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}\n"
        f"- uname: `{' '.join(platform.uname())}`\n"
        f"- CPU: {cpu}, {cores} cores usable, {mem:.0f} GiB RAM\n"
        f"- Python {platform.python_version()} ({sys.executable})\n"
        + "".join(f"- {v}\n" for v in versions)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5, help="runs per contender (default 5)")
    parser.add_argument(
        "--quick", action="store_true", help="small files: a smoke test, not a measurement"
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=ROWS,
        metavar="ROW",
        help=f"measure only these rows ({', '.join(ROWS)}); the table is printed, and written "
        "only when --out is given",
    )
    parser.add_argument("--out", type=Path, help="default BENCHMARKS.md (a full run only)")
    args = parser.parse_args(argv)
    wanted = set(args.only or ROWS)
    out: Path | None = args.out
    if out is None and not args.only:
        out = ROOT / "BENCHMARKS.md"

    tools = ensure_tools()
    # The image's pip compiles the package's bytecode once; with PYTHONDONTWRITEBYTECODE set
    # (as on these machines) a checkout would otherwise recompile it in every timed run.
    compileall.compile_dir(str(ROOT / "atlas_ci"), quiet=1)
    load_before = _loadavg()
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="atlas-bench-"))
    nginx: Nginx | None = None
    sink: Sink | None = None
    try:
        sizes = [("64 MiB", 64 * MIB)] if args.quick else [("1 GiB", GIB), ("4 GiB", 4 * GIB)]
        if not wanted & {"send", "rss"}:
            sizes = sizes[:1]  # the other rows use the first file only
        text = (4, 16 * MIB) if args.quick else (4, 256 * MIB)
        print(f"making test files in {work}")
        boxes = []
        for label, size in sizes:
            box = work / f"{label.replace(' ', '')}.box"
            make_box(box, size)
            boxes.append((label, box))
        files = work / "multi"
        files.mkdir()
        names = make_text_files(files, *text) if "archive" in wanted else []
        os.sync()  # no writeback of the test files during the measurements
        nginx = Nginx(tools["nginx"], tools["openssl"], work / "nginx")
        sink = Sink(work)
        report = Report()
        bench = Bench(tools, nginx, sink, work, args.runs, report)
        if wanted & {"send", "rss"}:
            for label, box in boxes:
                print(f"send {label} over http")
                bench.plain_send(box, label)
        if "tls" in wanted:
            print(f"send {boxes[0][0]} over TLS")
            bench.tls_send(boxes[0][1], boxes[0][0])
        if "rss" in wanted:
            bench.rss_rows()
        if "archive" in wanted:
            print("archive")
            bench.archive(files, names)
        if "ingest" in wanted:
            print(f"registry ingest, {boxes[0][0]}")
            bench.registry_ingest(boxes[0][1], boxes[0][0])
        if "startup" in wanted:
            print("start-up")
            bench.startup()
        bench.pending()
    finally:
        if nginx is not None:
            nginx.stop()
        if sink is not None:
            sink.stop()
        shutil.rmtree(work, ignore_errors=True)

    elapsed = time.monotonic() - started
    text_out = (
        "# Benchmarks\n\n"
        f"Made by `python3 bench/run.py{' --quick' if args.quick else ''} --runs {args.runs}"
        f"{' --only ' + ' '.join(args.only) if args.only else ''}` "
        f"in {elapsed / 60:.1f} min (see bench/README.md). Medians of {args.runs} runs per "
        "contender, contenders alternated; ratios > 1 mean ours is faster, except where the "
        "target says otherwise. Sinks on 127.0.0.1: plain http, bench/sink.py "
        "(reads each whole body in 4 MiB copies, logs its size, then answers 201; checked "
        "after every run); TLS, nginx (`return 201`, body read and discarded; curl's "
        "`size_upload` and put_file's sent count checked every run). Files come from the "
        "page cache.\n\n"
        "## Machine\n\n"
        + machine()
        + f"- load average (1/5/15 min) before: {load_before}, after: {_loadavg()}\n"
        + "\n## Results\n\n"
        + report.markdown()
    )
    if args.quick:
        text_out = text_out.replace(
            "# Benchmarks", "# Benchmarks (quick smoke run: not a measurement)"
        )
    print()
    print(text_out)
    if out is not None:
        write_between_markers(out, text_out)
        print(f"written to {out}")
    return 0


START = "<!-- bench/run.py: start -->\n"
END = "<!-- bench/run.py: end -->\n"


def write_between_markers(out: Path, text: str) -> None:
    """Replace this script's part of ``out``; the sections other scripts or people wrote
    around it (the registry's rows, how the upload is built) are kept."""
    old = out.read_text() if out.exists() else ""
    if START in old and END in old:
        before, rest = old.split(START, 1)
        after = rest.split(END, 1)[1]
    else:
        before, after = "", ""
    out.write_text(before + START + text.rstrip("\n") + "\n" + END + after)


if __name__ == "__main__":
    sys.exit(main())
