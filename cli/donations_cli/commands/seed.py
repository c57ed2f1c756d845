"""`donations seed N`: insert N due scheduled donations for load tests and demos.

Refuses anything that looks like production (see `production_reason`) unless --yes-this-is-not-production.
Documents carry no personal data and are tagged `seedBatch`, printed before the first insert, so a test
database can be cleaned with `db.scheduled_donations.deleteMany({seedBatch: "<tag>"})` even after Ctrl-C.
"""

from __future__ import annotations

import argparse
import random
import re
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from bson import ObjectId

from donation_processor.adapters.donation_store import SCHEDULED, MongoDonationStore
from donation_processor.adapters.mongo_connection import to_mongo_datetime
from donation_processor.currencies import STRIPE_CURRENCIES
from donation_processor.schedule import Frequency
from donations_cli.connections import Connections
from donations_cli.errors import EXIT_OK, Interrupted, UsageError
from donations_cli.mongodb_uri import hosts
from donations_cli.output import write_json
from donations_cli.progress import Progress, progress_enabled

BATCH_SIZE = 1000
MAX_COUNT = 10_000_000
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
SEEDED_BY = "donations-cli"


@dataclass(frozen=True)
class MixEntry:
    kind: str
    payment_method_id: str
    weight: int


# Stripe's test payment methods, weighted like a realistic month (the local Stripe server knows each).
DEMO_MIX: tuple[MixEntry, ...] = (
    MixEntry("succeeds", "pm_card_visa", 70),
    MixEntry("soft_decline_insufficient_funds", "pm_card_chargeDeclinedInsufficientFunds", 8),
    MixEntry("soft_decline_generic", "pm_card_chargeDeclined", 4),
    MixEntry("hard_decline_stolen_card", "pm_card_chargeDeclinedStolenCard", 3),
    MixEntry("hard_decline_lost_card", "pm_card_chargeDeclinedLostCard", 3),
    MixEntry("authentication_required", "pm_card_authenticationRequired", 4),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("count", type=int, help=f"how many donations to insert (1-{MAX_COUNT:,})")
    parser.add_argument(
        "--customer",
        action="append",
        default=None,
        metavar="CUS_ID",
        help="existing Stripe customer to charge (repeat to round-robin); default: generated ids "
        "<prefix><n>, which Stripe must know",
    )
    parser.add_argument("--customer-prefix", default="cus_seed", help="prefix of generated customer ids")
    parser.add_argument(
        "--payment-method", default="pm_card_visa", help="payment method id for every donation"
    )
    parser.add_argument("--mix", action="store_true", help="a demo mix of Stripe test payment methods")
    parser.add_argument("--amount", type=int, default=2500, help="minor units (default 2500)")
    parser.add_argument("--currency", default="usd")
    parser.add_argument("--frequency", default="monthly", choices=[item.value for item in Frequency])
    parser.add_argument(
        "--due-in-minutes",
        type=int,
        default=-1,
        help="nextRunAt relative to now; negative = already due (default -1)",
    )
    parser.add_argument("--random-seed", type=int, default=7, help="seed of the --mix draw")
    parser.add_argument(
        "--yes-this-is-not-production",
        action="store_true",
        help="seed even though MongoDB does not look local (a secret, or a host that is not localhost)",
    )


def production_reason(connections: Connections) -> str | None:
    """Why the target may be production, or None when it is clearly a local/test database.

    Deliberately simple and strict: a URI from Secrets Manager (how the deployed function is configured), a
    mongodb+srv:// URI (Atlas) or any host other than localhost, 127.0.0.1 or ::1 counts as production.
    """
    config = connections.config
    if config.mongodb_secret_name is not None:
        return f"the MongoDB URI comes from Secrets Manager ({config.mongodb_secret_name})"
    uri = config.mongodb_uri
    if uri is None:
        return None
    if uri.startswith("mongomock://"):
        return None
    if uri.startswith("mongodb+srv://"):
        return "MONGODB_URI is a mongodb+srv:// (DNS seed list) URI"
    remote = [host.name for host in hosts(uri) if host.name not in LOCAL_HOSTS]
    if remote:
        return f"MONGODB_URI names a host that is not local ({remote[0]})"
    return None


def build_document(
    *,
    customer_id: str,
    payment_method_id: str,
    amount: int,
    currency: str,
    frequency: str,
    next_run_at: datetime,
    batch: str,
) -> dict[str, Any]:
    """One scheduled donation in the shape the function reads (ids and amounts only, no personal data)."""
    return {
        "_id": ObjectId(),
        "stripeCustomerId": customer_id,
        "stripePaymentMethodId": payment_method_id,
        "amount": amount,
        "currency": currency,
        "frequency": frequency,
        "nextRunAt": to_mongo_datetime(next_run_at),
        "status": "active",
        "donorId": f"donor_{ObjectId()}",
        "seededBy": SEEDED_BY,
        "seedBatch": batch,
    }


def cleanup_command(batch: str) -> str:
    """The mongosh command that removes one seed batch."""
    return f'db.scheduled_donations.deleteMany({{seedBatch: "{batch}"}})'


def _check(args: argparse.Namespace) -> None:
    if not 1 <= args.count <= MAX_COUNT:
        raise UsageError(f"count must be between 1 and {MAX_COUNT:,}, got {args.count}")
    if args.amount <= 0:
        raise UsageError("--amount must be a positive integer in minor units")
    if args.currency not in STRIPE_CURRENCIES:
        raise UsageError(
            f"--currency must be a lower-case ISO 4217 code Stripe supports, got {args.currency!r}"
        )
    if not args.payment_method.startswith(("pm_", "card_", "src_")):
        raise UsageError("--payment-method must be a Stripe payment method id (pm_…)")
    for customer in args.customer or []:
        if not customer.startswith("cus_"):
            raise UsageError(f"--customer must be a Stripe customer id (cus_…), got {customer!r}")
    if not re.fullmatch(r"cus_[A-Za-z0-9]{0,40}", args.customer_prefix):
        raise UsageError("--customer-prefix must be cus_ followed by up to 40 letters or digits")


def _payment_methods(args: argparse.Namespace, count: int) -> Sequence[MixEntry]:
    if not args.mix:
        return [MixEntry("fixed", args.payment_method, 1)] * count
    rng = random.Random(args.random_seed)  # noqa: S311 - test data, not security
    weights = [entry.weight for entry in DEMO_MIX]
    # One of each kind first, so even a small seed shows every path; then the weighted draw.
    return [
        DEMO_MIX[index] if index < len(DEMO_MIX) else rng.choices(DEMO_MIX, weights=weights)[0]
        for index in range(count)
    ]


def run(args: argparse.Namespace, connections: Connections, out: TextIO, err: TextIO) -> int:
    _check(args)
    reason = production_reason(connections)
    if reason is not None and not args.yes_this_is_not_production:
        raise UsageError(
            f"refusing to seed: this may be production: {reason}. "
            "Pass --yes-this-is-not-production if it is a test database."
        )
    database = connections.database
    batch = uuid.uuid4().hex[:10]
    due = datetime.now(UTC) + timedelta(minutes=args.due_in_minutes)
    customers: list[str] = list(args.customer or [])
    entries = _payment_methods(args, args.count)
    kinds: Counter[str] = Counter()
    collection = database[SCHEDULED]
    with connections.mongo_errors("creating indexes"):
        MongoDonationStore(database).ensure_indexes()
    # The tag first: whatever happens next, the operator can find (and remove) what was inserted. With
    # --json it goes to stderr, so that stdout stays one JSON object.
    first = err if args.json else out
    first.write(
        f"seeding {args.count} scheduled donations in database {connections.config.mongodb_database}, "
        f"due {due.isoformat(timespec='seconds')} (seedBatch {batch})\n"
    )
    first.flush()
    progress = Progress("seed", args.count, stream=err, enabled=progress_enabled(args.progress, err))
    try:
        with progress:
            pending: list[dict[str, Any]] = []
            for index, entry in enumerate(entries):
                customer = (
                    customers[index % len(customers)]
                    if customers
                    else f"{args.customer_prefix}{batch}{index:08d}"
                )
                pending.append(
                    build_document(
                        customer_id=customer,
                        payment_method_id=entry.payment_method_id,
                        amount=args.amount,
                        currency=args.currency,
                        frequency=args.frequency,
                        next_run_at=due,
                        batch=batch,
                    )
                )
                kinds[entry.kind] += 1
                if len(pending) >= BATCH_SIZE or index == len(entries) - 1:
                    with connections.mongo_errors(f"inserting seed batch after {progress.done} donations"):
                        collection.insert_many(pending, ordered=False)
                    progress.advance(len(pending))
                    pending = []
    except KeyboardInterrupt:
        raise Interrupted(
            f"interrupted after {progress.done} of {args.count} donations (seedBatch {batch}); "
            f"to remove them: {cleanup_command(batch)}"
        ) from None
    if args.json:
        report = {
            "seeded": args.count,
            "database": connections.config.mongodb_database,
            "due": due.isoformat(timespec="seconds"),
            "seedBatch": batch,
            "cleanup": cleanup_command(batch),
            "amount": {"amount": args.amount, "currency": args.currency},
            "kinds": dict(sorted(kinds.items())),
        }
        write_json(out, report)
        return EXIT_OK
    out.write(f"seeded {args.count} scheduled donations (seedBatch {batch})\n")
    out.write(f"to remove them: {cleanup_command(batch)}\n")
    if args.mix:
        for kind, number in sorted(kinds.items()):
            out.write(f"  {kind:<34} {number}\n")
    return EXIT_OK
