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
from collections import Counter
from typing import Any

from harness.local.aws_local import sqs_client
from harness.local.emf import emitted_metrics
from harness.local.lambda_context import LocalLambdaContext
from harness.local.seed import seed_donations
from harness.local.services import LocalServices, start_local_services
from harness.project import PROJECT_ROOT

DEMO_SIZE = 40


def _invoke(event: dict[str, Any]) -> tuple[dict[str, Any], dict[str, float]]:
    import app

    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        summary = app.lambda_handler(event, LocalLambdaContext(aws_request_id="demo"))
    return summary, emitted_metrics(captured.getvalue())


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
