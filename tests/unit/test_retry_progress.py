from __future__ import annotations

import email.utils

import pytest

from atlas_ci.progress import Progress, human_bytes
from atlas_ci.retry import RetryPolicy, parse_retry_after


def test_retry_after_seconds_and_http_date() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("7", now) == 7.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(date, now) == pytest.approx(30.0)
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


def test_backoff_is_exponential_full_jitter_capped_by_max_wait() -> None:
    top = RetryPolicy(retries=8, max_wait=5, rand=lambda: 1.0)
    assert [top.delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    bottom = RetryPolicy(retries=8, max_wait=5, rand=lambda: 0.0)
    assert bottom.delay(4) == 0.0
    assert bottom.delay(4, "3") == 3.0  # Retry-After is a floor
    assert bottom.delay(4, "3600") == 5.0  # ... but max_wait is a ceiling


def test_tries_wait_through_the_injected_sleep_and_stop_at_retries() -> None:
    slept: list[float] = []
    lines: list[str] = []
    policy = RetryPolicy(retries=2, max_wait=5, sleep=slept.append, rand=lambda: 1.0)
    tries = policy.tries("token check", lines.append)
    assert tries.again("503 Service Unavailable")
    assert tries.again("connection reset", "4")
    assert not tries.again("connection reset")
    assert slept == [0.5, 4.0]
    assert lines == [
        "token check failed (503 Service Unavailable); retry 1/2 in 0.5s",
        "token check failed (connection reset); retry 2/2 in 4.0s",
    ]
    assert tries.text == "3 tries"


def test_the_run_budget_caps_retries_across_requests() -> None:
    slept: list[float] = []
    policy = RetryPolicy(retries=3, max_wait=0, sleep=slept.append, budget=4)
    first, second = policy.tries("a", print), policy.tries("b", print)
    assert [first.again("x") for _ in range(4)] == [True, True, True, False]
    assert [second.again("x") for _ in range(3)] == [True, False, False]
    assert second.budget_spent and not first.budget_spent
    assert second.text == "2 tries, the run's 4 retries spent"
    policy.for_builds(2)
    assert policy.run_budget == 9


def test_odd_retry_after_values_are_ignored_not_fatal() -> None:
    now = 1_700_000_000.0
    for value in ("²", "Wed, 21 Oct 99999 07:28:00 GMT", "9" * 400 + "x", "-5"):
        assert parse_retry_after(value, now) is None


def test_progress_lines_at_most_every_interval_in_logs() -> None:
    lines: list[str] = []
    now = [0.0]
    p = Progress(10 * 2**30, lines.append, interval=5.0, clock=lambda: now[0])
    for second in range(1, 13):
        now[0] = float(second)
        p(second * 2**29)  # 0.5 GiB/s
    assert len(lines) == 2  # at 5 s and 10 s
    assert lines[0] == "  2.5 GiB of 10.0 GiB (25%), 512.0 MiB/s, ETA 0:15"
    p(10 * 2**30)  # completion is left to the "Uploaded" line
    assert len(lines) == 2


def test_progress_on_a_terminal_also_every_ten_percent() -> None:
    lines: list[str] = []
    now = [0.0]
    p = Progress(100, lines.append, interactive=True, interval=5.0, clock=lambda: now[0])
    for sent in range(5, 100, 5):
        now[0] += 0.1
        p(sent)
    assert len(lines) == 9


def test_human_bytes() -> None:
    assert human_bytes(512) == "512 B"
    assert human_bytes(1536) == "1.5 KiB"
    assert human_bytes(3 * 2**30) == "3.0 GiB"
