"""When to try a request again, and how long to wait first.

Exponential backoff with full jitter (a random wait between 0 and the cap of the attempt),
never shorter than the server's ``Retry-After`` and never longer than ``max_wait``.
Clock, sleep and randomness are injected so tests run the schedule without waiting.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# Statuses after which the server has said it did not act on the request.
NOT_PROCESSED_STATUSES = frozenset({429, 503})


@dataclass
class RetryPolicy:
    """How many more tries, and how long to sleep before each."""

    retries: int = 5
    max_wait: float = 60.0
    base: float = 0.5
    sleep: Callable[[float], None] = time.sleep
    rand: Callable[[], float] = random.random
    now: Callable[[], float] = time.time
    waits: list[float] = field(default_factory=list)

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        cap = min(self.max_wait, self.base * 2.0 ** max(attempt - 1, 0))
        wait = cap * self.rand()
        hinted = parse_retry_after(retry_after, self.now())
        if hinted is not None:
            wait = max(wait, hinted)
        return min(wait, self.max_wait)

    def pause(self, seconds: float) -> None:
        self.waits.append(seconds)
        if seconds > 0:
            self.sleep(seconds)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date; None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - now)
