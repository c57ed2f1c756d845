"""The DynamoDB run lock through boto3 against moto's server, and the engine's fence across lost items."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import boto3
import pytest
from botocore.config import Config

from donation_processor.adapters.donation_store import MongoDonationStore
from donation_processor.adapters.run_lock import DynamoDbRunLock
from donation_processor.engine import DonationEngine
from donation_processor.exceptions import LockContendedError, LockLostError, LockUnavailableError
from donation_processor.invocation import RunRequest
from donation_processor.lease_keeper import LeaseKeeper
from donation_processor.ports import LockLease, PaymentIntentResult
from harness.local.aws_local import dynamodb_client
from harness.local.seed import scheduled_donation
from harness.local.services import LocalServices
from tests.support.clock import TestClock

LOCK_KEY = {"lockId": {"S": "scheduled-donations"}}
LEASE_SECONDS = 60
FIVE_MINUTES_MS = 5 * 60 * 1000
SKEWS = [FIVE_MINUTES_MS, -FIVE_MINUTES_MS]
SKEW_IDS = ["clock-5-min-ahead", "clock-5-min-behind"]
CLOCK_FENCE = 1_800_000_000_000  # a fence of the previous design: epoch milliseconds
SCHEDULED = RunRequest(source="schedule")
PLENTY_OF_TIME: Callable[[], int] = lambda: 900_000  # noqa: E731


@dataclass
class Host:
    """One container's clocks: a wall clock `skew_ms` off the true time, and a monotonic clock that moves
    only while the lock sleeps, calling `on_sleep` after each nap (another container renewing meanwhile)."""

    skew_ms: int = 0
    monotonic: float = 0.0
    on_sleep: Callable[[], None] = lambda: None

    def wall_ms(self) -> int:
        return int(time.time() * 1000) + self.skew_ms

    def elapsed(self) -> float:
        return self.monotonic

    def sleep(self, seconds: float) -> None:
        self.monotonic += seconds
        self.on_sleep()


class LiveHolder:
    """A run that keeps its lease: it renews every third of a lease, as time passes on `host`'s clock."""

    def __init__(self, lock: DynamoDbRunLock, lease: LockLease, host: Host) -> None:
        self.lock, self.lease, self._host = lock, lease, host
        self._renewed_at = host.monotonic
        host.on_sleep = self.tick

    def tick(self) -> None:
        if self._host.monotonic - self._renewed_at >= LEASE_SECONDS / 3:
            self.lease = self.lock.renew(self.lease)
            self._renewed_at = self._host.monotonic


def _lock(services: LocalServices, host: Host | None = None) -> DynamoDbRunLock:
    host = host or Host()
    return DynamoDbRunLock(
        services.lock_table_name,
        "scheduled-donations",
        LEASE_SECONDS,
        client=dynamodb_client(services.moto.endpoint_url),
        clock_ms=host.wall_ms,
        monotonic=host.elapsed,
        sleep=host.sleep,
    )


def _lock_item(services: LocalServices) -> dict[str, Any]:
    client = dynamodb_client(services.moto.endpoint_url)
    return dict(
        client.get_item(TableName=services.lock_table_name, Key=LOCK_KEY, ConsistentRead=True)["Item"]
    )


def _delete_lock_item(services: LocalServices) -> None:
    dynamodb_client(services.moto.endpoint_url).delete_item(TableName=services.lock_table_name, Key=LOCK_KEY)


def test_a_held_lock_is_contended_and_a_released_one_is_taken_with_a_larger_fence(
    services: LocalServices,
) -> None:
    # GIVEN run A holds the lock and keeps renewing it
    lock_a = _lock(services)
    watcher = Host()
    holder = LiveHolder(lock_a, lock_a.acquire("run-a"), watcher)
    lock_b = _lock(services, watcher)

    # WHEN run B tries while A holds it, and again after A released it
    with pytest.raises(LockContendedError):
        lock_b.acquire("run-b")
    lock_a.release(holder.lease)
    second = lock_b.acquire("run-b")

    # THEN B got it only the second time, with a larger fence
    assert second.owner == "run-b"
    assert second.fence > holder.lease.fence


@pytest.mark.parametrize("skew_ms", SKEWS, ids=SKEW_IDS)
def test_a_container_whose_clock_is_minutes_off_never_takes_a_lock_whose_holder_renews(
    services: LocalServices, skew_ms: int
) -> None:
    # GIVEN run A holds the lock (lease 60 s) and renews it every 20 s
    lock_a = _lock(services)
    contender = Host(skew_ms=skew_ms)
    holder = LiveHolder(lock_a, lock_a.acquire("run-a"), contender)

    # WHEN a container whose wall clock is five minutes off tries to take it
    # THEN it sees A's record version change within one lease of its own clock and skips; A still holds it
    with pytest.raises(LockContendedError):
        _lock(services, contender).acquire("run-b")
    assert contender.monotonic < LEASE_SECONDS
    holder.lease = lock_a.renew(holder.lease)
    assert _lock_item(services)["owner"]["S"] == "run-a"


@pytest.mark.parametrize(
    "skew_ms", [FIVE_MINUTES_MS, 0, -FIVE_MINUTES_MS], ids=[*SKEW_IDS[:1], "same-clock", *SKEW_IDS[1:]]
)
def test_a_dead_holder_is_taken_over_after_one_lease_of_the_acquirers_own_clock(
    services: LocalServices, skew_ms: int
) -> None:
    # GIVEN run A took the lock and died: it never renews
    lock_a = _lock(services)
    dead = lock_a.acquire("run-a")

    # WHEN run B, on a container whose wall clock is `skew_ms` off, tries to take it
    acquirer = Host(skew_ms=skew_ms)
    lock_b = _lock(services, acquirer)
    fresh = lock_b.acquire("run-b")

    # THEN B took it over once A's record version had stayed the same for one lease of B's monotonic clock
    # (not earlier, and not much later), with the next fence; A can neither renew nor release B's lock
    assert LEASE_SECONDS <= acquirer.monotonic < LEASE_SECONDS + 6
    assert (fresh.owner, fresh.fence) == ("run-b", dead.fence + 1)
    with pytest.raises(LockLostError):
        lock_a.renew(dead)
    lock_a.release(dead)
    lock_b.renew(fresh)


def test_every_renewal_writes_a_new_record_version_so_only_the_latest_lease_renews(
    services: LocalServices,
) -> None:
    # GIVEN a lease that was renewed once
    lock = _lock(services)
    first = lock.acquire("run-a")
    renewed = lock.renew(first)

    # WHEN the outdated lease is renewed again
    # THEN it is refused, while the current one renews and keeps its fence
    with pytest.raises(LockLostError):
        lock.renew(first)
    assert lock.renew(renewed).fence == first.fence


def test_deleting_the_lock_item_makes_the_holders_next_renewal_fail(services: LocalServices) -> None:
    # GIVEN run A holds the lock, and the item is deleted (by hand, or a re-created table)
    lock = _lock(services)
    lease = lock.acquire("run-a")
    _delete_lock_item(services)

    # WHEN A's lease keeper tries to renew
    with LeaseKeeper(lock, lease, interval_seconds=0.1) as keeper:
        # THEN it reports the lock lost
        assert keeper.lost.wait(timeout=5)


def test_the_fence_is_a_counter_that_grows_by_one_with_every_acquisition(services: LocalServices) -> None:
    # GIVEN a new lock table
    lock = _lock(services)

    # WHEN three runs take the lock one after the other
    fences = []
    for owner in ("run-a", "run-b", "run-c"):
        lease = lock.acquire(owner)
        fences.append(lease.fence)
        lock.release(lease)

    # THEN the fences count 1, 2, 3: no clock is involved
    assert fences == [1, 2, 3]


def test_a_lost_item_restarts_the_counter_and_raise_fence_lifts_it_above_a_floor(
    services: LocalServices,
) -> None:
    # GIVEN a lock item that was lost after runs had stamped fences up to 1.8e12 in MongoDB
    lock = _lock(services)
    lease = lock.acquire("run-a")

    # WHEN the run raises its fence above that floor, and above a lower one
    raised = lock.raise_fence(lease, CLOCK_FENCE)
    unchanged = lock.raise_fence(raised, 5)

    # THEN the counter restarted at 1, now stands just above the floor, and counts on from there; a lease
    # that no longer holds the lock cannot raise it
    assert lease.fence == 1
    assert raised.fence == unchanged.fence == CLOCK_FENCE + 1
    assert int(_lock_item(services)["fence"]["N"]) == CLOCK_FENCE + 1
    lock.release(raised)
    with pytest.raises(LockLostError):
        lock.raise_fence(raised, CLOCK_FENCE + 10)
    assert lock.acquire("run-b").fence == CLOCK_FENCE + 2


def test_an_item_written_by_the_clock_based_lock_is_taken_once_released_and_its_fence_counts_on(
    services: LocalServices,
) -> None:
    # GIVEN the lock item the previous design left: released, fence in epoch ms, no record version
    dynamodb_client(services.moto.endpoint_url).put_item(
        TableName=services.lock_table_name,
        Item={**LOCK_KEY, "fence": {"N": str(CLOCK_FENCE)}, "leaseExpiresAt": {"N": "0"}},
    )

    # WHEN the first run of this version takes the lock
    lease = _lock(services).acquire("run-a")

    # THEN it gets it at once, with the next fence
    assert lease.fence == CLOCK_FENCE + 1


def test_only_one_of_many_simultaneous_acquirers_wins(services: LocalServices) -> None:
    # GIVEN eight runs starting at the same moment; one that finds the lock held would watch the holder
    # for a lease, which here ends its attempt (the winner is alive)
    barrier = threading.Barrier(8)
    winners: list[str] = []
    losers: list[str] = []

    def holder_alive() -> None:
        raise LockContendedError("the holder renewed while we watched")

    def contend(owner: str) -> None:
        lock = _lock(services, Host(on_sleep=holder_alive))
        barrier.wait()
        try:
            lock.acquire(owner)
            winners.append(owner)
        except LockContendedError:
            losers.append(owner)

    # WHEN they all try to take the lock
    threads = [threading.Thread(target=contend, args=(f"run-{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    # THEN exactly one holds it
    assert len(winners) == 1
    assert len(losers) == 7


def test_an_unreachable_lock_table_refuses_instead_of_running_unlocked() -> None:
    # GIVEN a DynamoDB endpoint where nothing listens
    client = boto3.client(
        "dynamodb",
        endpoint_url="http://127.0.0.1:9",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(connect_timeout=1, read_timeout=1, retries={"max_attempts": 1}),
    )
    lock = DynamoDbRunLock("any", "scheduled-donations", 60, client=client)

    # WHEN a run tries to take the lock
    # THEN it is told the lock is unavailable
    with pytest.raises(LockUnavailableError, match="unreachable"):
        lock.acquire("run-a")


def test_the_lease_keeper_notices_a_lost_lock(services: LocalServices) -> None:
    # GIVEN run A stopped renewing, and run B took the lock over after watching it for a lease
    lock_a = _lock(services)
    lease = lock_a.acquire("run-a")
    _lock(services).acquire("run-b")

    # WHEN A's lease keeper tries to renew
    with LeaseKeeper(lock_a, lease, interval_seconds=0.1) as keeper:
        # THEN it reports the lock lost
        assert keeper.lost.wait(timeout=5)


# -- the engine: fences above MongoDB, a lock lost mid-run ---------------------------------------------------


def _seed(services: LocalServices, clock: TestClock, count: int = 1, **fields: Any) -> list[Any]:
    documents = [
        scheduled_donation(
            customer_id=services.stripe.state.create_customer(),
            next_run_at=clock.now - timedelta(hours=1),
            **fields,
        )
        for _ in range(count)
    ]
    services.database["scheduled_donations"].insert_many(documents)
    return [document["_id"] for document in documents]


def _charges_per_period(services: LocalServices) -> list[int]:
    return sorted(services.stripe.state.charge_counts_by().values())


def test_the_highest_fence_is_the_largest_number_among_schedule_claims_and_intent_leases(
    services: LocalServices,
) -> None:
    # GIVEN no fence yet, then claims and leases stamped 7 and 9, and a claimFence a host wrote as text
    store = MongoDonationStore(services.database)
    empty = store.highest_fence()
    services.database["scheduled_donations"].insert_many(
        [{"claimFence": 7}, {"claimFence": "99999"}, {"status": "active"}]
    )
    services.database["donations"].insert_many([{"lease": {"fence": 9}}, {"lease": {"runId": "run-a"}}])

    # WHEN the highest fence is read
    # THEN it is 0 before any fence, and then the larger number of the two collections
    assert (empty, store.highest_fence()) == (0, 9)


def test_the_first_run_after_the_clock_based_fence_fences_above_its_claims(
    services: LocalServices, clock: TestClock, make_engine: Callable[..., DonationEngine]
) -> None:
    # GIVEN a due donation released by a run of the previous design (claimFence 1.8e12, epoch ms) and a
    # lock table without an item
    [donation_id] = _seed(services, clock, claimFence=CLOCK_FENCE)

    # WHEN the first run of this version takes the lock
    summary = make_engine().run(SCHEDULED, PLENTY_OF_TIME)

    # THEN its fence is above that claim: it charged the donation, and the lock's counter moved past it
    assert (summary.status, summary.succeeded) == ("completed", 1)
    assert int(_lock_item(services)["fence"]["N"]) == CLOCK_FENCE + 1
    document = services.database["scheduled_donations"].find_one({"_id": donation_id})
    assert document is not None
    assert document["claimFence"] == CLOCK_FENCE + 1


def test_the_fence_outranks_every_earlier_run_even_after_the_lock_item_is_deleted(
    services: LocalServices, clock: TestClock, make_engine: Callable[..., DonationEngine]
) -> None:
    # GIVEN a run that charged a donation, after which the lock item was deleted
    _seed(services, clock)
    assert make_engine().run(SCHEDULED, PLENTY_OF_TIME).succeeded == 1
    before = int(_lock_item(services)["fence"]["N"])
    _delete_lock_item(services)

    # WHEN the next run, on a container whose clock is five minutes behind, finds a new donation due
    clock.advance(minutes=-5)
    _seed(services, clock)
    summary = make_engine().run(SCHEDULED, PLENTY_OF_TIME)

    # THEN its fence is above the earlier run's, and it charged the new donation
    assert summary.succeeded == 1
    assert int(_lock_item(services)["fence"]["N"]) > before


class DeletesTheLockItem:
    """The real Stripe adapter, except that the first charge deletes the lock item and then lasts past the
    holder's next renewal."""

    def __init__(self, inner: Any, services: LocalServices, seconds: float) -> None:
        self._inner, self._services, self._seconds = inner, services, seconds
        self.deleted = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def create_payment_intent(self, params: Any, idempotency_key: str) -> PaymentIntentResult:
        if not self.deleted:
            self.deleted = True
            _delete_lock_item(self._services)
            time.sleep(self._seconds)
        answer: PaymentIntentResult = self._inner.create_payment_intent(params, idempotency_key)
        return answer


def test_deleting_the_lock_item_mid_run_stops_the_holder_and_the_next_run_finishes_the_work(
    services: LocalServices, clock: TestClock, make_engine: Callable[..., DonationEngine]
) -> None:
    # GIVEN four due donations and run A (lease 10 s, renewed every 3.3 s; one charge at a time, two
    # claimed per batch), whose lock item is deleted during its first charge, which lasts 4 s
    _seed(services, clock, 4)
    settings = {"LOCK_LEASE_SECONDS": "10", "BATCH_SIZE": "2", "MAX_CONCURRENCY": "1"}
    built = make_engine(**settings)
    payments = DeletesTheLockItem(built._deps.payments, services, seconds=4.0)
    run_a = DonationEngine(
        built._settings, replace(built._deps, payments=payments), clock=clock, sleep=lambda _s: None
    )

    # WHEN A runs, and then run B, whose clock has not moved on from A's
    first = run_a.run(SCHEDULED, PLENTY_OF_TIME)
    second = make_engine(**settings).run(SCHEDULED, PLENTY_OF_TIME)

    # THEN A's next renewal failed and A claimed nothing more (it finished the charge in flight and let
    # the other one it had claimed go); B's fence outranks A's, so B charged the other three, the one A
    # let go included; every period was charged once
    assert payments.deleted
    assert (first.status, first.due, first.succeeded) == ("partial", 2, 1)
    assert (second.status, second.succeeded) == ("completed", 3)
    assert _charges_per_period(services) == [1, 1, 1, 1]
