"""Write events/donor/*.json: one real donor-facing event of each type, captured from a local run.

The samples are what the job really published (through EventBridge on moto, delivered to an SQS queue),
with ids replaced by stable placeholders so the files do not change from run to run.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from donation_processor.donor_event_types import DETAIL_TYPES
from harness.local.event_sink import create_event_sink
from harness.local.lambda_context import LocalLambdaContext
from harness.local.seed import (
    AUTHENTICATION_REQUIRED,
    INSUFFICIENT_FUNDS,
    STOLEN_CARD,
    SUCCEEDS,
    naive_utc,
    scheduled_donation,
)
from harness.local.services import LocalServices, start_local_services
from harness.project import PROJECT_ROOT

TARGET = PROJECT_ROOT / "events" / "donor"


def seed_one_of_each(services: LocalServices) -> None:
    now = datetime.now(UTC) - timedelta(hours=1)
    documents = [
        scheduled_donation(
            customer_id=services.stripe.state.create_customer(), next_run_at=now, payment_method_id=pm
        )
        for pm in (SUCCEEDS, INSUFFICIENT_FUNDS, STOLEN_CARD, AUTHENTICATION_REQUIRED)
    ]
    # A soft decline on its last attempt, so the "schedule stopped" event appears too: a period an earlier
    # version of the job left in dunning after three declines, which the engine adopts as its intent.
    documents.append(
        scheduled_donation(
            customer_id=services.stripe.state.create_customer(),
            next_run_at=now,
            payment_method_id=INSUFFICIENT_FUNDS,
            periodStart=naive_utc(now),
            attempts=3,
            periodAttempts=3,
        )
    )
    # A monthly donation 70 days behind: the latest due period is charged, the two before it are missed.
    documents.append(
        scheduled_donation(
            customer_id=services.stripe.state.create_customer(),
            next_run_at=now - timedelta(days=70),
            payment_method_id=SUCCEEDS,
        )
    )
    services.database["scheduled_donations"].insert_many(documents)


_PLACEHOLDERS = [
    (re.compile(r"\b[0-9a-f]{24}\b"), "65f1c0ffee0000000000a001"),
    (re.compile(r"\bdonor_[0-9a-f]{24}\b"), "donor_65f1c0ffee0000000000d001"),
    (re.compile(r"\bpi_[A-Za-z0-9]+\b"), "pi_3SampleSampleSample"),
    (re.compile(r"\brun-[0-9a-f]{16}\b"), "run-0123456789abcdef"),
    (re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(\+00:00|Z)"), "2026-11-29T10:00:00+00:00"),
    (re.compile(r"\b\d{4}-\d{2}-\d{2}\b"), "2026-11-29"),
    (
        re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"),
        "00000000-0000-0000-0000-000000000000",
    ),
]


def stable(event: dict[str, Any]) -> dict[str, Any]:
    text = json.dumps(event, sort_keys=True)
    for pattern, replacement in _PLACEHOLDERS:
        text = pattern.sub(replacement, text)
    stabilised: dict[str, Any] = json.loads(text)
    return stabilised


def file_name(detail_type: str) -> str:
    return detail_type.lower().replace(" ", "-") + ".json"


def capture() -> dict[str, dict[str, Any]]:
    with start_local_services() as services:
        sink = create_event_sink(services.moto.endpoint_url, "donor-events-samples")
        os.environ.update(
            services.environment(DONOR_EVENT_BUS_NAME=sink.bus_name, POWERTOOLS_LOG_LEVEL="ERROR")
        )
        seed_one_of_each(services)
        import app

        app.lambda_handler(
            json.loads((PROJECT_ROOT / "events" / "scheduled.json").read_text()),
            LocalLambdaContext(aws_request_id="samples"),
        )
        time.sleep(0.2)
        captured: dict[str, dict[str, Any]] = {}
        # Sorted, so the sample of a type is the same event every time (threads finish in any order).
        for event in sorted(sink.drain(), key=lambda item: json.dumps(item["detail"], sort_keys=True)):
            captured.setdefault(event["detail-type"], stable(event))
        return captured


def main() -> int:
    captured = capture()
    missing = [detail_type for detail_type in DETAIL_TYPES if detail_type not in captured]
    if missing:
        print(f"no event captured for: {missing}", file=sys.stderr)
        return 1
    TARGET.mkdir(parents=True, exist_ok=True)
    for detail_type in DETAIL_TYPES:
        path = TARGET / file_name(detail_type)
        path.write_text(json.dumps(captured[detail_type], indent=2, sort_keys=True) + "\n")
        print(f"wrote {path.relative_to(PROJECT_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
