"""What a run did, counted as it goes (thread-safe) and returned as the handler's JSON."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RunSummary:
    run_id: str
    status: str = "completed"
    due: int = 0
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    dead_lettered: int = 0
    invalid: int = 0
    skipped: int = 0
    missed: int = 0
    dead_letters_deferred: int = 0
    overdue: int = 0
    donor_events_failed: int = 0
    unseen_no_date: int = 0  # active documents whose nextRunAt is missing or not a date
    unseen_unknown_status: int = 0  # documents whose status is not one the job knows
    systemic_code: str | None = None  # the error code that halted the run as systemic
    duration_ms: int = 0
    amount_by_currency: dict[str, int] = field(default_factory=dict)
    # Letters this run wrote, by reason, whether SQS took them at once or they were parked in MongoDB; a
    # parked letter re-sent by a later run is not counted again. A metric only (DeadLettersByReason): the
    # handler's JSON keeps its documented keys.
    dead_letters_by_reason: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def add_amount(self, currency: str, amount: int) -> None:
        with self._lock:
            self.amount_by_currency[currency] = self.amount_by_currency.get(currency, 0) + amount

    def add_dead_letter(self, reason: str) -> None:
        with self._lock:
            key = str(reason)
            self.dead_letters_by_reason[key] = self.dead_letters_by_reason.get(key, 0) + 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "runId": self.run_id,
            "status": self.status,
            "due": self.due,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "retried": self.retried,
            "deadLettered": self.dead_lettered,
            "invalid": self.invalid,
            "skipped": self.skipped,
            "missed": self.missed,
            "deadLettersDeferred": self.dead_letters_deferred,
            "overdue": self.overdue,
            "donorEventsFailed": self.donor_events_failed,
            "systemicCode": self.systemic_code,
            "unseen": {"noUsableNextRunAt": self.unseen_no_date, "unknownStatus": self.unseen_unknown_status},
            "durationMs": self.duration_ms,
            "amountByCurrency": dict(self.amount_by_currency),
        }
