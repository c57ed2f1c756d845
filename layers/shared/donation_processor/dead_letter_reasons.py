"""Why a donation was dead-lettered, and who must act on it: the donor or an operator."""

from __future__ import annotations

from enum import StrEnum

from donation_processor.charge_rules import StopReason


class DeadLetterReason(StrEnum):
    """A dead letter's `reason`: the stop reasons that leave a letter, and a document never charged.

    Also the `reason` dimension of the DeadLettersByReason metric, which the alarms split by who acts:
    the donor (DONOR_ACTIONABLE) or an operator (OPERATOR_ACTIONABLE).
    """

    HARD_DECLINE = StopReason.HARD_DECLINE  # authentication_required included (a hard decline code)
    ATTEMPTS_EXHAUSTED = StopReason.ATTEMPTS_EXHAUSTED
    STRIPE_REJECTED_REQUEST = StopReason.STRIPE_REJECTED_REQUEST
    INVALID_DOCUMENT = "invalid_document"


# The donor must act (a new card, authentication); the donor event already asked them to.
DONOR_ACTIONABLE = frozenset({DeadLetterReason.HARD_DECLINE, DeadLetterReason.ATTEMPTS_EXHAUSTED})
# Our data or our request is wrong: only an operator can fix it, and the donor is told nothing.
OPERATOR_ACTIONABLE = frozenset({DeadLetterReason.STRIPE_REJECTED_REQUEST, DeadLetterReason.INVALID_DOCUMENT})
