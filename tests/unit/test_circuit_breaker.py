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
