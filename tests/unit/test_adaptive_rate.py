"""The rate limiter adapts to the limit Stripe really applies: back off on 429, grow back when quiet."""

from __future__ import annotations

import threading

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


def _throttled_on_threads(limiter: RateLimiter, threads: int) -> None:
    """`threads` requests granted at the current rate, each answered 429 on its own thread."""
    granted = threading.Barrier(threads)

    def request() -> None:
        limiter.acquire()
        granted.wait()  # every request is on the wire before the first 429 comes back
        limiter.on_throttled()

    workers = [threading.Thread(target=request) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def test_the_429s_of_one_round_trip_cut_the_rate_once() -> None:
    # GIVEN a limiter configured for 100/s with ten requests in flight
    fake = FakeTime()
    limiter = RateLimiter(100, burst=100, clock=fake.clock, sleep=fake.sleep)

    # WHEN all ten come back 429
    _throttled_on_threads(limiter, 10)

    # THEN the rate was halved once, and every 429 was counted
    assert limiter.rate == pytest.approx(50)
    assert limiter.throttled_count == 10


def test_a_429_on_a_request_granted_after_the_cut_cuts_again() -> None:
    # GIVEN a limiter already cut once from 100/s to 50/s
    fake = FakeTime()
    limiter = RateLimiter(100, burst=100, clock=fake.clock, sleep=fake.sleep)
    _throttled_on_threads(limiter, 3)

    # WHEN a request granted at the new rate is answered 429 too, and one from before the cut arrives late
    late = threading.Thread(target=limiter.on_throttled)  # a thread whose grant predates the cut
    limiter.acquire()
    limiter.on_throttled()
    late.start()
    late.join()

    # THEN the rate is halved again (25/s), and the late answer changed nothing
    assert limiter.rate == pytest.approx(25)
    assert limiter.throttled_count == 5


def test_the_rate_never_falls_below_the_minimum() -> None:
    # GIVEN a limiter of 10/s with a floor of 2/s
    fake = FakeTime()
    limiter = RateLimiter(10, clock=fake.clock, sleep=fake.sleep, minimum_rate=2)

    # WHEN every request for a minute is answered 429
    for _ in range(60):
        limiter.acquire()
        limiter.on_throttled()
        fake.now += 1

    # THEN the rate rests at the floor
    assert limiter.rate == pytest.approx(2)


def test_growth_waits_for_a_quiet_period_then_recovers_fast_to_the_knee_and_probes_slowly_beyond() -> None:
    # GIVEN a limiter cut from 100/s to 50/s by a 429 (the knee is 90 % of 100/s)
    fake = FakeTime()
    limiter = RateLimiter(100, burst=100, clock=fake.clock, sleep=fake.sleep)
    limiter.acquire()
    limiter.on_throttled()

    # WHEN successes keep coming: one second later, then every 0.1 s for 20 s
    fake.now += 1
    limiter.on_success()
    too_soon = limiter.rate
    rates = []
    for _ in range(200):
        fake.now += 0.1
        limiter.on_success()
        rates.append(limiter.rate)

    # THEN nothing moved inside the 2 s quiet period; then the rate grew x1.5 a second (75/s after one
    # second), reached the knee (90/s) 1.45 s into growing, and from there added 1 % of 100/s a second
    assert too_soon == pytest.approx(50)
    assert rates[19] == pytest.approx(75)  # t = 3 s
    assert rates[24] == pytest.approx(90)  # t = 3.5 s
    assert rates[49] == pytest.approx(92.5)  # t = 6 s
    assert rates[-1] <= 100
    assert rates == sorted(rates)


def test_the_rate_never_grows_past_the_configured_one() -> None:
    # GIVEN a limiter cut once
    fake = FakeTime()
    limiter = RateLimiter(100, clock=fake.clock, sleep=fake.sleep)
    limiter.acquire()
    limiter.on_throttled()

    # WHEN Stripe is quiet for ten minutes of successes
    for _ in range(600):
        fake.now += 1
        limiter.on_success()

    # THEN the rate is back at exactly the configured one
    assert limiter.rate == pytest.approx(100)


def test_a_cut_rate_spaces_acquisitions_further_apart() -> None:
    # GIVEN a drained 10/s limiter that was cut twice, one round trip apart
    fake = FakeTime()
    limiter = RateLimiter(10, burst=1, clock=fake.clock, sleep=fake.sleep)
    limiter.acquire()
    limiter.on_throttled()
    limiter.on_throttled()  # same round trip: ignored
    limiter.acquire()
    limiter.on_throttled()

    # WHEN two more slots are taken at once
    limiter.acquire()
    second_wait = limiter.acquire()

    # THEN they are 1/2.5 s apart (10 x 0.5 x 0.5)
    assert second_wait == pytest.approx(1 / 2.5)


def test_each_thread_sees_only_its_own_waits() -> None:
    # GIVEN a drained 10/s limiter
    fake = FakeTime()
    limiter = RateLimiter(10, burst=1, clock=fake.clock, sleep=lambda seconds: None)
    limiter.acquire()

    # WHEN this thread takes two more slots and another thread takes one
    limiter.acquire()
    limiter.acquire()
    other: list[float] = []
    thread = threading.Thread(
        target=lambda: other.append(limiter.acquire() + limiter.waited_by_current_thread())
    )
    thread.start()
    thread.join()

    # THEN this thread waited 0.1 + 0.2 s, the other only its own 0.3 s (counted once in each figure)
    assert limiter.waited_by_current_thread() == pytest.approx(0.3)
    assert other == [pytest.approx(0.6)]


@pytest.mark.parametrize(
    ("seconds_per_donation", "expected"),
    [(0.25, 33), (0.8, 101), (0.01, 3), (5.0, 128)],
)
def test_in_flight_target_follows_latency_by_littles_law(seconds_per_donation: float, expected: int) -> None:
    # GIVEN a governor for 100 requests/s with a ceiling of 128 that has only seen one latency
    governor = InFlightGovernor(lambda: 100, 128, initial_seconds=seconds_per_donation)

    # WHEN it is asked how many donations to keep in flight
    # THEN it is ceil(rate x latency x 1.25) + 1, clamped to [1, ceiling]
    assert governor.target() == expected


def test_the_first_answer_replaces_the_initial_guess() -> None:
    # GIVEN a governor that guessed 250 ms
    governor = InFlightGovernor(lambda: 100, 256, initial_seconds=0.25)

    # WHEN the first donation takes 800 ms
    governor.record(0.8)

    # THEN the target is already what 800 ms needs
    assert governor.target() == 101


def test_in_flight_target_moves_toward_new_latencies() -> None:
    # GIVEN a governor that has seen 50 donations of 250 ms
    governor = InFlightGovernor(lambda: 100, 256, initial_seconds=0.25)
    for _ in range(50):
        governor.record(0.25)
    before = governor.target()

    # WHEN one slow answer arrives, then every donation takes 800 ms
    governor.record(0.8)
    after_one = governor.target()
    for _ in range(100):
        governor.record(0.8)

    # THEN one sample moves it a tenth of the way, and the target settles at what 800 ms needs
    assert before == 33
    assert after_one == 40
    assert governor.target() == 101


def test_in_flight_target_follows_the_rate_in_force() -> None:
    # GIVEN a governor at 800 ms reading a rate that Stripe's 429s pushed from 100/s down to 25/s
    rate = [100.0]
    governor = InFlightGovernor(lambda: rate[0], 256, initial_seconds=0.8)
    before = governor.target()

    # WHEN the rate falls
    rate[0] = 25.0

    # THEN the target falls with it: 25 x 0.8 x 1.25 + 1
    assert before == 101
    assert governor.target() == 26
