"""The exception tree and the exit codes it maps to.

Every error a user can cause or meet derives from :class:`AtlasCIError`; the single
error boundary in :mod:`atlas_ci.cli` prints ``error: <message>; <hint>`` and exits
with the class's code. Messages never carry a secret.
"""

from __future__ import annotations

import enum
import gc
import sys
from typing import NoReturn


class ExitCode(enum.IntEnum):
    """Documented exit codes (README, "Exit codes")."""

    OK = 0
    BUG = 1
    CONFIG = 2
    INPUT = 3
    AUTH = 4
    REFUSED = 5
    UNAVAILABLE = 6
    INTERRUPTED = 130
    TERMINATED = 143


def exit_process(code: int) -> NoReturn:
    """End the process with ``code`` once the work is done (the entry points call this).

    ``gc.freeze()`` first: otherwise the interpreter's last garbage collections walk every
    object the run left behind (requests, ssl, email: ~50 ms here) to free memory the exit
    frees anyway. atexit handlers and the flushing of stdout and stderr still run; the
    ``__del__`` of an object caught in a reference cycle does not, so nothing here may rely
    on one for clean-up (temp files go with ``with`` blocks and atexit).
    """
    gc.freeze()
    sys.exit(code)


class AtlasCIError(Exception):
    """Root of every error the tool reports as one line."""

    exit_code: ExitCode = ExitCode.BUG

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        """``<what went wrong>; <how to fix>`` on a single line."""
        text = f"{self.message}; {self.hint}" if self.hint else self.message
        return " ".join(text.split())


class ConfigError(AtlasCIError):
    """A flag, input or environment variable is missing or malformed."""

    exit_code = ExitCode.CONFIG


class InputFileError(AtlasCIError):
    """The manifest, artifact JSON or an artifact file cannot be used."""

    exit_code = ExitCode.INPUT

    def __init__(self, message: str, hint: str = "", path: str | None = None) -> None:
        super().__init__(message, hint)
        self.path = path


class AuthError(AtlasCIError):
    """The registry rejected the token (401/403)."""

    exit_code = ExitCode.AUTH


class RegistryRefused(AtlasCIError):
    """The registry refused a request (4xx) or answered outside the contract."""

    exit_code = ExitCode.REFUSED


class RegistryUnavailable(AtlasCIError):
    """The registry could not be reached or kept failing (network, timeout, 5xx)."""

    exit_code = ExitCode.UNAVAILABLE


class Interrupted(AtlasCIError):
    """SIGINT or SIGTERM arrived; the message says what state the server was left in."""

    exit_code = ExitCode.INTERRUPTED

    def __init__(self, message: str, hint: str = "", signum: int = 2) -> None:
        super().__init__(message, hint)
        if signum == 15:
            self.exit_code = ExitCode.TERMINATED


class TransportError(RegistryUnavailable):
    """A request got no usable HTTP answer: refused, reset, timed out, TLS failed.

    ``reason`` is the short cause for a retry line (``connection reset``), ``where`` the
    address it happened at (scheme, host, port, path: never an upload URL's path or query).
    ``sent`` says whether the request may have reached the server (a connection was made):
    then a write may have been processed. ``tls`` marks a failed certificate check, which no
    retry mends; ``timeout`` a read timeout or the request's overall deadline.
    """

    def __init__(
        self,
        reason: str,
        where: str,
        *,
        sent: bool,
        tls: bool = False,
        timeout: bool = False,
    ) -> None:
        super().__init__(f"{reason} ({where})")
        self.reason = reason
        self.where = where
        self.sent = sent
        self.tls = tls
        self.timeout = timeout
