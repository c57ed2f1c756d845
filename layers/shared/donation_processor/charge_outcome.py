"""Classify Stripe's answers: what is transient, what is a soft decline, what must stop a schedule."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class FailureKind(StrEnum):
    TRANSIENT = "transient"  # retry inside the run with backoff
    SOFT_DECLINE = "soft_decline"  # keep active, retry on the dunning schedule
    HARD_DECLINE = "hard_decline"  # stop the schedule, dead-letter, donor must act
    INVALID_REQUEST = "invalid_request"  # our data is wrong for Stripe: stop, dead-letter for an operator
    FATAL = "fatal"  # credentials or permissions: nothing in this run can succeed


# Decline codes after which retrying the same card is pointless or forbidden by the networks.
HARD_DECLINE_CODES = frozenset(
    {
        "authentication_required",
        "card_not_supported",
        "currency_not_supported",
        "do_not_try_again",
        "expired_card",
        "fraudulent",
        "incorrect_number",
        "invalid_account",
        "invalid_number",
        "lost_card",
        "merchant_blacklist",
        "new_account_information_available",
        "no_action_taken",
        "pickup_card",
        "restricted_card",
        "revocation_of_all_authorizations",
        "revocation_of_authorization",
        "security_violation",
        "stolen_card",
        "stop_payment_order",
        "transaction_not_allowed",
    }
)

# Error codes that are never the donor's fault and may succeed on an immediate retry.
TRANSIENT_CODES = frozenset({"lock_timeout", "rate_limit", "idempotency_key_in_use"})


@dataclass(frozen=True)
class StripeFailure:
    """What Stripe (or the network) said, in our own words. Carries no card data."""

    kind: FailureKind
    error_type: str
    code: str | None = None
    decline_code: str | None = None
    message: str = ""
    http_status: int | None = None
    payment_intent_id: str | None = None
    availability: bool = False  # 5xx, timeouts, dropped connections: counts toward the circuit breaker

    @property
    def reason(self) -> str:
        return self.decline_code or self.code or self.error_type


def classify_card_error(code: str | None, decline_code: str | None) -> FailureKind:
    """A card error is never retried inside the run: it is either soft (dunning) or hard (stop)."""
    for candidate in (decline_code, code):
        if candidate in HARD_DECLINE_CODES:
            return FailureKind.HARD_DECLINE
    return FailureKind.SOFT_DECLINE


def classify_http(
    http_status: int | None, code: str | None, should_retry: bool | None, error_type: str
) -> FailureKind:
    """Classify a non-card API error by status, code and Stripe's Stripe-Should-Retry header."""
    if http_status in (401, 403):
        return FailureKind.FATAL
    # A 5xx or a lost answer leaves the outcome unknown: retrying with the same idempotency key is the
    # only safe move, whatever Stripe-Should-Retry says.
    if http_status is None or http_status >= 500:
        return FailureKind.TRANSIENT
    if should_retry is True or code in TRANSIENT_CODES or http_status in (409, 429):
        return FailureKind.TRANSIENT
    if error_type == "card_error" or http_status == 402:
        return classify_card_error(code, None)
    return FailureKind.INVALID_REQUEST


class PaymentFailed(Exception):
    """Raised by the payments adapter; carries the classified failure."""

    def __init__(self, failure: StripeFailure) -> None:
        super().__init__(f"{failure.kind}: {failure.reason}")
        self.failure = failure
