"""When to try a request again, how long to wait first, and how many retries a run gets.

Exponential backoff with full jitter (a random wait between 0 and the cap of the attempt),
never shorter than the server's ``Retry-After`` and never longer than ``max_wait``.
Every retry of the run goes through one :class:`RetryPolicy`: each request is tried at
most ``1 + retries`` times, however many layers of recovery ask for it again (the file PUT
and its read-back count as one request), and the whole run spends at most ``budget``
retries. Clock, sleep and randomness are injected so tests run the schedule without waiting.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# Statuses after which the server has said it did not act on the request.
NOT_PROCESSED_STATUSES = frozenset({429, 503})

Log = Callable[[str], None]


@dataclass
class RetryPolicy:
    """How many more tries, how long to sleep before each, and the run's retry budget.

    ``budget`` None means ``2 * retries``; the upload flow sets ``retries * (1 + builds)``
    (:meth:`for_builds`) so a run of many builds is not starved by its first one.
    """

    retries: int = 5
    max_wait: float = 60.0
    base: float = 0.5
    sleep: Callable[[float], None] = time.sleep
    rand: Callable[[], float] = random.random
    now: Callable[[], float] = time.time
    budget: int | None = None
    spent: int = 0

    @property
    def run_budget(self) -> int:
        return 2 * self.retries if self.budget is None else self.budget

    def for_builds(self, builds: int) -> None:
        """Size the run's budget for ``builds`` uploads."""
        self.budget = self.retries * (1 + max(builds, 1))

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        cap = min(self.max_wait, self.base * 2.0 ** max(attempt - 1, 0))
        wait = cap * self.rand()
        hinted = parse_retry_after(retry_after, self.now())
        if hinted is not None:
            wait = max(wait, hinted)
        return min(wait, self.max_wait)

    def tries(self, what: str, log: Log) -> Tries:
        """The count of tries of one request named ``what`` (its first try is under way)."""
        return Tries(self, what, log)


class Tries:
    """The tries of one request; every layer that would send it again asks :meth:`again`."""

    def __init__(self, policy: RetryPolicy, what: str, log: Log) -> None:
        self.policy = policy
        self.what = what
        self.count = 1
        self.budget_spent = False
        self.maybe_processed = False
        """Some try got no answer after it was sent, or a 500/502/504: it may have acted."""
        self._log = log

    def again(self, reason: str, retry_after: str | None = None) -> bool:
        """One more try? If so, say why and when, wait, and count it; else False."""
        policy = self.policy
        if self.count > policy.retries:
            return False
        if policy.spent >= policy.run_budget:
            self.budget_spent = True
            return False
        wait = policy.delay(self.count, retry_after)
        self._log(
            f"{self.what} failed ({reason}); retry {self.count}/{policy.retries} in {wait:.1f}s"
        )
        policy.spent += 1
        if wait > 0:
            policy.sleep(wait)
        self.count += 1
        return True

    @property
    def text(self) -> str:
        """``1 try`` / ``3 tries`` (callers say "after"), plus a word when the budget ran out."""
        n = self.count
        tries = "1 try" if n == 1 else f"{n} tries"
        if self.budget_spent:
            return f"{tries}, the run's {self.policy.run_budget} retries spent"
        return tries


def parse_retry_after(value: str | None, now: float) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date; None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # not '²', which isdigit() accepts
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - now)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
