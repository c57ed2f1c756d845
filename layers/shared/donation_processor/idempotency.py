"""Deterministic Stripe idempotency keys: the same period always sends the same key, in any run."""

from __future__ import annotations

KEY_PREFIX = "scheduled-donation"


def payment_intent_key(scheduled_donation_id: str, period: str) -> str:
    """Key for creating the one PaymentIntent of a period. Derived from (id, period) only."""
    return f"{KEY_PREFIX}:{scheduled_donation_id}:{period}"


def attempt_key(creation_key: str, attempt: int) -> str:
    """Key of attempt n of a period: the creation key for attempt 1, then `<creation key>:attempt-<n>`.

    Stripe stores declines under their key, so each later attempt needs a key of its own; it is derived,
    never random, and written on the charge intent with its parameters before it is sent, so a key is
    re-sent only with the parameters it first went out with, and never used for another attempt.
    """
    if attempt < 1:
        raise ValueError("attempts are numbered from 1")
    return creation_key if attempt == 1 else f"{creation_key}:attempt-{attempt}"
