"""Exponential backoff with full jitter for transient failures."""

from __future__ import annotations

import random


def backoff_delay(
    retry_number: int, base: float = 0.5, cap: float = 20.0, rng: random.Random | None = None
) -> float:
    """Seconds to wait before retry n (1-based): uniform in [0, min(cap, base * 2**(n-1))]."""
    if retry_number < 1:
        raise ValueError("retry_number starts at 1")
    ceiling = min(cap, base * 2 ** (retry_number - 1))
    return (rng or random).uniform(0, ceiling)
