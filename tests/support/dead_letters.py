"""Read the dead-letter queue back through the real SQS API."""

from __future__ import annotations

import json
from typing import Any

from harness.local.aws_local import sqs_client
from harness.local.services import LocalServices


def read_dead_letters(services: LocalServices) -> list[dict[str, Any]]:
    """Drain the dead-letter queue through the real SQS API."""
    client = sqs_client(services.moto.endpoint_url)
    letters: list[dict[str, Any]] = []
    while True:
        answer = client.receive_message(
            QueueUrl=services.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
        )
        messages = answer.get("Messages", [])
        if not messages:
            return letters
        for message in messages:
            letters.append(json.loads(message["Body"]))
            client.delete_message(QueueUrl=services.queue_url, ReceiptHandle=message["ReceiptHandle"])
