"""The donor-facing event types the engine publishes; the EventBridge adapter only carries them."""

from __future__ import annotations

SOURCE = "scheduled-donations"
CHARGE_SUCCEEDED = "Donation Charge Succeeded"
RETRY_SCHEDULED = "Donation Retry Scheduled"
PAYMENT_METHOD_UPDATE_REQUIRED = "Donation Payment Method Update Required"
SCHEDULE_STOPPED = "Donation Schedule Stopped"
PERIODS_MISSED = "Donation Periods Missed"
DETAIL_TYPES = (
    CHARGE_SUCCEEDED,
    RETRY_SCHEDULED,
    PAYMENT_METHOD_UPDATE_REQUIRED,
    SCHEDULE_STOPPED,
    PERIODS_MISSED,
)
