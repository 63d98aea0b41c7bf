"""When a failed delivery is tried again: a fixed schedule with ±20% jitter, `Retry-After`
honoured on 429 and 503 within the schedule's bounds, and a dead letter after the last entry."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

JITTER = 0.2
RETRY_AFTER_STATUSES = frozenset({429, 503})


def jittered(delay: float, rng: random.Random | None = None) -> float:
    return max(0.0, delay * (1 + (rng or random).uniform(-JITTER, JITTER)))


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds or an HTTP date); None if absent or
    unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def next_delay(
    schedule: Sequence[float],
    attempts_made: int,
    *,
    status: int | None = None,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float | None:
    """Seconds until the next attempt after `attempts_made` attempts, or None: dead-letter.

    `schedule[0]` is the first attempt's delay, `schedule[n]` the wait after the n-th attempt.
    A receiver's `Retry-After` (on 429/503) may push the next attempt later, never beyond the
    schedule's longest delay, and never earlier than the schedule says.
    """
    if attempts_made >= len(schedule):
        return None
    delay = jittered(schedule[attempts_made], rng)
    if status in RETRY_AFTER_STATUSES and retry_after is not None:
        delay = max(delay, min(retry_after, max(schedule)))
    return delay
