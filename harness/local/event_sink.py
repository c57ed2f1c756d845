"""A bus on moto whose every event lands on an SQS queue, so a run's donor events can be read back."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import boto3

from donation_processor.donor_event_types import SOURCE
from harness.local.aws_local import DUMMY_ACCESS_KEY_ID, DUMMY_SECRET_ACCESS_KEY, REGION, sqs_client


@dataclass
class EventSink:
    """An EventBridge bus whose every event lands on an SQS queue, so a run's events can be read back."""

    bus_name: str
    queue_url: str
    endpoint_url: str

    def drain(self) -> list[dict[str, Any]]:
        sqs = sqs_client(self.endpoint_url)
        events: list[dict[str, Any]] = []
        while batch := sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages"):
            for message in batch:
                events.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return events


def create_event_sink(endpoint_url: str, bus_name: str) -> EventSink:
    events = boto3.client(
        "events",
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id=DUMMY_ACCESS_KEY_ID,
        aws_secret_access_key=DUMMY_SECRET_ACCESS_KEY,
    )
    sqs = sqs_client(endpoint_url)
    events.create_event_bus(Name=bus_name)
    queue_url = sqs.create_queue(QueueName=f"{bus_name}-sink")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(
        Name=f"{bus_name}-all", EventBusName=bus_name, EventPattern=json.dumps({"source": [SOURCE]})
    )
    events.put_targets(Rule=f"{bus_name}-all", EventBusName=bus_name, Targets=[{"Id": "sink", "Arn": arn}])
    return EventSink(bus_name, queue_url, endpoint_url)
