"""Deterministic Stripe idempotency keys: the same period always sends the same key, in any run."""

from __future__ import annotations

KEY_PREFIX = "scheduled-donation"


def payment_intent_key(scheduled_donation_id: str, period: str) -> str:
    """Key for creating the one PaymentIntent of a period. Derived from (id, period) only."""
    return f"{KEY_PREFIX}:{scheduled_donation_id}:{period}"


def confirm_key(scheduled_donation_id: str, period: str, attempt: int) -> str:
    """Key for re-confirming the period's PaymentIntent on a later dunning attempt.

    Stripe stores declines under their key, so a later attempt after a recorded decline needs a key of its
    own; it is still derived, never random: every retry of that attempt sends the same key. The PaymentIntent
    itself stays one per period, and a PaymentIntent can succeed only once.
    """
    if attempt < 2:
        raise ValueError("attempt 1 creates the PaymentIntent; confirm keys start at attempt 2")
    return f"{payment_intent_key(scheduled_donation_id, period)}:attempt-{attempt}"
