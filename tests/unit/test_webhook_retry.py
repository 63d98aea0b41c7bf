"""The retry schedule: jitter bounds, Retry-After within bounds, the dead letter."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from hypothesis import given
from hypothesis import strategies as st

from helix.webhooks.retry import next_delay, parse_retry_after

SCHEDULE = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)


@given(st.integers(min_value=1, max_value=len(SCHEDULE) - 1), st.integers())
def test_each_retry_waits_its_scheduled_delay_within_twenty_percent(n: int, seed: int) -> None:
    delay = next_delay(SCHEDULE, n, rng=random.Random(seed))
    assert delay is not None
    assert SCHEDULE[n] * 0.8 <= delay <= SCHEDULE[n] * 1.2


def test_after_the_last_scheduled_attempt_the_delivery_is_dead_lettered() -> None:
    assert next_delay(SCHEDULE, len(SCHEDULE)) is None
    assert next_delay((0, 0.2, 0.4), 3) is None
    assert next_delay((0, 0.2, 0.4), 2) is not None


def test_retry_after_on_429_and_503_pushes_the_next_attempt_later_within_bounds() -> None:
    rng = random.Random(1)
    assert next_delay(SCHEDULE, 1, status=429, retry_after=120, rng=rng) == 120
    assert next_delay(SCHEDULE, 1, status=503, retry_after=10**9, rng=rng) == max(SCHEDULE)
    shorter = next_delay(SCHEDULE, 2, status=503, retry_after=1, rng=rng)
    assert shorter is not None and shorter >= 300 * 0.8


def test_retry_after_is_ignored_on_other_statuses() -> None:
    delay = next_delay(SCHEDULE, 1, status=500, retry_after=120, rng=random.Random(1))
    assert delay is not None and delay <= 6


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after("30") == 30
    assert parse_retry_after(format_datetime(now + timedelta(seconds=90), usegmt=True), now) == 90
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
