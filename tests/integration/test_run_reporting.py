"""What a run reports when it ends badly: the time budget during the last charges, a crash, a dry run."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from contextlib import redirect_stdout
from datetime import timedelta
from typing import Any

import pytest

from donation_processor.engine import DonationEngine, EngineDependencies
from donation_processor.exceptions import StoreError
from donation_processor.invocation import RunRequest
from donation_processor.observability import metrics, publish_run_metrics
from harness.local.aws_local import dynamodb_client
from harness.local.emf import emitted_metrics
from harness.local.seed import scheduled_donation
from harness.local.services import LocalServices
from harness.local.stripe_server import Fault
from tests.support.clock import TestClock

SCHEDULED = RunRequest(source="schedule")


def _seed(services: LocalServices, clock: TestClock, count: int = 1) -> None:
    services.database["scheduled_donations"].insert_many(
        [
            scheduled_donation(
                customer_id=services.stripe.state.create_customer(),
                next_run_at=clock.now - timedelta(hours=1),
            )
            for _ in range(count)
        ]
    )


def _last_run(services: LocalServices) -> dict[str, Any]:
    item = dynamodb_client(services.moto.endpoint_url).get_item(
        TableName=services.lock_table_name, Key={"lockId": {"S": "scheduled-donations"}}
    )["Item"]
    last: dict[str, Any] = json.loads(item["lastRun"]["S"])
    return last


def test_retries_stop_when_the_time_budget_runs_out_while_the_last_charges_finish(
    services: LocalServices, clock: TestClock, make_engine: Callable[..., DonationEngine]
) -> None:
    # GIVEN one due donation, a Stripe answering 503 again and again, real backoff between retries,
    # and a Lambda whose time runs out a moment after the run started
    _seed(services, clock)
    services.stripe.state.inject_faults(*[Fault("http_503") for _ in range(20)])
    engine = make_engine(
        sleep=time.sleep, STRIPE_RETRY_ATTEMPTS="8", CIRCUIT_BREAKER_THRESHOLD="50", TIME_MARGIN_SECONDS="60"
    )
    deadline = time.monotonic() + 1.0

    # WHEN the run starts, claims it, and its time is up while the charge is still being retried
    summary = engine.run(SCHEDULED, lambda: 300_000 if time.monotonic() < deadline else 10_000)

    # THEN it stopped retrying instead of running past the margin, and reported a partial run
    services.stripe.state.clear_faults()
    assert summary.status == "partial"
    assert services.stripe.state.request_count < 9
    assert services.stripe.state.charges() == []
    document = services.database["scheduled_donations"].find_one()
    assert document is not None
    assert "claimedBy" not in document


class FailingRecords:
    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def record_success(self, *args: Any) -> bool:
        raise StoreError("simulated MongoDB outage")


def test_a_run_that_fails_leaves_failed_as_the_last_run_status(
    services: LocalServices, clock: TestClock, make_engine: Callable[..., DonationEngine]
) -> None:
    # GIVEN a due donation and a MongoDB that refuses the record
    _seed(services, clock)
    healthy = make_engine()
    deps = healthy._deps
    broken = DonationEngine(
        healthy._settings,
        EngineDependencies(deps.lock, FailingRecords(deps.store), deps.payments, deps.dead_letters),
        clock=clock,
        sleep=lambda _s: None,
    )

    # WHEN the run fails
    with pytest.raises(StoreError):
        broken.run(SCHEDULED, lambda: 900_000)

    # THEN the lock is free again and what operators see as the last run says it failed
    assert _last_run(services)["status"] == "failed"
    assert healthy.run(SCHEDULED, lambda: 900_000).status == "completed"
    assert _last_run(services)["status"] == "completed"


def test_a_dry_run_emits_no_donation_counts_or_amounts(
    services: LocalServices, clock: TestClock, make_engine: Callable[..., DonationEngine]
) -> None:
    # GIVEN three due donations
    _seed(services, clock, 3)

    # WHEN a dry run's summary is published as metrics
    summary = make_engine().run(RunRequest(dry_run=True), lambda: 900_000)
    captured = io.StringIO()
    with redirect_stdout(captured):
        publish_run_metrics(summary)
        metrics.flush_metrics()

    # THEN only its duration is emitted: nothing a dashboard or the failure-rate alarm would count
    assert summary.due == 3
    assert set(emitted_metrics(captured.getvalue())) == {"RunDurationMs"}
