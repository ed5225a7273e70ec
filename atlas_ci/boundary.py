"""The one error boundary: every way a run ends becomes one report and a documented exit status.

The CLI and the action share it and differ only in how they report (a line on stderr, an
annotation and a summary section): a :class:`Report` says that, this module decides the rest.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType
from typing import Protocol

from atlas_ci.errors import AtlasCIError, ExitStatus


class Report(Protocol):
    """How a front end tells the user that a run failed."""

    def failed(self, error: AtlasCIError) -> None:
        """An error the user can act on (the message carries the fix)."""

    def interrupted(self, signum: int) -> None:
        """SIGINT or SIGTERM arrived outside the upload flow's own handling."""

    def bug(self, error: Exception) -> None:
        """Anything else: a bug in atlas-ci (the traceback only where debug output goes)."""


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the main thread is, so context managers clean up."""

    signum = signal.SIGTERM


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise _Terminated()


def guarded(work: Callable[[], int], report: Report) -> int:
    """Run ``work`` and return its exit status; turn each failure into ``report`` and a status.

    SIGTERM is raised as an interrupt while ``work`` runs: as PID 1 in a container, Python
    would otherwise ignore it, and ``with`` blocks would not clean up.
    """
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return int(work())
    except AtlasCIError as exc:
        report.failed(exc)
        return int(exc.exit_code)
    except KeyboardInterrupt as exc:
        signum = int(getattr(exc, "signum", signal.SIGINT))
        report.interrupted(signum)
        return int(ExitStatus.from_signal(signum))
    except Exception as exc:  # the one place a bug becomes a report
        report.bug(exc)
        return int(ExitStatus.BUG)
    finally:
        signal.signal(signal.SIGTERM, previous)
