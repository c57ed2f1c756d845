"""The job lock: one DynamoDB item, taken and kept with conditional writes, with a fencing token."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from donation_processor.exceptions import LockContendedError, LockLostError, LockUnavailableError
from donation_processor.observability import logger
from donation_processor.ports import LockLease

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

# The item is kept after release so the fence keeps growing; TTL only sweeps locks abandoned for a week.
_TTL_SECONDS = 7 * 24 * 3600


def _is_conditional_failure(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


class DynamoDbRunLock:
    """Lease-based lock. acquire() raises LockContendedError while another live run holds it."""

    def __init__(
        self,
        table_name: str,
        lock_name: str,
        lease_seconds: int,
        client: DynamoDBClient | None = None,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self._table = table_name
        self._key = {"lockId": {"S": lock_name}}
        self._lease_ms = lease_seconds * 1000
        self._client = client
        self._clock_ms = clock_ms

    @property
    def client(self) -> DynamoDBClient:
        if self._client is None:
            import boto3

            self._client = boto3.client("dynamodb")
        return self._client

    @property
    def lease_seconds(self) -> float:
        return self._lease_ms / 1000

    def now_ms(self) -> int:
        return self._clock_ms()

    def _read(self) -> dict[str, Any]:
        answer = self.client.get_item(TableName=self._table, Key=self._key, ConsistentRead=True)
        return dict(answer.get("Item", {}))

    def acquire(self, owner: str) -> LockLease:
        """Take the lock with a fence larger than any before it.

        The fence is max(previous + 1, now in epoch ms): it grows on every acquisition, and it keeps
        growing even if the lock item is lost (table re-created), so claims stamped with an old fence can
        never outrank a new run's.
        """
        try:
            item = self._read()
            now = self._clock_ms()
            previous = int(item["fence"]["N"]) if "fence" in item else None
            if item and int(item.get("leaseExpiresAt", {}).get("N", "0")) >= now:
                raise LockContendedError("another run holds the lock")
            fence = max(now, (previous or 0) + 1)
            expires = now + self._lease_ms
            values: dict[str, Any] = {
                ":owner": {"S": owner},
                ":expires": {"N": str(expires)},
                ":ttl": {"N": str(expires // 1000 + _TTL_SECONDS)},
                ":fence": {"N": str(fence)},
                ":now": {"N": str(now)},
            }
            # The fence condition makes a racing acquirer (who read the same item) lose cleanly.
            fence_condition = "attribute_not_exists(fence)"
            if previous is not None:
                fence_condition = "fence = :previous"
                values[":previous"] = {"N": str(previous)}
            self.client.update_item(
                TableName=self._table,
                Key=self._key,
                UpdateExpression="SET #owner = :owner, leaseExpiresAt = :expires, expiresAt = :ttl, "
                "fence = :fence",
                ConditionExpression="(attribute_not_exists(lockId) OR leaseExpiresAt < :now) AND "
                + fence_condition,
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues=values,
            )
        except ClientError as error:
            if _is_conditional_failure(error):
                raise LockContendedError("another run took the lock first") from error
            raise LockUnavailableError(f"lock table error: {error.response['Error'].get('Code')}") from error
        except BotoCoreError as error:
            raise LockUnavailableError(f"lock table unreachable: {type(error).__name__}") from error
        return LockLease(owner=owner, fence=fence, expires_at_ms=expires)

    def _conditional_update(self, lease: LockLease, expression: str, values: dict[str, Any]) -> None:
        self.client.update_item(
            TableName=self._table,
            Key=self._key,
            UpdateExpression=expression,
            ConditionExpression="#owner = :owner AND fence = :fence",
            ExpressionAttributeNames={"#owner": "owner"},
            ExpressionAttributeValues={
                ":owner": {"S": lease.owner},
                ":fence": {"N": str(lease.fence)},
                **values,
            },
        )

    def renew(self, lease: LockLease) -> LockLease:
        expires = self._clock_ms() + self._lease_ms
        try:
            self._conditional_update(
                lease,
                "SET leaseExpiresAt = :expires, expiresAt = :ttl",
                {":expires": {"N": str(expires)}, ":ttl": {"N": str(expires // 1000 + _TTL_SECONDS)}},
            )
        except ClientError as error:
            if _is_conditional_failure(error):
                raise LockLostError("the lock was taken over by another run") from error
            raise LockUnavailableError(f"lock table error: {error.response['Error'].get('Code')}") from error
        except BotoCoreError as error:
            raise LockUnavailableError(f"lock table unreachable: {type(error).__name__}") from error
        return LockLease(owner=lease.owner, fence=lease.fence, expires_at_ms=expires)

    def release(self, lease: LockLease, last_run: Mapping[str, Any] | None = None) -> None:
        expression, values = "SET leaseExpiresAt = :zero REMOVE #owner", {":zero": {"N": "0"}}
        if last_run is not None:
            # The last run's summary lives on the lock item, where `donations status` reads it.
            expression = "SET leaseExpiresAt = :zero, lastRun = :last REMOVE #owner"
            values[":last"] = {"S": json.dumps(dict(last_run), sort_keys=True, default=str)}
        try:
            self._conditional_update(lease, expression, values)
        except ClientError as error:
            if _is_conditional_failure(error):
                logger.warning("lock already taken over at release", fence=lease.fence)
                return
            logger.warning("lock release failed; the lease will expire", error_code=error.response["Error"])
        except BotoCoreError as error:
            logger.warning("lock release failed; the lease will expire", error_type=type(error).__name__)
