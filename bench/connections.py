"""Threads of a real ``atlas-ci serve`` holding many idle connections (Linux, ``/proc``).

    python3 bench/connections.py                      # 2,000 idle connections, default limit
    python3 bench/connections.py --connections 500 --max-connections 10

Starts ``atlas-ci serve`` on a fresh temporary data directory and a free port of 127.0.0.1,
opens ``--connections`` TCP connections to it that send nothing, waits ``--settle`` seconds
(the server gets ``--header-timeout 120``, so none is dropped for being slow), then reads
``Threads:`` from ``/proc/PID/status`` and counts the connections the server answered 503 and
closed. Prints one line; asserts nothing. The server is stopped and the connections closed at
the end, even on failure. To compare with a checkout older than the limits, copy this file
into its ``bench/`` and run it there with ``--header-timeout 0``.
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise RuntimeError(f"no Threads: line in /proc/{pid}/status")


def refused(conns: list[socket.socket]) -> int:
    """Connections the server has answered 503 (and closed): readable with a 503 status."""
    count = 0
    poller = select.poll()  # not select(): that stops at FD_SETSIZE descriptors
    by_fd = {c.fileno(): c for c in conns}
    for fd in by_fd:
        poller.register(fd, select.POLLIN)
    readable = [by_fd[fd] for fd, _ in poller.poll(0)]
    for conn in readable:
        conn.settimeout(1)
        try:
            if conn.recv(12).startswith(b"HTTP/1.1 503"):
                count += 1
        except OSError:
            pass
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--max-connections", type=int, default=None, help="default: serve's")
    parser.add_argument("--settle", type=float, default=5.0)
    parser.add_argument(
        "--header-timeout",
        type=float,
        default=120.0,
        help="passed to serve, longer than the run so no idle connection is dropped; "
        "0: not passed (a checkout older than the flag)",
    )
    args = parser.parse_args(argv)
    limit = [] if args.max_connections is None else [f"--max-connections={args.max_connections}"]
    if args.header_timeout:
        limit.append(f"--header-timeout={args.header_timeout}")
    with tempfile.TemporaryDirectory(prefix="atlas-connections-") as tmp:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.pop("ATLAS_REGISTRY_TOKENS", None)
        server = subprocess.Popen(
            [
                *(sys.executable, "-m", "atlas_ci", "serve", "--port", "0"),
                *(f"--data={tmp}/data", "--token=bench-connections-token", *limit),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=ROOT,  # -m looks in the working directory first: this checkout's package
        )
        conns: list[socket.socket] = []
        try:
            assert server.stdout is not None
            url = server.stdout.readline().decode().strip()
            port = int(url.rsplit(":", 1)[1].strip("/"))
            before = threads(server.pid)
            for _ in range(args.connections):
                conns.append(socket.create_connection(("127.0.0.1", port), timeout=10))
            time.sleep(args.settle)
            during = threads(server.pid)
            answered_503 = refused(conns)
        finally:
            for conn in conns:
                conn.close()
            server.terminate()
            server.wait(timeout=30)
    print(
        f"{args.connections} idle connections, --max-connections "
        f"{args.max_connections or 'default'}: {during} threads "
        f"({before} before connecting), {answered_503} answered 503"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
