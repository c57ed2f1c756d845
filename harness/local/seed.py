"""Scheduled-donation documents for the demo, tests and benchmark: a realistic mix, no personal data."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo.database import Database

SUCCEEDS = "pm_card_visa"
INSUFFICIENT_FUNDS = "pm_card_chargeDeclinedInsufficientFunds"
GENERIC_DECLINE = "pm_card_chargeDeclined"
STOLEN_CARD = "pm_card_chargeDeclinedStolenCard"
LOST_CARD = "pm_card_chargeDeclinedLostCard"
AUTHENTICATION_REQUIRED = "pm_card_authenticationRequired"


def naive_utc(moment: datetime) -> datetime:
    """How pymongo hands datetimes back; the seed stores the same shape."""
    return moment.astimezone(UTC).replace(tzinfo=None)


def scheduled_donation(
    *,
    customer_id: str,
    next_run_at: datetime,
    payment_method_id: str = SUCCEEDS,
    amount: int = 2500,
    currency: str = "usd",
    frequency: str = "monthly",
    status: str = "active",
    donation_id: Any = None,
    **extra: Any,
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "_id": donation_id if donation_id is not None else ObjectId(),
        "stripeCustomerId": customer_id,
        "stripePaymentMethodId": payment_method_id,
        "amount": amount,
        "currency": currency,
        "frequency": frequency,
        "nextRunAt": naive_utc(next_run_at),
        "status": status,
        "donorId": f"donor_{ObjectId()}",
    }
    document.update(extra)
    return document


@dataclass(frozen=True)
class MixEntry:
    kind: str
    weight: int
    build: Callable[[str, datetime, random.Random], dict[str, Any]]


def _valid(payment_method: str) -> Callable[[str, datetime, random.Random], dict[str, Any]]:
    return lambda customer, due, _rng: scheduled_donation(
        customer_id=customer, next_run_at=due, payment_method_id=payment_method
    )


def _malformed(customer: str, due: datetime, rng: random.Random) -> dict[str, Any]:
    choices: list[dict[str, Any]] = [
        {"stripePaymentMethodId": None},
        {"amount": -500},
        {"amount": 12.5},
        {"currency": "xxx"},
        {"frequency": "daily"},
    ]
    broken = rng.choice(choices)
    document = scheduled_donation(customer_id=customer, next_run_at=due)
    document.update(broken)
    return document


DEMO_MIX: tuple[MixEntry, ...] = (
    MixEntry("succeeds", 70, _valid(SUCCEEDS)),
    MixEntry("soft_decline_insufficient_funds", 8, _valid(INSUFFICIENT_FUNDS)),
    MixEntry("soft_decline_generic", 4, _valid(GENERIC_DECLINE)),
    MixEntry("hard_decline_stolen_card", 3, _valid(STOLEN_CARD)),
    MixEntry("hard_decline_lost_card", 3, _valid(LOST_CARD)),
    MixEntry("authentication_required", 4, _valid(AUTHENTICATION_REQUIRED)),
    MixEntry("malformed", 8, _malformed),
)


def seed_donations(
    database: Database[Any],
    create_customer: Callable[[], str],
    count: int,
    *,
    now: datetime | None = None,
    mix: tuple[MixEntry, ...] = DEMO_MIX,
    seed: int = 7,
    batch_size: int = 1000,
) -> Counter[str]:
    """Insert `count` due scheduled donations drawn from `mix`; returns how many of each kind."""
    rng = random.Random(seed)
    moment = now or datetime.now(UTC)
    kinds: Counter[str] = Counter()
    weights = [entry.weight for entry in mix]
    pending: list[dict[str, Any]] = []
    for index in range(count):
        # One of each kind first, so even a small demo shows every path; then the weighted mix.
        entry = mix[index] if index < len(mix) else rng.choices(mix, weights=weights)[0]
        due = moment - timedelta(minutes=1 + index % 600)
        pending.append(entry.build(create_customer(), due, rng))
        kinds[entry.kind] += 1
        if len(pending) >= batch_size:
            database["scheduled_donations"].insert_many(pending)
            pending = []
    if pending:
        database["scheduled_donations"].insert_many(pending)
    return kinds
