"""Claim the next batch of work: unresolved intents first, then due schedules, each given its charge
intent before any Stripe request is sent (one round trip for the whole batch)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from donation_processor.charge_intent import Attempt, NewIntent
from donation_processor.charge_processor import IntentWork, InvalidWork, Work
from donation_processor.charge_rules import IDEMPOTENCY_WINDOW
from donation_processor.idempotency import attempt_key, payment_intent_key
from donation_processor.ports import Claim, Document, DonationStorePort
from donation_processor.schedule import period_key
from donation_processor.validation import ChargeableDonation, InvalidDonation, validate

TWIN_IDS = (
    "another scheduled donation has the same id as text (an ObjectId and its hex string): both are refused"
)


def new_intent(donation: ChargeableDonation, now: datetime) -> NewIntent:
    """The intent for the period the schedule names now, or for the one an earlier version left in flight."""
    legacy = donation.legacy
    due_at = donation.next_run_at if legacy is None else legacy.period_start
    period = period_key(due_at)
    key = payment_intent_key(donation.id, period)
    attempts: tuple[Attempt, ...]
    if legacy is not None and legacy.payment_intent_id is not None:
        # The PaymentIntent exists; whether the last confirm an earlier version sent went through is unknown,
        # so the intent starts by retrieving it, and numbers its own attempts past every key used before.
        number = max(legacy.period_attempts + 1, 2)
        unknown = Attempt(
            number,
            attempt_key(key, number),
            donation.payment_method_id,
            now - 2 * IDEMPOTENCY_WINDOW,
            creates=False,
        )
        attempts, next_number = (unknown,), number + 1
    else:
        sent_at = (
            legacy.first_attempt_at if legacy is not None and legacy.first_attempt_at is not None else now
        )
        attempts, next_number = (Attempt(1, key, donation.payment_method_id, sent_at, creates=True),), 2
    return NewIntent(
        scheduled_donation_id=donation.id,
        period=period,
        due_at=due_at,
        seen_next_run_at=donation.next_run_at,
        amount=donation.amount,
        currency=donation.currency,
        customer_id=donation.customer_id,
        payment_method_id=donation.payment_method_id,
        creation_key=key,
        donor_id=donation.donor_id,
        payment_intent_id=legacy.payment_intent_id if legacy is not None else None,
        attempts=attempts,
        next_attempt_number=next_number,
        dunning_attempts=legacy.attempts if legacy is not None else 0,
    )


class WorkClaims:
    def __init__(
        self, store: DonationStorePort, clock: Callable[[], datetime], claim_lease_seconds: int
    ) -> None:
        self._store = store
        self._clock = clock
        self._lease = timedelta(seconds=claim_lease_seconds)

    def lease_until(self) -> datetime:
        return self._clock() + self._lease

    def next_batch(self, claim: Claim, room: int, only_ids: Sequence[str] | None) -> list[Work] | None:
        """Up to `room` items; [] when nothing is left, None when every id was taken by another run."""
        now = self._clock()
        lease_until = now + self._lease
        intents = self._store.claim_intents(now, claim, room, lease_until, only_ids)
        if intents:
            documents = self._store.schedules_for([intent.scheduled_donation_id for intent in intents])
            return [
                IntentWork(intent, documents.get(intent.scheduled_donation_id), False) for intent in intents
            ]
        ids = self._store.find_due_ids(now, claim.fence, room, only_ids)
        if not ids:
            return []
        claimed = self._store.claim(ids, claim, now, lease_until)
        if not claimed:
            return None
        return self._open(claimed, claim, now, lease_until)

    def _open(
        self, documents: Sequence[Document], claim: Claim, now: datetime, lease_until: datetime
    ) -> list[Work]:
        twins = self._store.ids_with_twins([document.get("_id") for document in documents])
        work: list[Work | None] = []
        waiting: list[tuple[int, Document, ChargeableDonation, NewIntent]] = []
        for document in documents:
            try:
                donation = validate(document)
            except InvalidDonation as error:
                work.append(InvalidWork(document, str(error)))
                continue
            if donation.id in twins:
                work.append(InvalidWork(document, TWIN_IDS))
                continue
            intent = new_intent(donation, now)
            if donation.legacy is not None:
                adopted = self._store.adopt_legacy(intent, donation.raw_id, claim, now, lease_until)
                if adopted is not None:
                    work.append(IntentWork(adopted, document, True))
                    continue
            waiting.append((len(work), document, donation, intent))
            work.append(None)
        opened = self._store.open_intents([intent for *_, intent in waiting], claim, now, lease_until)
        for (position, document, donation, intent), (charge, created) in zip(waiting, opened, strict=True):
            if not created and charge.lease == claim:
                # Its open intent is already being worked on by this run (found unresolved first).
                self._store.release(document.get("_id"), claim, None)
                continue
            if charge.legacy_record:
                # The period has a record from an earlier version: turn it into this period's intent.
                charge = self._store.adopt_legacy(intent, donation.raw_id, claim, now, lease_until) or charge
            work[position] = IntentWork(charge, document, True)
        return [item for item in work if item is not None]
