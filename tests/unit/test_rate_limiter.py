"""RateLimiter: a token bucket shared by every thread that calls Stripe."""

from __future__ import annotations

import threading
import time

import pytest

from donation_processor.rate_limiter import RateLimiter


class FakeTime:
    """A clock that moves only when the limiter sleeps (or the test advances it)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_the_first_burst_acquisitions_do_not_wait() -> None:
    # GIVEN a limiter of 10/s with a burst of 5
    fake = FakeTime()
    limiter = RateLimiter(10, burst=5, clock=fake.clock, sleep=fake.sleep)

    # WHEN five slots are taken at once
    waits = [limiter.acquire() for _ in range(5)]

    # THEN none of them sleeps
    assert waits == [0.0] * 5
    assert fake.sleeps == []


@pytest.mark.parametrize(("rate", "burst", "count"), [(10.0, 5.0, 25), (80.0, 10.0, 200), (0.5, 1.0, 4)])
def test_n_sequential_acquisitions_sleep_n_minus_burst_over_rate_in_total(
    rate: float, burst: float, count: int
) -> None:
    # GIVEN a limiter on a fake clock that advances by exactly what it sleeps
    fake = FakeTime()
    limiter = RateLimiter(rate, burst=burst, clock=fake.clock, sleep=fake.sleep)

    # WHEN `count` slots are taken one after another
    returned = sum(limiter.acquire() for _ in range(count))

    # THEN the total sleep is (count - burst) / rate, spread as one 1/rate wait per extra slot
    expected = (count - burst) / rate
    assert sum(fake.sleeps) == pytest.approx(expected)
    assert returned == pytest.approx(expected)
    assert len(fake.sleeps) == count - burst
    assert all(wait == pytest.approx(1 / rate) for wait in fake.sleeps)


def test_simultaneous_reservations_are_spaced_one_interval_apart() -> None:
    # GIVEN a limiter whose clock does not move (every caller arrives at the same instant)
    frozen = FakeTime()
    waits: list[float] = []
    limiter = RateLimiter(20, burst=4, clock=frozen.clock, sleep=waits.append)

    # WHEN 24 slots are reserved at that instant
    for _ in range(24):
        limiter.acquire()

    # THEN the reservations queue up 1/rate apart, the last one (24 - 4) / 20 = 1 s away
    assert waits == pytest.approx([step / 20 for step in range(1, 21)])
    assert max(waits) == pytest.approx((24 - 4) / 20)


def test_idle_time_refills_the_bucket_but_never_beyond_the_burst() -> None:
    # GIVEN a drained 10/s limiter with a burst of 3
    fake = FakeTime()
    limiter = RateLimiter(10, burst=3, clock=fake.clock, sleep=fake.sleep)
    for _ in range(3):
        limiter.acquire()

    # WHEN it stays idle for a minute, then four slots are taken
    fake.now += 60
    waits = [limiter.acquire() for _ in range(4)]

    # THEN only the burst is free again: the fourth waits one interval
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert waits[3] == pytest.approx(0.1)


def test_the_default_burst_is_the_rate_capped_at_ten_and_at_least_one() -> None:
    # GIVEN limiters of 80/s, 4/s and 0.2/s without an explicit burst
    frees = []
    for rate in (80.0, 4.0, 0.2):
        fake = FakeTime()
        limiter = RateLimiter(rate, clock=fake.clock, sleep=fake.sleep)

        # WHEN 20 slots are taken at once
        frees.append(sum(1 for _ in range(20) if limiter.acquire() == 0.0))

    # THEN 10, 4 and 1 are free respectively
    assert frees == [10, 4, 1]


def test_concurrent_threads_together_respect_the_rate() -> None:
    # GIVEN a real-clock limiter of 200/s (burst 10) shared by 6 threads
    limiter = RateLimiter(200)
    start = threading.Barrier(6)

    def worker() -> None:
        start.wait()
        for _ in range(10):
            limiter.acquire()

    threads = [threading.Thread(target=worker) for _ in range(6)]

    # WHEN the threads take 60 slots in all
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    elapsed = time.monotonic() - began

    # THEN together they took at least (60 - 10) / 200 s (a correctness bound, not a performance target)
    assert not any(thread.is_alive() for thread in threads)
    assert elapsed >= (60 - 10) / 200 * 0.9


@pytest.mark.parametrize("rate", [0, -1, -0.001])
def test_a_rate_that_is_not_positive_is_rejected(rate: float) -> None:
    # GIVEN a non-positive rate
    # WHEN a limiter is built
    # THEN it is refused
    with pytest.raises(ValueError, match="rate must be positive"):
        RateLimiter(rate)


def test_the_rate_is_readable() -> None:
    # GIVEN a limiter of 42/s
    # WHEN its rate is read
    # THEN it is the configured one
    assert RateLimiter(42).rate == 42
