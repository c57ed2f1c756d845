"""Fault-injection support: adapters that 'crash' at a chosen step, invariant checks, and the scenario ledger
from which docs/RELIABILITY.md is generated (set RELIABILITY_RESULTS to a path to write it).

Not a conftest.py on purpose: the shared tests/conftest.py is imported by name from test modules."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from donation_processor.ports import Claim, LockLease
from harness.local.seed import scheduled_donation
from harness.local.services import LocalServices


class SimulatedCrash(BaseException):
    """The Lambda process dies here. BaseException, so no `except Exception` in the engine can swallow it."""


@dataclass
class CrashSwitch:
    """Arms one crash at a named step. Once it fires the 'process' is dead: every thread dies at its next
    step (a Stripe call already sent still completes at Stripe, but its answer is lost)."""

    step: str | None = None
    fired: bool = False

    def maybe_crash(self, step: str) -> None:
        if self.fired:
            raise SimulatedCrash(f"dead after {self.step}")
        if self.step == step:
            self.fired = True
            raise SimulatedCrash(step)


class CrashingStore:
    """The real MongoDB store with crash points between the steps of a charge."""

    def __init__(self, inner: Any, switch: CrashSwitch) -> None:
        self._inner = inner
        self._switch = switch

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if not callable(attribute):
            return attribute

        def guarded(*args: Any, **kwargs: Any) -> Any:
            self._switch.maybe_crash(f"store.{name}")
            return attribute(*args, **kwargs)

        return guarded

    def claim(self, ids: Any, claim: Claim, now: datetime, lease_until: datetime) -> list[Mapping[str, Any]]:
        self._switch.maybe_crash("before_claim")
        documents: list[Mapping[str, Any]] = self._inner.claim(ids, claim, now, lease_until)
        self._switch.maybe_crash("after_claim")
        return documents

    def record_success(self, *args: Any) -> bool:
        self._switch.maybe_crash("before_record")
        won: bool = self._inner.record_success(*args)
        return won

    def record_pending(self, intent: Any, claim: Any, at: Any, failure: Any, now: Any) -> bool:
        # Without a failure this lets the intent go because the run is stopping. A dead process writes
        # nothing, this included: else the next run would find free the intents the crash left leased.
        self._switch.maybe_crash("before_failure_record" if failure is not None else "store.record_pending")
        won: bool = self._inner.record_pending(intent, claim, at, failure, now)
        return won

    def record_stop(self, *args: Any) -> bool:
        self._switch.maybe_crash("before_failure_record")
        won: bool = self._inner.record_stop(*args)
        return won

    def advance_schedule(self, *args: Any) -> Any:
        self._switch.maybe_crash("before_advance")
        return self._inner.advance_schedule(*args)


class CrashingLock:
    """The real DynamoDB lock; a dead process never renews or releases it, so the next run takes it over
    only after watching its record version stay unchanged for a whole lease."""

    def __init__(self, inner: Any, switch: CrashSwitch) -> None:
        self._inner = inner
        self._switch = switch

    def acquire(self, owner: str) -> LockLease:
        lease: LockLease = self._inner.acquire(owner)
        return lease

    def renew(self, lease: LockLease) -> LockLease:
        self._switch.maybe_crash("lock.renew")
        renewed: LockLease = self._inner.renew(lease)
        return renewed

    def raise_fence(self, lease: LockLease, floor: int) -> LockLease:
        self._switch.maybe_crash("lock.raise_fence")
        raised: LockLease = self._inner.raise_fence(lease, floor)
        return raised

    def release(self, lease: LockLease, last_run: Mapping[str, Any] | None = None) -> None:
        if self._switch.fired:
            return  # the process is gone
        self._switch.maybe_crash("before_lock_release")
        self._inner.release(lease, last_run=last_run)


class DyingPayments:
    """The real Stripe adapter; once the process is dead, an answer that arrives is lost with it."""

    def __init__(self, inner: Any, switch: CrashSwitch) -> None:
        self._inner = inner
        self._switch = switch

    def __getattr__(self, name: str) -> Any:
        call = getattr(self._inner, name)

        def guarded(*args: Any, **kwargs: Any) -> Any:
            self._switch.maybe_crash(f"payments.{name}")
            answer = call(*args, **kwargs)
            self._switch.maybe_crash(f"after_payments.{name}")
            return answer

        return guarded


class StallingPayments:
    """The real Stripe adapter, except that the first create waits until the test lets it go."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.stalled = threading.Event()
        self.resume = threading.Event()
        self._first = True
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def create_payment_intent(self, params: Mapping[str, Any], idempotency_key: str) -> Any:
        with self._lock:
            stall, self._first = self._first, False
        if stall:
            self.stalled.set()
            self.resume.wait(timeout=60)
        return self._inner.create_payment_intent(params, idempotency_key)


@dataclass
class Invariants:
    """What the ledgers say after a scenario."""

    charges_attempted: int
    successful_charges: int
    duplicate_charges: int
    lost_records: int
    duplicate_records: int
    schedules_advanced_wrong: int
    left_claimed: int
    failures_unaccounted: int
    backend: str = "mongomock"

    def assert_exactly_once(self) -> None:
        assert self.duplicate_charges == 0, self
        assert self.lost_records == 0, self
        assert self.duplicate_records == 0, self
        assert self.schedules_advanced_wrong == 0, self
        assert self.left_claimed == 0, self
        assert self.failures_unaccounted == 0, self


def check_invariants(services: LocalServices, original_next_run: Mapping[Any, datetime]) -> Invariants:
    """Compare Stripe's own ledger with MongoDB: one charge, one record, one schedule step per period."""
    state = services.stripe.state
    charges = state.charge_counts_by(metadata_keys=("scheduled_donation_id", "period"))
    attempted = sum(
        1
        for entry in state.requests_log
        if entry.method == "POST" and entry.path.startswith("/v1/payment_intents") and entry.status != 429
    )
    database = services.database
    records: dict[tuple[str, str], int] = {}
    for record in database["donations"].find({"status": "succeeded"}):
        key = (str(record["scheduledDonationId"]), record["period"])
        records[key] = records.get(key, 0) + 1
    lost = sum(1 for key in charges if records.get((str(key[0]), str(key[1])), 0) == 0)
    advanced_wrong = 0
    left_claimed = 0
    unaccounted = 0
    letters_parked = 0
    for document in database["scheduled_donations"].find():
        charged = sum(count for key, count in charges.items() if key[0] == str(document["_id"]))
        before = original_next_run.get(document["_id"])
        after = document["nextRunAt"]
        months_moved = (
            0 if before is None else (after.year * 12 + after.month) - (before.year * 12 + before.month)
        )
        # Seeded schedules are monthly: a charged period moves exactly one month; an uncharged one not at all.
        if (
            months_moved != (1 if charged else 0)
            and document.get("status") == "active"
            and not document.get("attempts")
        ):
            advanced_wrong += 1
        if "claimedBy" in document:
            left_claimed += 1
        if document.get("status") in ("invalid", "payment_failed") and "stopReason" not in document:
            unaccounted += 1
        letters_parked += "pendingDeadLetter" in document
    return Invariants(
        charges_attempted=attempted,
        successful_charges=sum(charges.values()),
        duplicate_charges=sum(count - 1 for count in charges.values() if count > 1),
        lost_records=lost,
        duplicate_records=sum(count - 1 for count in records.values() if count > 1),
        schedules_advanced_wrong=advanced_wrong,
        left_claimed=left_claimed,
        failures_unaccounted=unaccounted,
        backend="mongomock" if services.mongodb_uri.startswith("mongomock") else "mongodb",
    )


@dataclass
class ScenarioRecord:
    scenario: str
    fault: str
    charges_attempted: int
    successful_charges: int
    duplicate_charges: int
    lost_records: int
    outcome: str
    backend: str


_RECORDS: list[ScenarioRecord] = []


def record_scenario(scenario: str, fault: str, invariants: Invariants, outcome: str) -> None:
    """Each scenario reports its figures here; the session writes them out for docs/RELIABILITY.md."""
    _RECORDS.append(
        ScenarioRecord(
            scenario=scenario,
            fault=fault,
            charges_attempted=invariants.charges_attempted,
            successful_charges=invariants.successful_charges,
            duplicate_charges=invariants.duplicate_charges,
            lost_records=invariants.lost_records,
            outcome=outcome,
            backend=invariants.backend,
        )
    )


@pytest.fixture(scope="session", autouse=True)
def write_reliability_results() -> Iterator[None]:
    yield
    target = os.environ.get("RELIABILITY_RESULTS")
    if target and _RECORDS:
        Path(target).write_text(json.dumps([asdict(record) for record in _RECORDS], indent=2))


def seed_due(services: LocalServices, now: datetime, count: int, **fields: Any) -> dict[Any, datetime]:
    """`count` donations due an hour before `now`, each with its own customer; nextRunAt by id."""
    documents = [
        scheduled_donation(
            customer_id=services.stripe.state.create_customer(),
            next_run_at=now - timedelta(hours=1),
            **fields,
        )
        for _ in range(count)
    ]
    services.database["scheduled_donations"].insert_many(documents)
    return {document["_id"]: document["nextRunAt"] for document in documents}


def charges_per_cycle_violations(
    services: LocalServices, min_gap_days: int = 14
) -> list[tuple[str, str, str]]:
    """From Stripe's own ledger: every pair of consecutive successful charges of one scheduled donation
    whose periods are less than `min_gap_days` apart, as (scheduled_donation_id, earlier, later) periods.

    Seeded schedules are monthly, so two charges that close together are two charges in one billing cycle
    (the same period charged twice is a gap of 0 days). A charge without the metadata fails loudly."""
    periods: dict[str, list[datetime]] = {}
    for charge in services.stripe.state.charges():
        donation_id = charge.metadata.get("scheduled_donation_id")
        period = charge.metadata.get("period")
        assert donation_id, f"{charge.payment_intent_id} has no scheduled_donation_id metadata"
        assert period, f"{charge.payment_intent_id} has no period metadata"
        periods.setdefault(donation_id, []).append(datetime.strptime(period, "%Y-%m-%d"))
    violations: list[tuple[str, str, str]] = []
    for donation_id, dates in periods.items():
        dates.sort()
        for index in range(1, len(dates)):
            earlier, later = dates[index - 1], dates[index]
            if later - earlier < timedelta(days=min_gap_days):
                violations.append((donation_id, f"{earlier:%Y-%m-%d}", f"{later:%Y-%m-%d}"))
    return violations


def unrecorded_charges(services: LocalServices) -> list[str]:
    """PaymentIntent ids of successful Stripe charges with no succeeded record in MongoDB's donations."""
    recorded = {
        record.get("paymentIntentId")
        for record in services.database["donations"].find({"status": "succeeded"}, {"paymentIntentId": 1})
    }
    return [
        charge.payment_intent_id
        for charge in services.stripe.state.charges()
        if charge.payment_intent_id not in recorded
    ]
