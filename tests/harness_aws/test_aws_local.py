"""The local AWS harness: moto's server provisioned from template.yaml, exercised through real boto3."""

from __future__ import annotations

import copy
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import ClientError

from harness.local.aws_local import (
    MotoServer,
    UnsupportedTemplateProperty,
    create_dead_letter_queue,
    create_secret,
    dynamodb_client,
    load_template,
    provision_local_stack,
    secretsmanager_client,
    sqs_client,
    start_moto_server,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from harness.local.aws_local import LocalStack


@pytest.fixture(scope="module")
def server() -> Iterator[MotoServer]:
    with start_moto_server() as running:
        yield running


@pytest.fixture(scope="module")
def stack(server: MotoServer) -> LocalStack:
    # moto's backends are process-global (shared with any other server or mock in this test session), so
    # this module's resources get names nobody else uses.
    tag = uuid.uuid4().hex[:8]
    return provision_local_stack(server.endpoint_url, lock_table_name=f"lock-{tag}", queue_name=f"dlq-{tag}")


def test_lock_table_is_keyed_on_lock_id_with_ttl_on_expires_at(server: MotoServer, stack: LocalStack) -> None:
    # Given the provisioned lock table
    client = dynamodb_client(server.endpoint_url)
    # When it is described
    table = client.describe_table(TableName=stack.lock_table_name)["Table"]
    ttl = client.describe_time_to_live(TableName=stack.lock_table_name)["TimeToLiveDescription"]
    # Then it matches template.yaml's LockTable
    assert table["KeySchema"] == [{"AttributeName": "lockId", "KeyType": "HASH"}]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert table["SSEDescription"]["Status"] == "ENABLED"
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expiresAt"}


def test_conditional_put_takes_the_lock_once(server: MotoServer, stack: LocalStack) -> None:
    # Given a free lock
    client = dynamodb_client(server.endpoint_url)
    lock_id = f"lock-{uuid.uuid4()}"

    def take() -> None:
        client.put_item(
            TableName=stack.lock_table_name,
            Item={"lockId": {"S": lock_id}, "expiresAt": {"N": "4102444800"}},
            ConditionExpression="attribute_not_exists(lockId)",
        )

    # When it is taken
    take()
    # Then a second conditional write is refused
    with pytest.raises(ClientError) as refused:
        take()
    assert refused.value.response["Error"]["Code"] == "ConditionalCheckFailedException"


def test_dead_letter_queue_keeps_messages_fourteen_days_and_delivers_them(
    server: MotoServer, stack: LocalStack
) -> None:
    # Given the provisioned dead-letter queue
    client = sqs_client(server.endpoint_url)
    attributes = client.get_queue_attributes(QueueUrl=stack.queue_url, AttributeNames=["All"])["Attributes"]
    assert attributes["MessageRetentionPeriod"] == "1209600"
    assert attributes["VisibilityTimeout"] == "300"
    assert attributes["SqsManagedSseEnabled"] == "true"
    # When a message is sent
    body = f'{{"donationId": "{uuid.uuid4()}"}}'
    client.send_message(QueueUrl=stack.queue_url, MessageBody=body)
    # Then it can be received
    messages = client.receive_message(QueueUrl=stack.queue_url, MaxNumberOfMessages=10).get("Messages", [])
    assert [message["Body"] for message in messages] == [body]


def test_secret_round_trips(server: MotoServer) -> None:
    # Given a secret created through the harness
    client = secretsmanager_client(server.endpoint_url)
    name = f"scheduled-donations/test-{uuid.uuid4()}"
    arn = create_secret(client, name, "first")
    # When it is written again and read back
    assert create_secret(client, name, "second") == arn
    # Then the latest value is current
    assert client.get_secret_value(SecretId=name)["SecretString"] == "second"


def test_provisioning_twice_keeps_resources_and_their_contents(server: MotoServer, stack: LocalStack) -> None:
    # Given a lock item in the provisioned table
    client = dynamodb_client(server.endpoint_url)
    lock_id = f"kept-{uuid.uuid4()}"
    client.put_item(TableName=stack.lock_table_name, Item={"lockId": {"S": lock_id}})
    # When the stack is provisioned again
    queue_name = stack.queue_url.rsplit("/", 1)[1]
    again = provision_local_stack(
        server.endpoint_url, lock_table_name=stack.lock_table_name, queue_name=queue_name
    )
    # Then the same resources come back, item included
    assert again == stack
    assert "Item" in client.get_item(TableName=stack.lock_table_name, Key={"lockId": {"S": lock_id}})


def test_queue_attributes_come_from_the_template(server: MotoServer) -> None:
    # Given a template whose DeadLetterQueue differs from the real one
    template = copy.deepcopy(load_template())
    template["Resources"]["DeadLetterQueue"]["Properties"]["VisibilityTimeout"] = 123
    client = sqs_client(server.endpoint_url)
    # When the queue is created from it
    url = create_dead_letter_queue(client, f"q-{uuid.uuid4()}", template)
    # Then the queue follows the template, not a copy of its values in the harness
    attributes = client.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])["Attributes"]
    assert attributes["VisibilityTimeout"] == "123"


def test_property_the_harness_cannot_mirror_is_refused(server: MotoServer) -> None:
    # Given a template with a queue property the harness does not reproduce
    template = copy.deepcopy(load_template())
    template["Resources"]["DeadLetterQueue"]["Properties"]["RedrivePolicy"] = {"maxReceiveCount": 3}
    # When the queue is created from it, then the harness refuses instead of silently dropping it
    with pytest.raises(UnsupportedTemplateProperty, match="RedrivePolicy"):
        create_dead_letter_queue(sqs_client(server.endpoint_url), f"q-{uuid.uuid4()}", template)


def test_load_template_expands_short_form_intrinsics() -> None:
    # Given the project template
    template: dict[str, Any] = load_template()
    resources = template["Resources"]
    # Then !Ref, !GetAtt, !Sub and !If come back in their long JSON form
    function = resources["ScheduledDonationsFunction"]["Properties"]
    assert function["Environment"]["Variables"]["LOCK_TABLE_NAME"] == {"Ref": "LockTable"}
    assert template["Outputs"]["DeadLetterQueueArn"]["Value"] == {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}
    assert template["Resources"]["FunctionLogGroup"]["Properties"]["LogGroupName"] == {
        "Fn::Sub": "/aws/lambda/${ScheduledDonationsFunction}"
    }
    assert function["Events"]["Schedule"]["Properties"]["State"] == {
        "Fn::If": ["IsScheduleEnabled", "ENABLED", "DISABLED"]
    }


# Without one-at-a-time DynamoDB requests, 3 runs of 3 saw a round of these 30 with 2 or more winners.
ROUNDS = 30


def test_concurrent_conditional_writes_have_one_winner_as_in_dynamodb(
    server: MotoServer, stack: LocalStack
) -> None:
    # GIVEN 16 threads that each try to create the same lock item, only if it does not exist yet
    client = dynamodb_client(server.endpoint_url)
    start = threading.Barrier(16)

    def take(owner: int, lock_id: str) -> str:
        start.wait()
        try:
            client.put_item(
                TableName=stack.lock_table_name,
                Item={"lockId": {"S": lock_id}, "owner": {"N": str(owner)}},
                ConditionExpression="attribute_not_exists(lockId)",
            )
        except ClientError as error:
            return str(error.response["Error"]["Code"])
        return "won"

    # WHEN they all write at once, over and over on fresh items, with the interpreter switching threads as
    # often as it can (moto serves in this process), so a check and its write are as likely as possible to
    # be split
    winners, answers_seen = [], set()
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for round_number in range(ROUNDS):
            lock_id = f"race-{round_number}-{uuid.uuid4().hex[:8]}"
            with ThreadPoolExecutor(max_workers=16) as pool:
                answers = list(pool.map(take, range(16), [lock_id] * 16))
            winners.append(answers.count("won"))
            answers_seen |= set(answers)
    finally:
        sys.setswitchinterval(interval)

    # THEN each round has exactly one winner: the condition and the write are one atomic step
    assert winners == [1] * ROUNDS
    assert answers_seen == {"won", "ConditionalCheckFailedException"}
