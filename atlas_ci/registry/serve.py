"""``atlas-ci serve``: run the embedded registry until SIGTERM or SIGINT.

The first line on stdout is the URL the server listens on; everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import secrets
import signal
import socket
import sqlite3
import sys
import threading
import time
import types
from collections.abc import Mapping
from pathlib import Path

from atlas_ci.errors import ExitCode
from atlas_ci.registry.server import Config, RegistryServer
from atlas_ci.registry.storage import Storage, StorageError

log = logging.getLogger("atlas_ci.registry")

_TOKEN = re.compile(r"[\x21-\x7e]+")  # what fits an HTTP header value unchanged


class UsageError(Exception):
    """A flag or environment variable is unusable; the message says which and why."""


def default_data_dir(env: Mapping[str, str]) -> Path:
    """``$XDG_DATA_HOME/atlas-ci/registry``, with XDG's fallback ``~/.local/share``."""
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "atlas-ci" / "registry"


def _parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="atlas-ci serve",
        description="Run an Atlas-compatible artifact registry (plain HTTP). Prints its URL "
        "as the first line on stdout and serves until SIGTERM or SIGINT.",
    )
    parser.add_argument(
        "--host",
        default=env.get("ATLAS_REGISTRY_HOST", "127.0.0.1"),
        help="address to listen on (env ATLAS_REGISTRY_HOST; default 127.0.0.1)",
    )
    parser.add_argument(
        "--port",
        default=env.get("ATLAS_REGISTRY_PORT", "0"),
        help="TCP port; 0 picks a free one (env ATLAS_REGISTRY_PORT; default 0)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="directory for the database and uploaded files (env ATLAS_REGISTRY_DATA; "
        "default $XDG_DATA_HOME/atlas-ci/registry)",
    )
    parser.add_argument(
        "--token",
        action="append",
        default=[],
        help="accepted X-Atlas-Token; repeat for several. Also read from "
        "ATLAS_REGISTRY_TOKENS (comma-separated). None at all: one is generated and printed",
    )
    parser.add_argument(
        "--public-url",
        default=env.get("ATLAS_REGISTRY_PUBLIC_URL"),
        help="base of the upload_path handed to clients, e.g. http://registry.internal:8080 "
        "(env ATLAS_REGISTRY_PUBLIC_URL; default: the host the client addressed)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds a connection may stay silent (idle keep-alive, stalled upload); default 60",
    )
    parser.add_argument(
        "--max-connections",
        default=env.get("ATLAS_REGISTRY_MAX_CONNECTIONS", "128"),
        help="connections served at once; one more is answered 503 with Retry-After and "
        "closed (env ATLAS_REGISTRY_MAX_CONNECTIONS; default 128)",
    )
    parser.add_argument(
        "--header-timeout",
        default=env.get("ATLAS_REGISTRY_HEADER_TIMEOUT", "10"),
        help="seconds a client has to send a request's line and headers, from its first byte "
        "(from the connection on a new one); slower ones are dropped "
        "(env ATLAS_REGISTRY_HEADER_TIMEOUT; default 10)",
    )
    parser.add_argument(
        "--shutdown-grace",
        type=float,
        default=10.0,
        help="seconds to let requests in flight finish after SIGTERM/SIGINT; default 10",
    )
    return parser


def _port(raw: str) -> int:
    if not re.fullmatch(r"[0-9]{1,5}", raw.strip()) or int(raw) > 65535:
        raise UsageError(f"--port must be a number from 0 to 65535, not {raw!r}")
    return int(raw)


def _max_connections(raw: str) -> int:
    if not re.fullmatch(r"[0-9]{1,6}", raw.strip()) or int(raw) < 1:
        raise UsageError(f"--max-connections must be a whole number from 1, not {raw!r}")
    return int(raw)


def _seconds(flag: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 86400:  # NaN fails this too
        raise UsageError(f"{flag} must be a number of seconds above 0, not {raw!r}")
    return value


def _tokens(flags: list[str], env: Mapping[str, str]) -> list[str]:
    tokens = [t.strip() for t in flags] + [
        t.strip() for t in env.get("ATLAS_REGISTRY_TOKENS", "").split(",")
    ]
    tokens = [t for t in tokens if t]
    for token in tokens:
        if not _TOKEN.fullmatch(token):
            # Say where, never what: the value is a secret.
            raise UsageError(
                "a token (from --token or ATLAS_REGISTRY_TOKENS) has characters other than "
                "printable ASCII without spaces; it could not be sent as an HTTP header"
            )
    return list(dict.fromkeys(tokens))


def _public_url(raw: str | None) -> str | None:
    if not raw:
        return None
    if not re.fullmatch(r"https?://[^/\s?#]+(/[^\s?#]*)?", raw):
        raise UsageError(
            f"--public-url must look like http://host:port or https://host/prefix, not {raw!r}"
        )
    return raw.rstrip("/")


def _configure_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    formatter = logging.Formatter("%(asctime)s.%(msecs)03dZ %(message)s", "%Y-%m-%dT%H:%M:%S")
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False


def main(argv: list[str], env: Mapping[str, str] | None = None) -> int:
    """Parse ``argv``, serve until a stop signal, return the exit code."""
    env = os.environ if env is None else env
    args = _parser(env).parse_args(argv)
    try:
        port = _port(args.port)
        tokens = _tokens(args.token, env)
        public_url = _public_url(args.public_url)
        if args.timeout <= 0 or args.shutdown_grace < 0:
            raise UsageError("--timeout must be positive and --shutdown-grace not negative")
        max_connections = _max_connections(args.max_connections)
        header_timeout = _seconds("--header-timeout", args.header_timeout)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.CONFIG
    data = args.data or (
        Path(env["ATLAS_REGISTRY_DATA"]) if env.get("ATLAS_REGISTRY_DATA") else None
    )
    data = data or default_data_dir(env)
    _configure_logging()

    generated = not tokens
    if generated:
        tokens = [secrets.token_urlsafe(32)]
    try:
        storage = Storage(data)
    except (OSError, sqlite3.Error, StorageError) as exc:
        print(f"error: cannot use data directory {data}: {exc}", file=sys.stderr)
        return ExitCode.CONFIG
    try:
        server = RegistryServer(
            (args.host, port),
            storage,
            Config(
                tokens=tuple(tokens),
                public_url=public_url,
                timeout=args.timeout,
                header_timeout=header_timeout,
                max_connections=max_connections,
            ),
        )
    except OSError as exc:
        storage.close()
        print(f"error: cannot listen on {args.host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return ExitCode.CONFIG

    # The C-level signal handler writes the signal number to wake_w; the main thread sleeps
    # in wake_r.recv. No lock is taken in a handler (threading.Event.set could deadlock).
    wake_r, wake_w = socket.socketpair()
    wake_w.setblocking(False)
    stopping = False

    def on_signal(signum: int, frame: types.FrameType | None) -> None:
        if stopping:
            os._exit(128 + signum)  # a second signal: stop waiting for anyone

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    previous_wakeup = signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
    try:
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="accept"
        )
        thread.start()
        print(server.url, flush=True)
        log.info("atlas-ci registry listening on %s, data in %s", server.url, data.resolve())
        if generated:
            # The one place a token is ever printed: nobody else knows it.
            log.info(
                "no token configured (--token, ATLAS_REGISTRY_TOKENS); generated one for this "
                "run: %s -- clients pass it as ATLAS_TOKEN=%s",
                tokens[0],
                tokens[0],
            )
        if args.host not in ("127.0.0.1", "::1", "localhost"):
            log.info("warning: plain HTTP on %s; put TLS in front of it off this host", args.host)
        wake_r.recv(1)
        stopping = True
        log.info("stopping: no new connections; waiting up to %gs", args.shutdown_grace)
        server.shutdown()
        thread.join()
        server.server_close()
        still_open = server.drain(args.shutdown_grace)
        if still_open:
            log.info("stopped with %d connection(s) still open", still_open)
        else:
            storage.close()
            log.info("stopped")
        return ExitCode.OK
    finally:
        signal.set_wakeup_fd(previous_wakeup)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        wake_r.close()
        wake_w.close()
