"""Progress lines for long uploads: bytes, percent, rate and ETA, never a carriage return."""

from __future__ import annotations

import time
from collections.abc import Callable

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def human_bytes(n: float) -> str:
    """``1.5 GiB`` style."""
    value = float(n)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def human_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    minutes, sec = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{sec:02d}" if hours else f"{minutes}:{sec:02d}"


class Progress:
    """Called with the bytes sent so far; emits a line when enough time or bytes have passed.

    In a log that is not a terminal a line comes at most every ``interval`` seconds; on a
    terminal also at every further 10 %.
    """

    def __init__(
        self,
        total: int,
        emit: Callable[[str], None],
        *,
        interactive: bool = False,
        interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.emit = emit
        self.interactive = interactive
        self.interval = interval
        self.clock = clock
        self.start = clock()
        self._last_time = self.start
        self._last_bytes = 0

    def __call__(self, sent: int) -> None:
        now = self.clock()
        if sent >= self.total:
            return  # the "Uploaded" line says it
        due = now - self._last_time >= self.interval
        if self.interactive and self.total:
            due = due or (sent - self._last_bytes) >= self.total / 10
        if due:
            self._last_time, self._last_bytes = now, sent
            self.emit(self.line(sent, now))

    def line(self, sent: int, now: float) -> str:
        elapsed = max(now - self.start, 1e-9)
        rate = sent / elapsed
        percent = 100.0 * sent / self.total if self.total else 100.0
        eta = (self.total - sent) / rate if rate > 0 else 0.0
        return (
            f"  {human_bytes(sent)} of {human_bytes(self.total)} ({percent:.0f}%), "
            f"{human_bytes(rate)}/s, ETA {human_duration(eta)}"
        )
