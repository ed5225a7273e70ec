"""Run ``atlas-ci serve`` as a real subprocess for tests: ``with RegistryProcess(dir) as reg``.

Importable helper, not a plugin: ``from tests.registry_proc import RegistryProcess``. The
``registry`` fixture in ``tests/conftest.py`` hands out a started one on a temp data dir.
"""

from __future__ import annotations

import os
import queue
import secrets
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

REPO_ROOT = Path(__file__).resolve().parents[1]
STARTUP_TIMEOUT = 15.0
STOP_TIMEOUT = 15.0


class RegistryProcess:
    """``python -m atlas_ci serve --port 0 --data DATA --token TOKEN`` on 127.0.0.1.

    ``database``: a ``--database`` URL, passed as ATLAS_REGISTRY_DATABASE (None: SQLite).

    ``url`` is read from the server's first stdout line. Leaving the ``with`` block sends
    SIGTERM, waits (kills after 15 s) and asserts exit code 0 unless the block raised.
    """

    def __init__(
        self,
        data: Path,
        token: str | None = None,
        *,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        database: str | None = None,
    ) -> None:
        self.data = Path(data)
        self.database = database
        self.token = token if token is not None else secrets.token_urlsafe(24)
        self.extra_args = list(extra_args)
        self.env = dict(env or {})
        self.url = ""
        self.process: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None
        self._stderr: list[str] = []
        self._stderr_lock = threading.Lock()
        self._readers: list[threading.Thread] = []

    # -- lifecycle -----------------------------------------------------------------------------

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "atlas_ci",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            f"--data={self.data}",
            # "=" form: a urlsafe token may start with "-" and would read as a flag.
            f"--token={self.token}",
            *self.extra_args,
        ]

    def start(self) -> RegistryProcess:
        """Start the server and wait for its URL; raises with its stderr if it does not come."""
        if self.process is not None:
            raise RuntimeError("already started")
        # Only the tokens a test chose: none inherited from the developer's shell.
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("ATLAS_REGISTRY_TOKENS", "ATLAS_REGISTRY_DATABASE")
        }
        if self.database is not None:
            # In the environment, not argv: a PostgreSQL URL carries a password.
            env["ATLAS_REGISTRY_DATABASE"] = self.database
        env.update(self.env)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
        )
        env["PYTHONUNBUFFERED"] = "1"
        self.returncode = None
        self.process = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        lines: queue.Queue[str | None] = queue.Queue()
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        self._readers = [
            threading.Thread(target=self._read_stdout, args=(self.process.stdout, lines)),
            threading.Thread(target=self._read_stderr, args=(self.process.stderr,)),
        ]
        for reader in self._readers:
            reader.daemon = True
            reader.start()
        try:
            first = lines.get(timeout=STARTUP_TIMEOUT)
        except queue.Empty:
            first = None
        if not first or not first.startswith("http://"):
            self._kill()
            raise RuntimeError(
                f"registry did not print its URL (got {first!r}); stderr:\n{self.stderr_text()}"
            )
        self.url = first.strip()
        return self

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Send ``sig``, wait for the exit (kill after 15 s) and return the exit code."""
        if self.process is None:
            assert self.returncode is not None, "never started"
            return self.returncode
        self.process.send_signal(sig)
        return self.wait()

    def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        """Wait for an exit already under way (e.g. after ``process.send_signal``)."""
        if self.process is None:
            assert self.returncode is not None, "never started"
            return self.returncode
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._kill()
            raise AssertionError(
                f"registry still running after {timeout}s; stderr:\n" + self.stderr_text()
            ) from None
        return self._reap()

    def restart(self) -> None:
        """Stop (asserting exit 0) and start again on the same data; ``url`` changes."""
        code = self.stop()
        assert code == 0, f"registry exited {code}; stderr:\n{self.stderr_text()}"
        self.start()

    def _kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self._reap()

    def _reap(self) -> int:
        assert self.process is not None
        for reader in self._readers:
            reader.join(timeout=5)
        self.returncode = self.process.returncode
        self.process = None
        return self.returncode

    def __enter__(self) -> RegistryProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.process is None:
            return
        if exc_type is not None:
            self._kill()
            return
        code = self.stop()
        assert code == 0, f"registry exited {code}; stderr:\n{self.stderr_text()}"

    # -- output --------------------------------------------------------------------------------

    @property
    def headers(self) -> dict[str, str]:
        """The token header every API call needs."""
        return {"X-Atlas-Token": self.token}

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def stderr_text(self) -> str:
        """Everything the server wrote on stderr so far, across restarts."""
        with self._stderr_lock:
            return "".join(self._stderr)

    @staticmethod
    def _read_stdout(stream: IO[bytes], lines: queue.Queue[str | None]) -> None:
        for raw in stream:
            lines.put(raw.decode("utf-8", "replace"))
        lines.put(None)

    def _read_stderr(self, stream: IO[bytes]) -> None:
        for raw in stream:
            with self._stderr_lock:
                self._stderr.append(raw.decode("utf-8", "replace"))
