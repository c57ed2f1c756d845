"""The job lock: one DynamoDB item, taken and kept with conditional writes, with a fencing token.

Lease semantics are those of awslabs/amazon-dynamodb-lock-client (`AmazonDynamoDBLockClient.acquireLock`,
`sendHeartbeat` and `LockObservation` in src/main/java/com/amazonaws/services/dynamodbv2/): every acquire,
renewal and release writes a fresh record version number (RVN), and a lock held by another owner counts as
expired only once its RVN has stayed the same for a whole lease duration measured on the acquirer's own
monotonic clock. No host compares a time another host wrote with its own clock, so a container whose clock
is minutes off can neither take a live lock nor hold on to a dead one. `leaseExpiresAt` (the holder's own
clock) is written for operators only (`donations status`); nothing here reads it.

The fence is a counter on the item, incremented by the acquiring write itself (`ADD fence :one`). A lost
item restarts it, so the engine lifts each new fence above every fence already in MongoDB (`raise_fence`)
before it claims anything.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from donation_processor.exceptions import LockContendedError, LockLostError, LockUnavailableError
from donation_processor.observability import logger
from donation_processor.ports import LockLease

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

# The item is kept after release so the fence keeps growing; TTL only sweeps locks abandoned for a week.
_TTL_SECONDS = 7 * 24 * 3600
_POLL_SECONDS = 5.0
_RVN = "recordVersionNumber"
_NAMES = {"#owner": "owner", "#rvn": _RVN}


@dataclass(frozen=True)
class DynamoDbLease(LockLease):
    """A lease of this lock, with the record version number its holder wrote last."""

    rvn: str


def _is_conditional_failure(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def _unavailable(error: ClientError) -> LockUnavailableError:
    return LockUnavailableError(f"lock table error: {error.response['Error'].get('Code')}")


def _holder(item: Mapping[str, Any]) -> str | None:
    owner: str | None = item.get("owner", {}).get("S")
    return owner


def _version(item: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """What every write of a holder changes: its RVN (on an item of the previous, clock-based design, which
    had none, its lease end)."""
    version = item.get(_RVN, {}).get("S") or item.get("leaseExpiresAt", {}).get("N")
    return _holder(item), version


def _unchanged_since(item: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """A condition that holds only while the item is still as read."""
    if not item:
        return "attribute_not_exists(lockId)", {}
    if _RVN in item:
        return "#rvn = :seen", {":seen": item[_RVN]}
    if "leaseExpiresAt" in item:
        return "attribute_not_exists(#rvn) AND leaseExpiresAt = :seen", {":seen": item["leaseExpiresAt"]}
    return "attribute_not_exists(#rvn) AND attribute_not_exists(leaseExpiresAt)", {}


def _dynamodb_lease(lease: LockLease) -> DynamoDbLease:
    if not isinstance(lease, DynamoDbLease):
        raise TypeError("not a lease of the DynamoDB run lock")
    return lease


class DynamoDbRunLock:
    """Lease-based lock. acquire() raises LockContendedError while another live run holds it."""

    def __init__(
        self,
        table_name: str,
        lock_name: str,
        lease_seconds: int,
        client: DynamoDBClient | None = None,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        poll_seconds: float = _POLL_SECONDS,
    ) -> None:
        self._table = table_name
        self._key = {"lockId": {"S": lock_name}}
        self._lease_ms = lease_seconds * 1000
        self._client = client
        self._clock_ms = clock_ms  # only for this holder's own deadline, and leaseExpiresAt for operators
        self._monotonic = monotonic  # the only clock that decides whether another holder is dead
        self._sleep = sleep
        self._poll_seconds = poll_seconds

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
        """Take the lock with the next fence; LockContendedError while another holder is alive.

        A free item (missing, or released) is taken at once. A held one is watched, polling every few
        seconds: if its RVN changes within a lease duration (the holder's or ours, the longer) the holder is
        alive and this run is skipped; if it does not, the holder is dead and the lock is taken over. Every
        take is conditional on the item being as last read, so of two racing acquirers one loses cleanly.
        """
        try:
            item = self._read()
            if _holder(item) is not None:
                self._wait_out(item)
            return self._take(owner, item)
        except ClientError as error:
            if _is_conditional_failure(error):
                raise LockContendedError("another run took the lock first") from error
            raise _unavailable(error) from error
        except BotoCoreError as error:
            raise LockUnavailableError(f"lock table unreachable: {type(error).__name__}") from error

    def _wait_out(self, seen: Mapping[str, Any]) -> None:
        """Return once the holder's RVN stayed unchanged for a lease on our clock; raise if it changed."""
        lease_seconds = max(self._lease_ms, int(seen.get("leaseDurationMs", {}).get("N", "0"))) / 1000
        since = self._monotonic()
        while (waited := self._monotonic() - since) < lease_seconds:
            self._sleep(min(self._poll_seconds, lease_seconds - waited))
            if _version(self._read()) != _version(seen):
                raise LockContendedError("another run holds the lock and is alive")
        logger.warning("lock holder stopped renewing; taking the lock over", holder=_holder(seen))

    def _lease_values(self, rvn: str, sent_ms: int) -> dict[str, Any]:
        expires = sent_ms + self._lease_ms
        return {
            ":rvn": {"S": rvn},
            ":lease": {"N": str(self._lease_ms)},
            ":expires": {"N": str(expires)},
            ":ttl": {"N": str(expires // 1000 + _TTL_SECONDS)},
        }

    def _take(self, owner: str, seen: Mapping[str, Any]) -> DynamoDbLease:
        condition, values = _unchanged_since(seen)
        rvn, sent_ms = uuid.uuid4().hex, self._clock_ms()
        answer = self.client.update_item(
            TableName=self._table,
            Key=self._key,
            UpdateExpression="SET #owner = :owner, #rvn = :rvn, leaseDurationMs = :lease, "
            "leaseExpiresAt = :expires, expiresAt = :ttl ADD fence :one",
            ConditionExpression=condition,
            ExpressionAttributeNames=_NAMES,
            ExpressionAttributeValues={
                **values,
                **self._lease_values(rvn, sent_ms),
                ":owner": {"S": owner},
                ":one": {"N": "1"},
            },
            ReturnValues="UPDATED_NEW",
        )
        fence = int(answer["Attributes"]["fence"]["N"])
        return DynamoDbLease(owner=owner, fence=fence, expires_at_ms=sent_ms + self._lease_ms, rvn=rvn)

    def _write_held(
        self, lease: LockLease, expression: str, values: dict[str, Any], condition: str = ""
    ) -> None:
        """An update that applies only while this lease still holds the lock (owner and RVN unchanged)."""
        self.client.update_item(
            TableName=self._table,
            Key=self._key,
            UpdateExpression=expression,
            ConditionExpression="#owner = :owner AND #rvn = :held" + condition,
            ExpressionAttributeNames=_NAMES,
            ExpressionAttributeValues={
                ":owner": {"S": lease.owner},
                ":held": {"S": _dynamodb_lease(lease).rvn},
                **values,
            },
        )

    def renew(self, lease: LockLease) -> LockLease:
        """Write a new RVN (the heartbeat watchers look for); LockLostError if the lock is no longer ours."""
        rvn, sent_ms = uuid.uuid4().hex, self._clock_ms()
        try:
            self._write_held(
                lease,
                "SET #rvn = :rvn, leaseDurationMs = :lease, leaseExpiresAt = :expires, expiresAt = :ttl",
                self._lease_values(rvn, sent_ms),
            )
        except ClientError as error:
            if _is_conditional_failure(error):
                raise LockLostError("the lock was taken over, released or deleted") from error
            raise _unavailable(error) from error
        except BotoCoreError as error:
            raise LockUnavailableError(f"lock table unreachable: {type(error).__name__}") from error
        return replace(_dynamodb_lease(lease), rvn=rvn, expires_at_ms=sent_ms + self._lease_ms)

    def raise_fence(self, lease: LockLease, floor: int) -> LockLease:
        """Lift the fence to floor + 1 unless it is above floor already. The RVN stays: only the holder
        writes the fence, and watchers should not mistake this write for a heartbeat."""
        if lease.fence > floor:
            return lease
        try:
            self._write_held(
                lease,
                "SET fence = :raised",
                {":raised": {"N": str(floor + 1)}, ":floor": {"N": str(floor)}},
                condition=" AND fence <= :floor",
            )
        except ClientError as error:
            if _is_conditional_failure(error):
                raise LockLostError("the lock was lost before its fence was raised") from error
            raise _unavailable(error) from error
        except BotoCoreError as error:
            raise LockUnavailableError(f"lock table unreachable: {type(error).__name__}") from error
        return replace(_dynamodb_lease(lease), fence=floor + 1)

    def release(self, lease: LockLease, last_run: Mapping[str, Any] | None = None) -> None:
        expression = "SET leaseExpiresAt = :zero, #rvn = :rvn REMOVE #owner"
        values: dict[str, Any] = {":zero": {"N": "0"}, ":rvn": {"S": uuid.uuid4().hex}}
        if last_run is not None:
            # The last run's summary lives on the lock item, where `donations status` reads it.
            expression = "SET leaseExpiresAt = :zero, #rvn = :rvn, lastRun = :last REMOVE #owner"
            values[":last"] = {"S": json.dumps(dict(last_run), sort_keys=True, default=str)}
        try:
            self._write_held(lease, expression, values)
        except ClientError as error:
            if _is_conditional_failure(error):
                logger.warning("lock already taken over or deleted at release", fence=lease.fence)
                return
            logger.warning("lock release failed; the lease will expire", error_code=error.response["Error"])
        except BotoCoreError as error:
            logger.warning("lock release failed; the lease will expire", error_type=type(error).__name__)
