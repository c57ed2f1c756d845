"""The rate limiter adapts to the limit Stripe really applies: back off on 429, probe upward when quiet."""

from __future__ import annotations

import pytest

from donation_processor.in_flight import InFlightGovernor
from donation_processor.rate_limiter import RateLimiter


class FakeTime:
    def __init__(self) -> None:
        self.now = 500.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_a_429_cuts_the_rate_once_per_second_however_many_threads_saw_it() -> None:
    # GIVEN a limiter configured for 100/s
    fake = FakeTime()
    limiter = RateLimiter(100, clock=fake.clock, sleep=fake.sleep)

    # WHEN ten 429s arrive within the same second, then one more two seconds later
    for _ in range(10):
        limiter.on_throttled()
    after_burst = limiter.rate
    fake.now += 2
    limiter.on_throttled()

    # THEN the burst cut the rate once (x0.7) and the later 429 cut it again
    assert after_burst == pytest.approx(70)
    assert limiter.rate == pytest.approx(49)
    assert limiter.throttled_count == 11


def test_the_rate_never_falls_below_the_minimum() -> None:
    # GIVEN a limiter of 10/s with a floor of 2/s
    fake = FakeTime()
    limiter = RateLimiter(10, clock=fake.clock, sleep=fake.sleep, minimum_rate=2)

    # WHEN Stripe keeps answering 429 for a minute
    for _ in range(60):
        limiter.on_throttled()
        fake.now += 1

    # THEN the rate rests at the floor
    assert limiter.rate == pytest.approx(2)


def test_successes_probe_upward_only_after_a_quiet_period_and_never_past_the_configured_rate() -> None:
    # GIVEN a limiter cut from 100/s to 70/s by a 429
    fake = FakeTime()
    limiter = RateLimiter(100, clock=fake.clock, sleep=fake.sleep, increase_step=0.01, quiet_seconds=2)
    limiter.on_throttled()

    # WHEN successes arrive one second later, then after the quiet period, then a great many
    fake.now += 1
    limiter.on_success()
    too_soon = limiter.rate
    fake.now += 2
    limiter.on_success()
    probing = limiter.rate
    for _ in range(10_000):
        limiter.on_success()

    # THEN nothing moved too soon, each success then adds 1 % of 100/s, and the ceiling holds
    assert too_soon == pytest.approx(70)
    assert probing == pytest.approx(71)
    assert limiter.rate == pytest.approx(100)


def test_a_cut_rate_spaces_acquisitions_further_apart() -> None:
    # GIVEN a drained 10/s limiter that was cut to 5/s
    fake = FakeTime()
    limiter = RateLimiter(10, burst=1, clock=fake.clock, sleep=fake.sleep)
    limiter.acquire()
    limiter.on_throttled()
    limiter.on_throttled()  # same second: ignored
    fake.now += 1.0
    limiter.on_throttled()

    # WHEN two more slots are taken at once
    limiter.acquire()
    second_wait = limiter.acquire()

    # THEN they are 1/4.9 s apart (10 x 0.7 x 0.7)
    assert second_wait == pytest.approx(1 / 4.9)


@pytest.mark.parametrize(
    ("seconds_per_donation", "expected"),
    [(0.25, 33), (0.8, 101), (0.01, 3), (5.0, 128)],
)
def test_in_flight_target_follows_latency_by_littles_law(seconds_per_donation: float, expected: int) -> None:
    # GIVEN a governor for 100 requests/s with a ceiling of 128 that has only seen one latency
    governor = InFlightGovernor(100, 128, initial_seconds=seconds_per_donation)

    # WHEN it is asked how many donations to keep in flight
    # THEN it is ceil(rate x latency x 1.25) + 1, clamped to [1, ceiling]
    assert governor.target() == expected


def test_in_flight_target_moves_toward_new_latencies() -> None:
    # GIVEN a governor that started at 250 ms
    governor = InFlightGovernor(100, 256, initial_seconds=0.25)
    before = governor.target()

    # WHEN every donation now takes 800 ms
    for _ in range(100):
        governor.record(0.8)

    # THEN its target grows to what 800 ms needs
    assert before == 33
    assert governor.target() == 101
