"""Why a donation would or would not be charged by a run now, from the engine's own rules: `validate`, the
twin-id refusal, `catch_up` (the period), and `charge_rules.plan` (the next request of an open charge).

Reads only. Periods are named as under MISSED_PERIODS=latest, the default; under `all` a schedule catching up
is charged for its oldest due period, and may wait for CATCH_UP_MIN_INTERVAL_HOURS.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from donation_processor.adapters.donation_store import MongoDonationStore
from donation_processor.catch_up import CatchUpPolicy, WaitForInterval
from donation_processor.charge_intent import ChargeIntent
from donation_processor.charge_rules import ChargePolicy, NotYet, ScheduleState, Send, Stopped, plan
from donation_processor.ports import Document
from donation_processor.schedule import period_key
from donation_processor.validation import InvalidDonation, read_schedule, validate
from donation_processor.work_claims import TWIN_IDS, charge_period
from donations_cli.donation_report import iso, money

ASSUMED_POLICY = CatchUpPolicy()
ASSUMPTION = "periods as under MISSED_PERIODS=latest, the default"
# `plan` reads only the idempotency window of a policy; the dunning figures do not change its answer.
_PLAN_POLICY = ChargePolicy(max_attempts=1, dunning_schedule_days=(1,), retry_attempts=0)


@dataclass(frozen=True)
class Verdict:
    due: bool
    why: str
    charge: dict[str, Any] | None = None  # kind, period, amount (minor units) and currency

    def as_dict(self, donation_id: str) -> dict[str, Any]:
        return {"id": donation_id, "due": self.due, "why": self.why, "charge": self.charge}


def _charge(kind: str, period: str, amount: int, currency: str) -> dict[str, Any]:
    return {"kind": kind, "period": period, "amount": money(amount, currency)}


def for_intent(intent: ChargeIntent, document: Document | None, now: datetime) -> Verdict:
    """An open charge intent: what the next run does with it."""
    period = intent.period
    expires = intent.lease_expires_at
    if intent.lease is not None and expires is not None and expires > now:
        return Verdict(
            False,
            f"its open charge of period {period} is held by run {intent.lease.run_id} until {iso(expires)}",
        )
    view = read_schedule(document) if document is not None else None
    state = None if view is None else ScheduleState(view.active, view.payment_method_id)
    step = plan(intent, state, now, _PLAN_POLICY)
    if isinstance(step, NotYet):
        return Verdict(
            False, f"not yet due: the open charge of period {period} has its next attempt at {iso(step.at)}"
        )
    if isinstance(step, Stopped):
        return Verdict(
            False,
            f"the open charge of period {period} would be given up without a charge: the schedule is "
            "deleted, not active, or has no usable payment method",
        )
    if not isinstance(step, Send):
        return Verdict(
            False,
            f"the open charge of period {period} has an attempt whose answer never arrived: a run looks its "
            "PaymentIntent up; no new charge",
        )
    if not step.new:
        return Verdict(
            True,
            f"re-sends attempt {step.attempt.number} of period {period} (its answer never arrived; "
            "Stripe charges at most once per key)",
            _charge("resend", period, intent.amount, intent.currency),
        )
    return Verdict(
        True,
        f"attempt {step.attempt.number} of period {period} with {step.attempt.payment_method_id}",
        _charge("dunning retry", period, intent.amount, intent.currency),
    )


def for_schedule(document: Document, twins: Collection[str], now: datetime) -> Verdict:
    """A schedule without an open charge intent: would the next run open a period for it?"""
    kept = MongoDonationStore.bookkeeping(document)
    status = MongoDonationStore.schedule_status(document)
    if status == "payment_failed":
        return Verdict(
            False,
            f"stopped (payment_failed) after {kept.stop_reason or 'a reason not recorded'}; "
            "`donations redrive` once the cause is fixed",
        )
    if status == "invalid":
        return Verdict(
            False, f"marked invalid: {kept.invalid_reason or kept.stop_reason or 'reason not recorded'}"
        )
    if status != "active":
        return Verdict(False, f"status is {status!r}: only active schedules are charged")
    if kept.open_period is not None:
        return Verdict(False, f"held for period {kept.open_period}, whose charge intent is not open")
    next_run = read_schedule(document).next_run_at
    if next_run is not None and next_run > now:
        return Verdict(False, f"not yet due: nextRunAt is {iso(next_run)}")
    try:
        donation = validate(document)
    except InvalidDonation as error:
        return Verdict(False, f"invalid document: {error}")
    if donation.id in twins:
        return Verdict(False, TWIN_IDS)
    if kept.claim_expires_at is not None and kept.claim_expires_at > now:
        return Verdict(False, f"claimed by run {kept.claimed_by} until {iso(kept.claim_expires_at)}")
    if donation.legacy is not None:
        key = period_key(donation.legacy.period_start)
        return Verdict(
            True,
            f"due: period {key}, left in flight by an earlier version (the run adopts it)",
            _charge("adopted period", key, donation.amount, donation.currency),
        )
    period = charge_period(ASSUMED_POLICY, donation, now)
    if isinstance(period, WaitForInterval):
        return Verdict(False, f"catching up: waits until {iso(period.until)}")
    key = period_key(period.due_at)
    missed = f"; {len(period.missed)} earlier periods recorded as missed" if period.missed else ""
    return Verdict(
        True,
        f"due: period {key}{missed}",
        _charge("new period", key, donation.amount, donation.currency),
    )
