"""Nothing silently ignored: active documents the due query can never see are counted every run.

A document whose `nextRunAt` is missing or not a date, or whose `status` is a value the job does not know
(`Active`, `actve`, null), is never claimed, so it is never charged, never marked invalid and never
overdue. Today nobody would hear of it; each run now counts it (`unseen`, metric `DonationsUnseen`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from donation_processor.engine import DonationEngine
from donation_processor.invocation import RunRequest
from harness.local.seed import scheduled_donation
from harness.local.services import LocalServices
from tests.support.clock import TestClock

SCHEDULED = "scheduled_donations"


def _seed(services: LocalServices, clock: TestClock, **fields: Any) -> Any:
    document = scheduled_donation(
        customer_id=services.stripe.state.create_customer(), next_run_at=clock.now - timedelta(hours=1)
    )
    document.update(fields)
    document = {name: value for name, value in document.items() if value is not _MISSING}
    services.database[SCHEDULED].insert_one(document)
    return document["_id"]


_MISSING = object()


def test_active_documents_the_due_query_cannot_see_are_counted_and_left_untouched(
    services: LocalServices, clock: TestClock, make_engine: Callable[..., DonationEngine]
) -> None:
    # GIVEN one good due donation, two active ones without a usable nextRunAt, and two with an unknown status
    _seed(services, clock)
    unseen = [
        _seed(services, clock, nextRunAt="2026-01-01T00:00:00Z"),
        _seed(services, clock, nextRunAt=_MISSING),
        _seed(services, clock, status="Active"),
        _seed(services, clock, status=None),
    ]
    before = {doc["_id"]: doc for doc in services.database[SCHEDULED].find({"_id": {"$in": unseen}})}

    # WHEN the job runs
    summary = make_engine().run(RunRequest(source="schedule"), lambda: 900_000)

    # THEN the good one is charged, the four are counted as unseen, by kind, and left exactly as they were
    assert (summary.succeeded, summary.invalid, summary.overdue) == (1, 0, 0)
    assert (summary.unseen_no_date, summary.unseen_unknown_status) == (2, 2)
    assert summary.to_dict()["unseen"] == {"noUsableNextRunAt": 2, "unknownStatus": 2}
    after = {doc["_id"]: doc for doc in services.database[SCHEDULED].find({"_id": {"$in": unseen}})}
    assert after == before
