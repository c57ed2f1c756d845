"""Claim the next batch of work: unresolved intents first, then due schedules, each given its charge
intent before any Stripe request is sent (one round trip for the whole batch). A schedule behind by whole
periods gets the intent MISSED_PERIODS names (catch_up.py), after its missed periods are written down."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from donation_processor.catch_up import CatchUpPolicy, ChargePeriod, WaitForInterval, catch_up
from donation_processor.charge_intent import Attempt, NewIntent
from donation_processor.charge_processor import CatchUpLater, IntentWork, InvalidWork, Work
from donation_processor.charge_rules import IDEMPOTENCY_WINDOW
from donation_processor.idempotency import attempt_key, payment_intent_key
from donation_processor.ports import Claim, Document, DonationStorePort
from donation_processor.schedule import period_key
from donation_processor.validation import ChargeableDonation, InvalidDonation, validate

TWIN_IDS = (
    "another scheduled donation has the same id as text (an ObjectId and its hex string): both are refused"
)


def new_intent(
    donation: ChargeableDonation, now: datetime, period_due_at: datetime | None = None
) -> NewIntent:
    """The intent for the period due at period_due_at (by default the one the schedule names now), or for the
    one an earlier version left in flight."""
    legacy = donation.legacy
    due_at = legacy.period_start if legacy is not None else period_due_at or donation.next_run_at
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


def charge_period(
    policy: CatchUpPolicy, donation: ChargeableDonation, now: datetime
) -> ChargePeriod | WaitForInterval:
    """The period a claimed schedule (with no period left in flight by an earlier version) is charged for."""
    return catch_up(
        policy, donation.next_run_at, donation.frequency, donation.anchor_day, donation.last_charged_at, now
    )


def missed_entry(donation: ChargeableDonation, due_at: datetime) -> NewIntent:
    """A period the schedule fell behind on, to be recorded as missed: never attempted, so no attempt."""
    period = period_key(due_at)
    return NewIntent(
        scheduled_donation_id=donation.id,
        period=period,
        due_at=due_at,
        seen_next_run_at=donation.next_run_at,
        amount=donation.amount,
        currency=donation.currency,
        customer_id=donation.customer_id,
        payment_method_id=donation.payment_method_id,
        creation_key=payment_intent_key(donation.id, period),
        donor_id=donation.donor_id,
        next_attempt_number=1,
    )


class WorkClaims:
    def __init__(
        self,
        store: DonationStorePort,
        clock: Callable[[], datetime],
        claim_lease_seconds: int,
        catch_up_policy: CatchUpPolicy | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._lease = timedelta(seconds=claim_lease_seconds)
        self._catch_up = catch_up_policy or CatchUpPolicy()

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
        missed: list[NewIntent] = []
        for document in documents:
            try:
                donation = validate(document)
            except InvalidDonation as error:
                work.append(InvalidWork(document, str(error)))
                continue
            if donation.id in twins:
                work.append(InvalidWork(document, TWIN_IDS))
                continue
            if donation.legacy is None:
                period = charge_period(self._catch_up, donation, now)
                if isinstance(period, WaitForInterval):
                    work.append(CatchUpLater(document, period.until))
                    continue
                intent = new_intent(donation, now, period.due_at)
                missed.extend(missed_entry(donation, due_at) for due_at in period.missed)
            else:
                intent = new_intent(donation, now)
                adopted = self._store.adopt_legacy(intent, donation.raw_id, claim, now, lease_until)
                if adopted is not None:
                    work.append(IntentWork(adopted, document, True))
                    continue
            waiting.append((len(work), document, donation, intent))
            work.append(None)
        # The missed periods go into the ledger before the intent: a crash in between leaves them written,
        # and the next run, recomputing the same periods from the same nextRunAt, writes nothing twice.
        recorded: dict[str, tuple[str, ...]] = {}
        if missed:
            written = self._store.record_missed_periods(missed, claim, now)
            for entry, new in zip(missed, written, strict=True):
                if new:
                    donation_id = entry.scheduled_donation_id
                    recorded[donation_id] = (*recorded.get(donation_id, ()), entry.period)
        opened = self._store.open_intents([intent for *_, intent in waiting], claim, now, lease_until)
        for (position, document, donation, intent), (charge, created) in zip(waiting, opened, strict=True):
            if not created and charge.lease == claim:
                # Its open intent is already being worked on by this run (found unresolved first).
                self._store.release(document.get("_id"), claim, None)
                continue
            if charge.legacy_record:
                # The period has a record from an earlier version: turn it into this period's intent.
                charge = self._store.adopt_legacy(intent, donation.raw_id, claim, now, lease_until) or charge
            work[position] = IntentWork(charge, document, True, recorded.get(donation.id, ()))
        return [item for item in work if item is not None]
