"""CircuitBreaker: stop a run after consecutive availability failures."""

from __future__ import annotations

import threading

import pytest

from donation_processor.circuit_breaker import CircuitBreaker


def test_it_opens_exactly_at_the_threshold() -> None:
    # GIVEN a breaker with threshold 3
    breaker = CircuitBreaker(3)

    # WHEN three consecutive failures are recorded
    results = [breaker.record_availability_failure() for _ in range(3)]

    # THEN only the third opens it
    assert results == [False, False, True]
    assert breaker.is_open


def test_it_stays_closed_one_failure_short_of_the_threshold() -> None:
    # GIVEN a breaker with threshold 3
    breaker = CircuitBreaker(3)

    # WHEN two failures are recorded
    breaker.record_availability_failure()
    breaker.record_availability_failure()

    # THEN it is still closed
    assert not breaker.is_open


def test_opening_is_reported_only_once() -> None:
    # GIVEN a breaker that has just opened
    breaker = CircuitBreaker(2)
    breaker.record_availability_failure()
    assert breaker.record_availability_failure() is True

    # WHEN more failures follow
    later = [breaker.record_availability_failure() for _ in range(5)]

    # THEN none of them reports opening again, and it stays open
    assert later == [False] * 5
    assert breaker.is_open


def test_a_success_resets_the_consecutive_count() -> None:
    # GIVEN a breaker with threshold 3 and two failures
    breaker = CircuitBreaker(3)
    breaker.record_availability_failure()
    breaker.record_availability_failure()

    # WHEN a success is recorded, then two more failures
    breaker.record_success()
    results = [breaker.record_availability_failure() for _ in range(2)]

    # THEN the count started again: still closed, and the third failure after the success opens it
    assert results == [False, False]
    assert not breaker.is_open
    assert breaker.record_availability_failure() is True


@pytest.mark.parametrize("threshold", [0, -1])
def test_a_threshold_below_one_is_rejected(threshold: int) -> None:
    # GIVEN a threshold below one
    # WHEN a breaker is built
    # THEN it is refused
    with pytest.raises(ValueError, match="threshold must be at least 1"):
        CircuitBreaker(threshold)


@pytest.mark.parametrize(("threshold", "opens"), [(8 * 2000, True), (8 * 2000 + 1, False)])
def test_counting_is_exact_under_eight_threads(threshold: int, opens: bool) -> None:
    # GIVEN a breaker whose threshold is exactly (or one more than) what 8 threads will record
    breaker = CircuitBreaker(threshold)
    openings: list[bool] = []
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait()
        mine = [breaker.record_availability_failure() for _ in range(2000)]
        openings.extend(result for result in mine if result)

    threads = [threading.Thread(target=worker) for _ in range(8)]

    # WHEN 8 threads record 2000 failures each at the same time
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    # THEN no failure was lost: it opens exactly at the threshold, reported by exactly one call
    assert breaker.is_open is opens
    assert len(openings) == (1 if opens else 0)


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_open_breaker_lets_one_probe_through_after_the_cool_down_and_closes_on_its_success() -> None:
    # GIVEN a breaker opened by two failures, with a 1 s cool-down
    clock = _Clock()
    breaker = CircuitBreaker(2, cool_down_seconds=1.0, clock=clock)
    breaker.record_availability_failure()
    breaker.record_availability_failure()

    # WHEN requests ask to go during the cool-down, and after it
    during = breaker.try_acquire()
    clock.now += 1.0
    probe, second = breaker.try_acquire(), breaker.try_acquire()
    breaker.record_success()

    # THEN none goes during the cool-down, exactly one probe goes after it, and its success closes it
    assert during == (False, 1.0)
    assert probe == (True, 0.0)
    assert second[0] is False
    assert not breaker.is_open
    assert breaker.try_acquire() == (True, 0.0)


def test_a_failed_probe_opens_the_breaker_again_for_twice_the_cool_down_up_to_the_cap() -> None:
    clock = _Clock()
    breaker = CircuitBreaker(1, cool_down_seconds=1.0, max_cool_down_seconds=3.0, clock=clock)
    breaker.record_availability_failure()
    waits = []
    for _ in range(3):
        clock.now += 10
        assert breaker.try_acquire() == (True, 0.0)  # the probe
        assert breaker.record_availability_failure() is True
        waits.append(breaker.try_acquire()[1])
    assert waits == [2.0, 3.0, 3.0]


def test_the_outage_window_counts_from_the_first_opening_until_a_success() -> None:
    # GIVEN a breaker with a 60 s outage window, opened at t=100
    clock = _Clock()
    breaker = CircuitBreaker(1, cool_down_seconds=1.0, outage_window_seconds=60, clock=clock)
    breaker.record_availability_failure()

    # WHEN probes keep failing for 59 s, then for 60 s
    clock.now += 59
    assert breaker.try_acquire()[0]
    breaker.record_availability_failure()
    before = breaker.outage_exceeded
    clock.now += 1
    after = breaker.outage_exceeded

    # THEN the run may keep waiting until the window has passed, and a success starts a new window
    assert (before, after) == (False, True)
    breaker.record_success()
    assert not breaker.outage_exceeded


def test_waiting_for_permission_gives_up_when_the_run_stops() -> None:
    breaker = CircuitBreaker(1, cool_down_seconds=30.0)
    breaker.record_availability_failure()
    stop = threading.Event()
    stop.set()
    assert breaker.wait_for_permission(stop) is False
