"""Exponential backoff with full jitter."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from donation_processor.backoff import backoff_delay


@settings(max_examples=300, deadline=None)
@given(
    retry=st.integers(min_value=1, max_value=60),
    base=st.floats(min_value=0.001, max_value=10),
    cap=st.floats(min_value=0.001, max_value=100),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_delay_lies_between_zero_and_the_capped_exponential(
    retry: int, base: float, cap: float, seed: int
) -> None:
    # GIVEN a retry number, a base, a cap and a random source
    ceiling = min(cap, base * 2 ** (retry - 1))

    # WHEN the delay is drawn
    delay = backoff_delay(retry, base=base, cap=cap, rng=random.Random(seed))

    # THEN it lies in [0, min(cap, base * 2**(n-1))]
    assert 0 <= delay <= ceiling


def test_the_ceiling_grows_then_stops_at_the_cap() -> None:
    # GIVEN a random source that always draws the top of the range
    class TopOfRange(random.Random):
        def uniform(self, a: float, b: float) -> float:
            return b

    # WHEN delays are drawn for retries 1..8 with base 0.5 and cap 20
    delays = [backoff_delay(n, base=0.5, cap=20.0, rng=TopOfRange()) for n in range(1, 9)]

    # THEN the ceilings double from the base until the cap
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 20.0, 20.0]


def test_a_seeded_random_source_reproduces_the_same_delays() -> None:
    # GIVEN two random sources with the same seed
    first, second = random.Random(42), random.Random(42)

    # WHEN each draws delays for retries 1..5
    a = [backoff_delay(n, rng=first) for n in range(1, 6)]
    b = [backoff_delay(n, rng=second) for n in range(1, 6)]

    # THEN the sequences are identical (and not all zero)
    assert a == b
    assert any(delay > 0 for delay in a)


@pytest.mark.parametrize("retry", [0, -1])
def test_retry_numbers_below_one_are_rejected(retry: int) -> None:
    # GIVEN a retry number below 1
    # WHEN a delay is asked for
    # THEN it is refused
    with pytest.raises(ValueError, match="retry_number starts at 1"):
        backoff_delay(retry)
