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


def test_pause_records_without_sleeping_through_injected_sleep() -> None:
    slept: list[float] = []
    policy = RetryPolicy(sleep=slept.append)
    policy.pause(1.5)
    policy.pause(0)
    assert slept == [1.5]
    assert policy.waits == [1.5, 0]


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
