"""Dead letters: what an operator needs to act on a persistent failure, parked in MongoDB until SQS has it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from donation_processor.charge_outcome import StripeFailure
from donation_processor.dead_letter_reasons import DeadLetterReason
from donation_processor.exceptions import DeadLetterSendError, StoreError
from donation_processor.observability import logger
from donation_processor.ports import DeadLetterPort, DonationStorePort, ParkedLetter

_MAX_TEXT = 300


def plain_value(value: object, limit: int = 64) -> object:
    """Only simple values reach a dead letter; anything else (a nested operator, a huge string) is dropped."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return value[:limit]
    return None


def build_letter(
    *,
    reason: DeadLetterReason,
    donation_id: str,
    donor_id: object,
    customer_id: object,
    amount: object,
    currency: object,
    run_id: str,
    now: datetime,
    attempts: int,
    period: str | None = None,
    idempotency_key: str | None = None,
    failure: StripeFailure | None = None,
    message: str | None = None,
    payment_intent_id: str | None = None,
) -> dict[str, Any]:
    """The dead letter's JSON body. Ids, amounts and error details only: no card data, no names, no e-mail."""
    return {
        # Unique per failure (the run that met it), stable across re-sends of the same parked letter.
        "deadLetterId": f"{donation_id}:{period or 'no-period'}:{reason}:{run_id}",
        "reason": str(reason),
        "scheduledDonationId": donation_id,
        "donorId": plain_value(donor_id),
        "stripeCustomerId": plain_value(customer_id),
        "amount": plain_value(amount),
        "currency": plain_value(currency, limit=8),
        "period": period,
        "idempotencyKey": idempotency_key,
        "paymentIntentId": payment_intent_id or (failure.payment_intent_id if failure else None),
        "errorType": failure.error_type if failure else "invalid_document",
        "code": failure.code if failure else None,
        "declineCode": failure.decline_code if failure else None,
        "message": (message or (failure.message if failure else ""))[:_MAX_TEXT],
        "attempts": attempts,
        "runId": run_id,
        "failedAt": now.isoformat(),
    }


class DeadLetterCourier:
    """Sends parked letters and clears them only after SQS accepted them: at least once, never lost."""

    def __init__(self, store: DonationStorePort, queue: DeadLetterPort) -> None:
        self._store = store
        self._queue = queue

    def deliver(self, parked: ParkedLetter) -> bool:
        try:
            self._queue.send(parked.letter)
        except DeadLetterSendError as error:
            logger.warning(
                "dead letter parked in MongoDB",
                dead_letter_id=str(parked.letter.get("deadLetterId"))[:300],
                error=str(error),
            )
            return False
        self._store.clear_dead_letter(parked)
        return True

    def flush_parked(self, limit: int = 500) -> tuple[int, int]:
        """Deliver letters parked by earlier runs; returns (delivered, still parked)."""
        try:
            parked = self._store.pending_dead_letters(limit)
        except StoreError as error:
            logger.error("could not read parked dead letters", error=str(error))
            return 0, 0
        delivered = 0
        for letter in parked:
            if self.deliver(letter):
                delivered += 1
            else:
                break  # the queue is down: the rest stays parked for the next run
        if parked:
            logger.info("parked dead letters flushed", delivered=delivered, parked=len(parked) - delivered)
        return delivered, len(parked) - delivered
