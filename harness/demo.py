"""`make demo`: run the real handler against local services with a realistic mix, twice.

Starts moto's server (lock table and queue created from template.yaml), the Stripe-compatible server and
mongomock; seeds scheduled donations (most succeed, some soft and hard declines, some needing
authentication, some malformed); invokes `app.lambda_handler` with events/scheduled.json and a Lambda-like
context; prints the summary, the metrics emitted and the dead letters; then invokes again to show that
nothing is charged twice.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.aws_local import sqs_client
from harness.local_services import LocalServices, start_local_services
from harness.seed import seed_donations

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEMO_SIZE = 40


@dataclass
class DemoContext:
    """The parts of Lambda's context the handler uses: a 15-minute budget counted from the invoke."""

    deadline: float
    function_name: str = "ScheduledDonationsFunction"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:ScheduledDonationsFunction"
    aws_request_id: str = "demo"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


def _metrics_from(output: str) -> dict[str, float]:
    values: dict[str, float] = {}
    for line in output.splitlines():
        if '"_aws"' not in line:
            continue
        blob = json.loads(line)
        for directive in blob["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                raw = blob[metric["Name"]]
                values[metric["Name"]] = float(sum(raw) if isinstance(raw, list) else raw)
    return values


def _invoke(event: dict[str, Any]) -> tuple[dict[str, Any], dict[str, float]]:
    import app

    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        summary = app.lambda_handler(event, DemoContext(deadline=time.monotonic() + 900))
    return summary, _metrics_from(captured.getvalue())


def _drain_dead_letters(services: LocalServices) -> list[dict[str, Any]]:
    client = sqs_client(services.moto.endpoint_url)
    letters: list[dict[str, Any]] = []
    while batch := client.receive_message(QueueUrl=services.queue_url, MaxNumberOfMessages=10).get(
        "Messages"
    ):
        for message in batch:
            letters.append(json.loads(message["Body"]))
            client.delete_message(QueueUrl=services.queue_url, ReceiptHandle=message["ReceiptHandle"])
    return letters


def _print_run(title: str, summary: dict[str, Any], metrics: dict[str, float]) -> None:
    print(f"\n== {title}")
    print(json.dumps(summary, indent=2))
    print("metrics emitted (EMF, namespace ScheduledDonations):")
    for name in sorted(metrics):
        print(f"  {name:<24} {metrics[name]:g}")


def main() -> int:
    os.chdir(PROJECT_ROOT)
    with start_local_services(latency_ms=20, jitter_ms=10) as services:
        os.environ.update(services.environment(LOG_LEVEL="ERROR", POWERTOOLS_LOG_LEVEL="ERROR"))
        kinds = seed_donations(services.database, services.stripe.state.create_customer, DEMO_SIZE)
        print(f"seeded {DEMO_SIZE} due scheduled donations:")
        for kind, count in sorted(kinds.items()):
            print(f"  {kind:<34} {count}")
        event = json.loads((PROJECT_ROOT / "events" / "scheduled.json").read_text())

        first, first_metrics = _invoke(event)
        _print_run("first run (events/scheduled.json)", first, first_metrics)
        letters = _drain_dead_letters(services)
        print(f"\ndead letters on the queue: {len(letters)}")
        for letter in letters:
            print(
                f"  {letter['reason']:<24} {letter['scheduledDonationId']}  "
                f"code={letter['code']} decline={letter['declineCode']} message={letter['message'][:60]!r}"
            )

        second, second_metrics = _invoke(event)
        _print_run("second run, same event: nothing may be charged twice", second, second_metrics)

        counts = services.stripe.state.charge_counts_by(metadata_keys=("scheduled_donation_id", "period"))
        duplicates = sum(count - 1 for count in counts.values() if count > 1)
        statuses = Counter(d["status"] for d in services.database["scheduled_donations"].find())
        print("\n== Stripe's ledger and MongoDB after both runs")
        print(
            f"  successful charges: {len(services.stripe.state.charges())}   duplicate charges: {duplicates}"
        )
        print(f"  scheduled donations by status: {dict(sorted(statuses.items()))}")
        print(f"  donation records: {services.database['donations'].count_documents({})}")
        ok = duplicates == 0 and second["succeeded"] == 0 and first["status"] == "completed"
        print("\nOK: every due period charged at most once." if ok else "\nFAILED: see above.")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
