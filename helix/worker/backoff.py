"""Delays between retries: exponential, capped, with jitter so workers do not retry in step."""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, first: float = 0.5, cap: float = 30.0, rng: random.Random | None = None):
        self.first = first
        self.cap = cap
        self._rng = rng or random.Random()
        self._attempt = 0

    def next(self) -> float:
        delay = min(self.cap, self.first * 2**self._attempt)
        self._attempt = min(self._attempt + 1, 30)
        return self._rng.uniform(delay / 2, delay)

    def reset(self) -> None:
        self._attempt = 0
