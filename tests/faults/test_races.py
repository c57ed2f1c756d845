"""Several invocations at once over the same data: each period is charged once, the losers skip."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest

from donation_processor.adapters.mongo_connection import get_database
from donation_processor.config import load_settings
from donation_processor.engine import DonationEngine
from donation_processor.invocation import RunRequest
from donation_processor.summary import RunSummary
from donation_processor.wiring import build_engine
from harness.local.mongo_wire_server import start_mongo_wire_server
from harness.local.services import LocalServices
from tests.support.clock import TestClock
from tests.support.fault_injection import check_invariants, record_scenario, seed_due
from tests.support.fault_injection import (
    write_reliability_results as write_reliability_results,  # autouse fixture
)
from tests.support.practice import forget_cached_client

pytestmark = pytest.mark.faults

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONTENDERS = 6


def test_concurrent_containers_charge_each_period_once_and_the_losers_skip(
    services: LocalServices, clock: TestClock
) -> None:
    # GIVEN 40 due donations, a slow Stripe, and six warm containers (separate engines and clients)
    original = seed_due(services, clock.now, 40)
    # Slow enough (40 charges, 4 at a time, 100 ms each: about 1 s) that every contender arrives while the
    # winner still holds the lock, even on a loaded machine.
    services.stripe.state.set_latency(100)
    env = services.environment(MAX_CONCURRENCY="4")
    winner_done = threading.Event()

    def nap(seconds: float) -> None:
        # A contender that finds the lock held reads it every 5 s for a lease and skips once its record
        # version changes. The winner's LeaseKeeper renews only every 40 s of real time, so on the test
        # clock (no real wait) the contender would see no renewal and take a live winner's lock over.
        # Instead its nap lasts until the winner has finished: the winner's release writes a new record
        # version between two of the contender's polls, so the contender sees the winner alive and skips.
        winner_done.wait(timeout=60)
        clock.sleep(seconds)

    saved = dict(os.environ)
    os.environ.update(env)
    try:
        engines: list[DonationEngine] = [
            build_engine(load_settings(env), clock=clock, lock_monotonic=clock.monotonic, lock_sleep=nap)
            for _ in range(CONTENDERS)
        ]
    finally:
        os.environ.clear()
        os.environ.update(saved)
    barrier = threading.Barrier(CONTENDERS)
    summaries: list[RunSummary] = []

    def invoke(engine: DonationEngine) -> None:
        barrier.wait()
        try:
            summary = engine.run(RunRequest(source="schedule"), lambda: 900_000)
        except BaseException:
            winner_done.set()  # let the others stop watching; the test fails on the missing summary
            raise
        summaries.append(summary)
        if summary.status != "skipped_locked":
            winner_done.set()

    # WHEN the six invocations start at the same moment
    threads = [threading.Thread(target=invoke, args=(engine,)) for engine in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    services.stripe.state.set_latency(0)

    # THEN one run did the work, the others skipped on the lock, and each period was charged once
    statuses = sorted(summary.status for summary in summaries)
    assert statuses == ["completed"] + ["skipped_locked"] * (CONTENDERS - 1)
    invariants = check_invariants(services, original)
    invariants.assert_exactly_once()
    assert invariants.successful_charges == 40
    record_scenario(
        "race_threads",
        f"{CONTENDERS} invocations in one process start at once over 40 due donations",
        invariants,
        f"1 completed, {CONTENDERS - 1} skipped_locked; 40 charges for 40 periods",
    )


_CHILD = """
import json
import app
from harness.local.lambda_context import LocalLambdaContext
event = json.load(open("events/scheduled.json"))
print("SUMMARY " + json.dumps(app.lambda_handler(event, LocalLambdaContext(aws_request_id="race"))))
"""


@pytest.fixture
def shared_mongodb() -> Iterator[tuple[str, str]]:
    """A MongoDB that separate processes share, and what it is: MONGODB_TEST_URI's server, or else the
    practice stand-in (mongomock behind the wire protocol, every command applied whole, one at a time)."""
    if uri := os.environ.get("MONGODB_TEST_URI"):
        yield uri, "mongodb"
        return
    with start_mongo_wire_server() as server:
        yield server.uri, "mongomock (wire server)"
        forget_cached_client(server.uri)


def test_concurrent_processes_charge_each_period_once(
    services: LocalServices, clock: TestClock, shared_mongodb: tuple[str, str]
) -> None:
    # GIVEN one MongoDB database shared by four separate handler processes, with 30 due donations
    uri, backend = shared_mongodb
    database_name = f"race_{uuid.uuid4().hex[:8]}"
    services.mongodb_uri, services.mongodb_database = uri, database_name
    original = seed_due(services, datetime.now(clock.now.tzinfo), 30)
    services.stripe.state.set_latency(20)
    env = {
        **os.environ,
        **services.environment(),
        "PYTHONPATH": os.pathsep.join(
            str(PROJECT_ROOT / part) for part in ("layers/shared", "functions/scheduled_donations", ".")
        ),
    }

    # WHEN four processes invoke the handler at once
    processes = [
        subprocess.Popen(  # noqa: S603 - our own interpreter running our own handler
            [sys.executable, "-c", _CHILD], cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    outputs = [process.communicate(timeout=180)[0] for process in processes]
    services.stripe.state.set_latency(0)

    # THEN each period was charged once and all but one process skipped
    summaries = [
        json.loads(line.split(" ", 1)[1])
        for out in outputs
        for line in out.splitlines()
        if line.startswith("SUMMARY ")
    ]
    try:
        assert len(summaries) == 4
        assert sum(summary["succeeded"] for summary in summaries) == 30
        invariants = replace(check_invariants(services, original), backend=backend)
        invariants.assert_exactly_once()
        record_scenario(
            "race_processes",
            "4 handler processes start at once over 30 due donations, one database",
            invariants,
            f"statuses {sorted(s['status'] for s in summaries)}; 30 charges for 30 periods",
        )
    finally:
        get_database(uri, database_name).client.drop_database(database_name)
