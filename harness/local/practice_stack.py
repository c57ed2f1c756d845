"""The AWS side of the practice stack on a moto server, from template.yaml, plus a Stripe customer to charge.

Safe to run again on a server that has it: the lock table, dead-letter queue, pause parameter (its value
too: a paused switch stays paused), event bus and sink queue are kept.
"""

from __future__ import annotations

import contextlib
import json
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

import boto3

from harness.local.aws_local import (
    DEFAULT_LOCK_TABLE_NAME,
    DEFAULT_QUEUE_NAME,
    DUMMY_ACCESS_KEY_ID,
    DUMMY_SECRET_ACCESS_KEY,
    REGION,
    UnsupportedTemplateProperty,
    load_template,
    provision_local_stack,
    sqs_client,
)
from harness.local.event_sink import create_event_sink

STACK_NAME = "scheduled-donations-local"
PAUSE_PARAMETER_RESOURCE = "PauseParameter"
DONOR_EVENT_BUS_RESOURCE = "DonorEventBus"
_PARAMETER_PROPERTIES = frozenset({"Name", "Type", "Value", "AllowedPattern", "Description"})


@dataclass(frozen=True)
class PracticeStack:
    lock_table_name: str
    dead_letter_queue_url: str
    pause_parameter_name: str
    donor_event_bus_name: str
    donor_events_sink_queue_url: str


def _properties(template: dict[str, Any], logical_id: str, resource_type: str) -> dict[str, Any]:
    resource = template["Resources"].get(logical_id, {})
    if resource.get("Type") != resource_type:
        raise UnsupportedTemplateProperty(f"template has no {resource_type} resource named {logical_id}")
    properties: dict[str, Any] = resource.get("Properties", {})
    return properties


def _stack_name_sub(value: Any, where: str) -> str:
    """A literal, or `!Sub` of a string whose only variable is ${AWS::StackName}."""
    if isinstance(value, str):
        return value
    text = value.get("Fn::Sub") if isinstance(value, dict) else None
    if not isinstance(text, str) or "${" in text.replace("${AWS::StackName}", ""):
        raise UnsupportedTemplateProperty(f"{where} must be a literal or !Sub of ${{AWS::StackName}} only")
    return text.replace("${AWS::StackName}", STACK_NAME)


def create_pause_parameter(endpoint_url: str, template: dict[str, Any]) -> str:
    """template.yaml's PauseParameter, with its initial value, unless it exists; return its name."""
    properties = _properties(template, PAUSE_PARAMETER_RESOURCE, "AWS::SSM::Parameter")
    unknown = sorted(set(properties) - _PARAMETER_PROPERTIES)
    if unknown:
        raise UnsupportedTemplateProperty(f"{PAUSE_PARAMETER_RESOURCE} uses {', '.join(unknown)}")
    name = _stack_name_sub(properties["Name"], f"{PAUSE_PARAMETER_RESOURCE}.Name")
    ssm = boto3.client(
        "ssm",
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id=DUMMY_ACCESS_KEY_ID,
        aws_secret_access_key=DUMMY_SECRET_ACCESS_KEY,
    )
    with contextlib.suppress(ssm.exceptions.ParameterAlreadyExists):
        ssm.put_parameter(
            Name=name,
            Type=properties["Type"],
            Value=properties["Value"],
            AllowedPattern=properties.get("AllowedPattern", ""),
            Description=properties.get("Description", ""),
        )
    return name


def create_donor_event_bus(endpoint_url: str, template: dict[str, Any]) -> tuple[str, str]:
    """template.yaml's DonorEventBus plus a rule sending its events to a sink queue; (bus, queue URL)."""
    properties = _properties(template, DONOR_EVENT_BUS_RESOURCE, "AWS::Events::EventBus")
    bus_name = _stack_name_sub(properties["Name"], f"{DONOR_EVENT_BUS_RESOURCE}.Name")
    events = boto3.client(
        "events",
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id=DUMMY_ACCESS_KEY_ID,
        aws_secret_access_key=DUMMY_SECRET_ACCESS_KEY,
    )
    try:
        return bus_name, create_event_sink(endpoint_url, bus_name).queue_url
    except events.exceptions.ResourceAlreadyExistsException:
        return bus_name, sqs_client(endpoint_url).get_queue_url(QueueName=f"{bus_name}-sink")["QueueUrl"]


def provision_practice_stack(endpoint_url: str) -> PracticeStack:
    template = load_template()
    stack = provision_local_stack(
        endpoint_url, lock_table_name=DEFAULT_LOCK_TABLE_NAME, queue_name=DEFAULT_QUEUE_NAME
    )
    bus_name, sink_url = create_donor_event_bus(endpoint_url, template)
    return PracticeStack(
        lock_table_name=stack.lock_table_name,
        dead_letter_queue_url=stack.queue_url,
        pause_parameter_name=create_pause_parameter(endpoint_url, template),
        donor_event_bus_name=bus_name,
        donor_events_sink_queue_url=sink_url,
    )


def create_stripe_customer(stripe_url: str, secret_key: str) -> str:
    """A customer on the local Stripe server (over HTTP: it runs in another process); its cus_ id."""
    body = urllib.parse.urlencode({"metadata[purpose]": "local-practice"}).encode()
    request = urllib.request.Request(  # noqa: S310 - our own local server
        f"{stripe_url}/v1/customers",
        data=body,
        headers={"Authorization": f"Bearer {secret_key}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - our own local server
        customer: dict[str, Any] = json.loads(response.read())
    return str(customer["id"])
