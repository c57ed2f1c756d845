"""Names of the CloudWatch metrics the job emits; alarms in template.yaml must watch only these."""

from __future__ import annotations

DONATIONS_DUE = "DonationsDue"
DONATIONS_SUCCEEDED = "DonationsSucceeded"
DONATIONS_FAILED = "DonationsFailed"
DONATIONS_RETRIED = "DonationsRetried"
DONATIONS_DEAD_LETTERED = "DonationsDeadLettered"
DONATIONS_INVALID = "DonationsInvalid"
DONATIONS_SKIPPED = "DonationsSkipped"
DONATIONS_MISSED = "DonationsMissed"
DEAD_LETTERS_DEFERRED = "DeadLettersDeferred"
# Letters a run wrote (sent or parked), one metric per dead_letter_reasons.DeadLetterReason (dimension
# "reason", zeros included): the alarms tell the donors' letters from the operators' by it.
DEAD_LETTERS_BY_REASON = "DeadLettersByReason"
LOCK_CONTENDED = "LockContended"
CIRCUIT_OPENED = "CircuitOpened"
RUN_SYSTEMIC_HALT = "RunSystemicHalt"
SYSTEMIC_FAILURES = "SystemicFailures"  # 1 per systemic halt, dimension "code" (Stripe's error code)
RUN_COMPLETED = "RunCompleted"
RUN_PARTIAL = "RunPartial"
RUN_DURATION_MS = "RunDurationMs"
RUN_PAUSED = "RunPaused"
RUN_FAILED = "RunFailed"  # 1 for an invocation that raised (it emits no other count)
DONATIONS_OVERDUE = "DonationsOverdue"
DONATIONS_UNSEEN = "DonationsUnseen"  # a gauge: documents the due query can never see
AMOUNT_CHARGED = "AmountCharged"  # minor units, one metric per currency (dimension "currency")
DONOR_EVENTS_FAILED = "DonorEventsFailed"

ALL_METRICS: frozenset[str] = frozenset(
    {
        DONATIONS_DUE,
        DONATIONS_SUCCEEDED,
        DONATIONS_FAILED,
        DONATIONS_RETRIED,
        DONATIONS_DEAD_LETTERED,
        DONATIONS_INVALID,
        DONATIONS_SKIPPED,
        DONATIONS_MISSED,
        DEAD_LETTERS_DEFERRED,
        DEAD_LETTERS_BY_REASON,
        LOCK_CONTENDED,
        CIRCUIT_OPENED,
        RUN_SYSTEMIC_HALT,
        SYSTEMIC_FAILURES,
        RUN_COMPLETED,
        RUN_PARTIAL,
        RUN_DURATION_MS,
        RUN_PAUSED,
        RUN_FAILED,
        DONATIONS_OVERDUE,
        DONATIONS_UNSEEN,
        AMOUNT_CHARGED,
        DONOR_EVENTS_FAILED,
    }
)
