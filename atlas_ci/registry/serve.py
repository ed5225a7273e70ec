"""``atlas-ci serve``: run the embedded registry until SIGTERM or SIGINT.

The first line on stdout is the URL the server listens on; everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import re
import secrets
import signal
import socket
import sys
import threading
import time
import types
from collections.abc import Mapping
from pathlib import Path

from atlas_ci.errors import ExitCode
from atlas_ci.registry.database import DatabaseConfigError, DatabaseError, open_database
from atlas_ci.registry.model import StorageError
from atlas_ci.registry.schema import SchemaError
from atlas_ci.registry.server import Config, RegistryServer
from atlas_ci.registry.storage import Storage

log = logging.getLogger("atlas_ci.registry")

_TOKEN = re.compile(r"[\x21-\x7e]+")  # what fits an HTTP header value unchanged


class UsageError(Exception):
    """A flag or environment variable is unusable (also: the data directory, database or
    address it names cannot be used); the message says which and why."""


def data_dir(flag: Path | None, env: Mapping[str, str]) -> Path:
    """The data directory of ``serve`` and ``registry``: ``--data``, else
    ``$ATLAS_REGISTRY_DATA``, else ``$XDG_DATA_HOME/atlas-ci/registry`` (XDG's fallback
    ``~/.local/share``)."""
    if flag:
        return flag
    if env.get("ATLAS_REGISTRY_DATA"):
        return Path(env["ATLAS_REGISTRY_DATA"])
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "atlas-ci" / "registry"


def _parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="atlas-ci serve",
        description="Run an Atlas-compatible artifact registry (plain HTTP). Prints its URL "
        "as the first line on stdout and serves until SIGTERM or SIGINT.",
    )
    _place_flags(parser, env)
    _client_flags(parser, env)
    _limit_flags(parser, env)
    return parser


def _place_flags(parser: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    """Where it listens and where it keeps its data."""
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
        "--database",
        default=env.get("ATLAS_REGISTRY_DATABASE") or None,
        metavar="URL",
        help="where artifacts and versions are kept: sqlite:///PATH or "
        "postgresql://USER@HOST:PORT/DB (password from the URL or PGPASSWORD; needs "
        "atlas-ci[postgres]) (env ATLAS_REGISTRY_DATABASE; default: registry.sqlite3 in "
        "--data). A SQLite schema is created or upgraded on start; a PostgreSQL one by "
        "'atlas-ci registry migrate'",
    )


def _client_flags(parser: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    """What clients need: the tokens they send, the URL they are handed."""
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


def _limit_flags(parser: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    """How long and how many: connection timeouts and limits, shutdown."""
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


@dataclasses.dataclass(frozen=True)
class _Settings:
    """What ``serve`` runs with, from its flags and environment, checked."""

    host: str
    port: int
    data: Path
    database: str | None
    config: Config = dataclasses.field(repr=False)  # it holds the tokens
    generated_token: bool
    """No token was configured: ``config.tokens`` is one made for this run."""
    shutdown_grace: float


def _settings(args: argparse.Namespace, env: Mapping[str, str]) -> _Settings:
    """The flags and environment, checked; :class:`UsageError` names the first unusable one."""
    port = _port(args.port)
    tokens = _tokens(args.token, env)
    public_url = _public_url(args.public_url)
    if args.timeout <= 0 or args.shutdown_grace < 0:
        raise UsageError("--timeout must be positive and --shutdown-grace not negative")
    max_connections = _max_connections(args.max_connections)
    header_timeout = _seconds("--header-timeout", args.header_timeout)
    return _Settings(
        host=args.host,
        port=port,
        data=data_dir(args.data, env),
        database=args.database,
        config=Config(
            tokens=tuple(tokens or [secrets.token_urlsafe(32)]),
            public_url=public_url,
            timeout=args.timeout,
            header_timeout=header_timeout,
            max_connections=max_connections,
        ),
        generated_token=not tokens,
        shutdown_grace=args.shutdown_grace,
    )


def _open(settings: _Settings) -> tuple[Storage, RegistryServer]:
    """The storage and the listening server; :class:`UsageError` says why not, and leaves
    nothing open."""
    try:
        database = open_database(settings.database, settings.data)
    except DatabaseConfigError as exc:
        raise UsageError(str(exc)) from None
    try:
        storage = Storage(settings.data, database)
    except (DatabaseError, SchemaError) as exc:
        raise UsageError(database.url.scrub(str(exc))) from None
    except (OSError, StorageError) as exc:
        raise UsageError(f"cannot use data directory {settings.data}: {exc}") from None
    address = (settings.host, settings.port)
    try:
        return storage, RegistryServer(address, storage, settings.config)
    except OSError as exc:
        storage.close()
        raise UsageError(
            f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}"
        ) from None


class _StopSignals:
    """SIGTERM and SIGINT wake :meth:`wait`; a second one, once stopping, exits at once.

    The C-level signal handler writes the signal number to the wake socket; the main thread
    sleeps in its recv. No lock is taken in a handler (threading.Event.set could deadlock).
    The previous handlers are back on leaving the ``with``.
    """

    def __enter__(self) -> _StopSignals:
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_w.setblocking(False)
        self._stopping = False
        self._previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        self._previous_wakeup = signal.set_wakeup_fd(
            self._wake_w.fileno(), warn_on_full_buffer=False
        )
        return self

    def _on_signal(self, signum: int, frame: types.FrameType | None) -> None:
        if self._stopping:
            os._exit(128 + signum)  # a second signal: stop waiting for anyone

    def wait(self) -> None:
        self._wake_r.recv(1)
        self._stopping = True

    def __exit__(self, *exc_info: object) -> None:
        signal.set_wakeup_fd(self._previous_wakeup)
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._wake_r.close()
        self._wake_w.close()


def _start(server: RegistryServer, storage: Storage, settings: _Settings) -> threading.Thread:
    """Accept connections on a thread; print the URL (stdout's first line) and log the start."""
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="accept"
    )
    thread.start()
    print(server.url, flush=True)
    log.info(
        "atlas-ci registry listening on %s, data in %s, database %s",
        server.url,
        settings.data.resolve(),
        storage.db.url,
    )
    if settings.generated_token:
        # The one place a token is ever printed: nobody else knows it.
        token = settings.config.tokens[0]
        log.info(
            "no token configured (--token, ATLAS_REGISTRY_TOKENS); generated one for this "
            "run: %s -- clients pass it as ATLAS_TOKEN=%s",
            token,
            token,
        )
    if settings.host not in ("127.0.0.1", "::1", "localhost"):
        log.info("warning: plain HTTP on %s; put TLS in front of it off this host", settings.host)
    return thread


def _drain(
    server: RegistryServer, thread: threading.Thread, storage: Storage, grace: float
) -> None:
    """Take no new connections, let those in flight finish for up to ``grace`` seconds;
    storage is closed only when none is left using it."""
    log.info("stopping: no new connections; waiting up to %gs", grace)
    server.shutdown()
    thread.join()
    server.server_close()
    still_open = server.drain(grace)
    if still_open:
        log.info("stopped with %d connection(s) still open", still_open)
    else:
        storage.close()
        log.info("stopped")


def main(argv: list[str], env: Mapping[str, str] | None = None) -> int:
    """Parse ``argv``, serve until a stop signal, return the exit code."""
    env = os.environ if env is None else env
    args = _parser(env).parse_args(argv)
    try:
        settings = _settings(args, env)
        _configure_logging()
        storage, server = _open(settings)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.CONFIG
    with _StopSignals() as signals:
        thread = _start(server, storage, settings)
        signals.wait()
        _drain(server, thread, storage, settings.shutdown_grace)
    return ExitCode.OK
