"""The seed's two charging strategies, written honestly in Python with the same SDK calls as the engine.

Like the Node job they replace: read every due scheduled donation in one query, then for each one create a
confirmed off-session PaymentIntent under a per-donation deterministic idempotency key, and write a record
per answer (a success also moves ``nextRunAt`` on). No client-side rate limit, no retry of a 429: the SDK's
defaults (which retry connection errors, 409 and 5xx, not Stripe's rate-limit 429) are all they have.

- ``sequential``: one donation after the other.
- ``batch``: 50 at a time in parallel (``concurrent.futures``), then ``time.sleep(1)`` before the next 50.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import stripe

BATCH_SIZE = 50
BATCH_PAUSE_SECONDS = 1.0

type Outcome = Literal["succeeded", "declined", "rate_limited", "error"]


@dataclass(frozen=True)
class StrategyCharge:
    donation_id: str
    outcome: Outcome
    start: float  # epoch seconds around the create call
    end: float


def due_donations(database: Any, now: datetime, limit: int | None) -> list[dict[str, Any]]:
    query = {"status": "active", "nextRunAt": {"$lte": now.astimezone(UTC).replace(tzinfo=None)}}
    cursor = database["scheduled_donations"].find(query).sort("nextRunAt", 1)
    if limit is not None:
        cursor = cursor.limit(limit)
    return list(cursor)


def charge_one(client: stripe.StripeClient, database: Any, document: dict[str, Any]) -> StrategyCharge:
    donation_id = str(document["_id"])
    period = document["nextRunAt"].strftime("%Y-%m-%d")
    params: dict[str, Any] = {
        "amount": document["amount"],
        "currency": document["currency"],
        "customer": document["stripeCustomerId"],
        "payment_method": document["stripePaymentMethodId"],
        "confirm": True,
        "off_session": True,
        "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
        "metadata": {"scheduled_donation_id": donation_id, "period": period},
    }
    start = time.time()
    outcome: Outcome
    intent_id: str | None = None
    try:
        intent = client.v1.payment_intents.create(
            params=params,  # type: ignore[arg-type]
            options={"idempotency_key": f"seed-job:{donation_id}:{period}"},
        )
        outcome = "succeeded" if intent.status == "succeeded" else "declined"
        intent_id = intent.id
    except stripe.CardError:
        outcome = "declined"
    except stripe.RateLimitError:
        outcome = "rate_limited"
    except stripe.StripeError:
        outcome = "error"
    end = time.time()
    if outcome in ("succeeded", "declined"):
        now = datetime.now(UTC).replace(tzinfo=None)
        database["donations"].insert_one(
            {
                "scheduledDonationId": document["_id"],
                "period": period,
                "status": "succeeded" if outcome == "succeeded" else "failed",
                "paymentIntentId": intent_id,
                "amount": document["amount"],
                "currency": document["currency"],
                "createdAt": now,
            }
        )
        if outcome == "succeeded":
            database["scheduled_donations"].update_one(
                {"_id": document["_id"]},
                {"$set": {"nextRunAt": document["nextRunAt"] + timedelta(days=30), "lastChargedAt": now}},
            )
    return StrategyCharge(donation_id, outcome, start, end)


def run_sequential(
    client: stripe.StripeClient, database: Any, documents: Sequence[dict[str, Any]]
) -> list[StrategyCharge]:
    return [charge_one(client, database, document) for document in documents]


def run_batches(
    client: stripe.StripeClient,
    database: Any,
    documents: Sequence[dict[str, Any]],
    *,
    batch_size: int = BATCH_SIZE,
    pause_seconds: float = BATCH_PAUSE_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
) -> list[StrategyCharge]:
    charges: list[StrategyCharge] = []
    with ThreadPoolExecutor(max_workers=batch_size, thread_name_prefix="seed-batch") as pool:
        for offset in range(0, len(documents), batch_size):
            if offset:
                sleep(pause_seconds)
            batch = documents[offset : offset + batch_size]
            charges.extend(pool.map(lambda document: charge_one(client, database, document), batch))
    return charges
