"""SQS adapter for dead letters: JSON bodies, ids and error details only, never card or personal data."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from donation_processor.exceptions import DeadLetterSendError

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient


class SqsDeadLetters:
    def __init__(self, queue_url: str, client: SQSClient | None = None) -> None:
        self._queue_url = queue_url
        self._client = client

    @property
    def client(self) -> SQSClient:
        if self._client is None:
            import boto3

            self._client = boto3.client("sqs")
        return self._client

    def send(self, letter: Mapping[str, Any]) -> None:
        try:
            self.client.send_message(
                QueueUrl=self._queue_url,
                MessageBody=json.dumps(letter, default=str, sort_keys=True),
                MessageAttributes={
                    "reason": {"DataType": "String", "StringValue": str(letter.get("reason", "unknown"))}
                },
            )
        except (ClientError, BotoCoreError) as error:
            raise DeadLetterSendError(f"dead-letter queue unreachable: {type(error).__name__}") from error
