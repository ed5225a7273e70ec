"""The exception tree and the exit statuses it maps to.

Every error a user can cause or meet derives from :class:`AtlasCIError`; the one error
boundary (:mod:`atlas_ci.boundary`, serving the CLI and the action) reports it as one line,
``<message>; <hint>``, and exits with the class's status. Messages never carry a secret.
"""

from __future__ import annotations

import enum
import gc
import sys
from typing import NoReturn


class ExitStatus(enum.IntEnum):
    """The documented exit codes: each one's meaning (``--help``, the README's table) and the
    title of the action's annotation are defined here and derived everywhere else."""

    meaning: str
    title: str

    def __new__(cls, code: int, meaning: str, title: str) -> ExitStatus:
        member = int.__new__(cls, code)
        member._value_ = code
        member.meaning = meaning
        member.title = title
        return member

    # In the order the tables list them; members with the same meaning share one row.
    OK = 0, "success", ""
    CONFIG = (
        2,
        "configuration or usage: a flag, input or environment variable is missing or malformed",
        "configuration",
    )
    INPUT = (
        3,
        "input files: the manifest, the artifact JSON or an artifact file cannot be used",
        "input file",
    )
    AUTH = (
        4,
        "authentication: the registry answered 401/403 (check `ATLAS_TOKEN`)",
        "authentication failed",
    )
    REFUSED = (
        5,
        "the registry refused the request (other 4xx) or answered outside the contract",
        "the registry refused the request",
    )
    UNAVAILABLE = (
        6,
        "the registry was unreachable or kept failing (connection errors, timeouts, 5xx)",
        "the registry is unavailable",
    )
    INTERRUPTED = (
        130,
        "interrupted by SIGINT / SIGTERM; the last line says what the registry was left holding",
        "interrupted",
    )
    TERMINATED = (
        143,
        "interrupted by SIGINT / SIGTERM; the last line says what the registry was left holding",
        "interrupted",
    )
    BUG = 1, "a bug in atlas-ci: please report it with the output of `--debug`", "internal error"

    @classmethod
    def from_signal(cls, signum: int) -> ExitStatus:
        """The status of a run ended by a signal: 128 + its number, as a shell reports it."""
        return cls.TERMINATED if signum == 15 else cls.INTERRUPTED


#: The old name of :class:`ExitStatus`, still imported by the registry's ``serve``.
ExitCode = ExitStatus


def exit_status_rows() -> list[tuple[str, str]]:
    """``(codes, meaning)`` rows of the exit-code table; ``("130 / 143", ...)`` shares a row."""
    rows: list[tuple[list[int], str]] = []
    for status in ExitStatus:
        if rows and rows[-1][1] == status.meaning:
            rows[-1][0].append(int(status))
        else:
            rows.append(([int(status)], status.meaning))
    return [(" / ".join(str(code) for code in codes), meaning) for codes, meaning in rows]


def exit_process(code: int) -> NoReturn:
    """End the process with ``code`` once the work is done (the entry points call this).

    ``gc.freeze()`` first: otherwise the interpreter's last garbage collections walk every
    object the run left behind (requests, ssl, email: tens of milliseconds) to free memory the
    exit frees anyway. atexit handlers and the flushing of stdout and stderr still run; the
    ``__del__`` of an object caught in a reference cycle does not, so nothing here may rely
    on one for clean-up (temp files go with ``with`` blocks and atexit).
    """
    gc.freeze()
    sys.exit(code)


class AtlasCIError(Exception):
    """Root of every error the tool reports as one line."""

    exit_code: ExitStatus = ExitStatus.BUG

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

    exit_code = ExitStatus.CONFIG


class InputFileError(AtlasCIError):
    """The manifest, artifact JSON or an artifact file cannot be used."""

    exit_code = ExitStatus.INPUT

    def __init__(self, message: str, hint: str = "", path: str | None = None) -> None:
        super().__init__(message, hint)
        self.path = path


class AuthError(AtlasCIError):
    """The registry rejected the token (401/403)."""

    exit_code = ExitStatus.AUTH


class RegistryRefused(AtlasCIError):
    """The registry refused a request (4xx) or answered outside the contract."""

    exit_code = ExitStatus.REFUSED


class RegistryUnavailable(AtlasCIError):
    """The registry could not be reached or kept failing (network, timeout, 5xx)."""

    exit_code = ExitStatus.UNAVAILABLE


class Interrupted(AtlasCIError):
    """SIGINT or SIGTERM arrived; the message says what state the server was left in."""

    exit_code = ExitStatus.INTERRUPTED

    def __init__(self, message: str, hint: str = "", signum: int = 2) -> None:
        super().__init__(message, hint)
        self.exit_code = ExitStatus.from_signal(signum)


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
