"""Outages of each dependency: nothing is charged without a claim, nothing is lost, and the job recovers."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

import app
from donation_processor.config import load_settings
from donation_processor.engine import DonationEngine, EngineDependencies
from donation_processor.exceptions import LockUnavailableError, StoreError
from donation_processor.wiring import build_engine
from harness.local.lambda_context import LocalLambdaContext
from harness.local.seed import STOLEN_CARD
from harness.local.services import LocalServices
from harness.local.stripe_server import Fault
from tests.support.clock import TestClock
from tests.support.dead_letters import read_dead_letters
from tests.support.fault_injection import check_invariants, record_scenario, seed_due
from tests.support.fault_injection import (
    write_reliability_results as write_reliability_results,  # autouse fixture
)

pytestmark = pytest.mark.faults

SCHEDULED_EVENT = json.loads(Path("events/scheduled.json").read_text())


def _seed(services: LocalServices, clock: TestClock, count: int, **fields: Any) -> dict[Any, datetime]:
    return seed_due(services, clock.now, count, **fields)


@pytest.fixture
def engine_with(services: LocalServices, clock: TestClock) -> Iterator[Callable[..., DonationEngine]]:
    saved = dict(os.environ)

    def factory(
        store_wrapper: Callable[[Any], Any] | None = None, real_sleep: bool = False, **env: str
    ) -> DonationEngine:
        environment = services.environment(**env)
        os.environ.update(environment)
        sleep: Callable[[float], None] = time.sleep if real_sleep else (lambda _s: None)
        real = build_engine(load_settings(environment), clock=clock, sleep=sleep)
        deps = real._deps
        if store_wrapper is not None:
            deps = EngineDependencies(deps.lock, store_wrapper(deps.store), deps.payments, deps.dead_letters)
        return DonationEngine(real._settings, deps, clock=clock, sleep=sleep)

    yield factory
    os.environ.clear()
    os.environ.update(saved)


def invoke(engine: DonationEngine, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setattr(app, "_engine", engine)
    result: dict[str, Any] = app.lambda_handler(SCHEDULED_EVENT, LocalLambdaContext())
    return result


class StoreFailingAfter:
    """The real store, until MongoDB starts failing on the n-th record write."""

    def __init__(self, inner: Any, failing_from: int) -> None:
        self._inner = inner
        self._remaining = failing_from

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def record_success(self, *args: Any) -> bool:
        self._remaining -= 1
        if self._remaining <= 0:
            raise StoreError("simulated MongoDB outage: NotPrimaryError")
        won: bool = self._inner.record_success(*args)
        return won


def test_mongodb_failing_mid_batch_stops_the_run_and_a_later_run_finishes_without_double_charges(
    services: LocalServices,
    clock: TestClock,
    engine_with: Callable[..., DonationEngine],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN eight due donations and a MongoDB that fails from the third record write on
    original = _seed(services, clock, 8)
    broken = engine_with(
        store_wrapper=lambda store: StoreFailingAfter(store, 3), MAX_CONCURRENCY="2", BATCH_SIZE="4"
    )

    # WHEN the run meets the outage, and a run after MongoDB recovered and the claims expired follows
    with pytest.raises(StoreError):
        invoke(broken, monkeypatch)
    claimed_before_charge = all(
        document.get("lastClaimedAt") is not None
        for document in services.database["scheduled_donations"].find()
        if any(
            charge.metadata["scheduled_donation_id"] == str(document["_id"])
            for charge in services.stripe.state.charges()
        )
    )
    clock.advance(minutes=16)
    recovered = invoke(engine_with(), monkeypatch)

    # THEN every charge had a recorded claim, the run released the lock, and each period was charged once
    assert claimed_before_charge
    assert recovered["status"] == "completed"
    invariants = check_invariants(services, original)
    invariants.assert_exactly_once()
    assert invariants.successful_charges == 8
    record_scenario(
        "mongodb_errors_mid_batch",
        "MongoDB fails on every record write from the third on",
        invariants,
        f"run 1 raised StoreError (lock released, claims kept); run 2 completed; "
        f"{invariants.successful_charges} charges for 8 periods",
    )


def test_sqs_down_parks_dead_letters_in_mongodb_until_a_run_can_deliver_them(
    services: LocalServices,
    clock: TestClock,
    engine_with: Callable[..., DonationEngine],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN three donations on stolen cards and a queue that cannot be reached
    original = _seed(services, clock, 3, payment_method_id=STOLEN_CARD)
    unreachable = services.queue_url.rsplit("/", 1)[0] + "/queue-that-is-down"

    # WHEN a run cannot send the letters, then a run with SQS back follows
    first = invoke(engine_with(DEAD_LETTER_QUEUE_URL=unreachable), monkeypatch)
    second = invoke(engine_with(), monkeypatch)

    # THEN none was lost: parked first, delivered next, each exactly once
    assert (first["deadLettered"], first["deadLettersDeferred"]) == (0, 3)
    assert second["deadLettered"] == 3
    letters = read_dead_letters(services)
    assert sorted(letter["scheduledDonationId"] for letter in letters) == sorted(str(i) for i in original)
    invariants = check_invariants(services, original)
    invariants.assert_exactly_once()
    assert invariants.successful_charges == 0
    record_scenario(
        "sqs_unreachable",
        "the dead-letter queue is unreachable during a run with 3 hard declines",
        invariants,
        "3 letters parked in MongoDB, delivered by the next run; 0 lost",
    )


def test_dynamodb_down_means_the_job_does_not_run(
    services: LocalServices,
    clock: TestClock,
    engine_with: Callable[..., DonationEngine],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN due donations and a lock table that cannot be reached
    original = _seed(services, clock, 3)

    # WHEN the schedule fires
    with pytest.raises(LockUnavailableError):
        invoke(engine_with(LOCK_TABLE_NAME="table-that-is-down"), monkeypatch)

    # THEN nothing reached Stripe and nothing was claimed
    assert services.stripe.state.request_count == 0
    assert services.database["scheduled_donations"].count_documents({"lastClaimedAt": {"$exists": True}}) == 0
    invariants = check_invariants(services, original)
    invariants.assert_exactly_once()
    record_scenario(
        "dynamodb_unreachable", "the lock table cannot be reached", invariants, "refused to run; 0 charges"
    )


def test_a_429_storm_is_ridden_out_with_backoff_and_no_donation_fails(
    services: LocalServices,
    clock: TestClock,
    engine_with: Callable[..., DonationEngine],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN 20 due donations and a Stripe limit of 10 requests/s, while the job is configured for 50/s
    original = _seed(services, clock, 20)
    services.stripe.state.set_rate_limit(10)
    engine = engine_with(real_sleep=True, STRIPE_MAX_RPS="50", MAX_CONCURRENCY="8", STRIPE_RETRY_ATTEMPTS="8")

    # WHEN the job runs
    summary = invoke(engine, monkeypatch)
    limited = services.stripe.state.rate_limited_count
    services.stripe.state.set_rate_limit(None)

    # THEN requests were answered 429 and retried, the circuit stayed closed, and every donation succeeded
    assert limited > 0
    assert summary["status"] == "completed"
    assert (summary["succeeded"], summary["failed"]) == (20, 0)
    assert summary["retried"] > 0
    invariants = check_invariants(services, original)
    invariants.assert_exactly_once()
    record_scenario(
        "stripe_429_storm",
        "Stripe allows 10 requests/s; the job is configured for 50/s",
        invariants,
        f"{limited} answers were 429; {summary['retried']} donations retried; "
        "20/20 succeeded; circuit closed",
    )


def test_a_5xx_burst_opens_the_circuit_which_recovers_within_the_run(
    services: LocalServices,
    clock: TestClock,
    engine_with: Callable[..., DonationEngine],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN 6 due donations and Stripe failing with 500 on the next 10 requests
    original = _seed(services, clock, 6)
    services.stripe.state.inject_faults(*[Fault("http_500") for _ in range(10)])
    engine = engine_with(CIRCUIT_BREAKER_THRESHOLD="5", CIRCUIT_COOL_DOWN_SECONDS="0.05", MAX_CONCURRENCY="1")

    # WHEN the job runs through the burst
    during = invoke(engine, monkeypatch)

    # THEN the circuit opened, cooled down, probed until Stripe answered, and the run charged all once
    assert during["status"] == "completed"
    assert (during["failed"], during["succeeded"]) == (0, 6)
    invariants = check_invariants(services, original)
    invariants.assert_exactly_once()
    assert invariants.successful_charges == 6
    record_scenario(
        "stripe_5xx_burst",
        "Stripe answers 500 to 10 requests in a row (threshold 5)",
        invariants,
        "circuit opened, probed after growing cool-downs, closed; run completed, 0 donor failures",
    )


def test_slow_stripe_answers_are_waited_for_not_retried(
    services: LocalServices,
    clock: TestClock,
    engine_with: Callable[..., DonationEngine],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN 6 due donations and Stripe answering in 300 ms
    original = _seed(services, clock, 6)
    services.stripe.state.set_latency(300)

    # WHEN the job runs
    summary = invoke(engine_with(MAX_CONCURRENCY="3"), monkeypatch)
    services.stripe.state.set_latency(0)

    # THEN all succeeded with no retry
    assert (summary["succeeded"], summary["retried"]) == (6, 0)
    invariants = check_invariants(services, original)
    invariants.assert_exactly_once()
    record_scenario(
        "stripe_slow", "Stripe answers every request in 300 ms", invariants, "6/6 succeeded, 0 retries"
    )


def test_a_stripe_limit_below_the_configured_rate_is_learned_and_no_donation_fails(
    services: LocalServices,
    clock: TestClock,
    engine_with: Callable[..., DonationEngine],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN 80 due donations, a test-mode Stripe allowing 25 requests/s, and a job configured for 100/s
    original = _seed(services, clock, 80)
    services.stripe.state.set_rate_limit(25)
    engine = engine_with(real_sleep=True, STRIPE_MAX_RPS="100", STRIPE_RETRY_ATTEMPTS="6")

    # WHEN the job runs
    summary = invoke(engine, monkeypatch)
    limited = services.stripe.state.rate_limited_count
    services.stripe.state.set_rate_limit(None)

    # THEN it backed off (its limiter sits below 100/s now), and every donation succeeded once
    assert (summary["succeeded"], summary["failed"]) == (80, 0)
    assert engine._deps.payments._limiter.rate < 100  # type: ignore[attr-defined]
    invariants = check_invariants(services, original)
    invariants.assert_exactly_once()
    record_scenario(
        "stripe_limit_below_configured",
        "Stripe allows 25 requests/s (test mode); the job is configured for 100/s",
        invariants,
        f"{limited} answers were 429; limiter adapted; 80/80 succeeded",
    )
