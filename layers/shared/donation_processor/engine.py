"""One run of the job: lock, stream due donations in batches, charge them concurrently, summarise.

Knows nothing of Lambda: the remaining time arrives as a function, the adapters through the constructor.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from donation_processor.catch_up import CatchUpPolicy
from donation_processor.charge_processor import ChargeProcessor, RunContext, Work
from donation_processor.charge_rules import ChargePolicy
from donation_processor.circuit_breaker import CircuitBreaker
from donation_processor.config import Settings
from donation_processor.dead_letters import DeadLetterCourier
from donation_processor.exceptions import (
    LockContendedError,
    PauseSwitchUnavailableError,
    PaymentsUnavailableError,
    StoreError,
)
from donation_processor.in_flight import InFlightGovernor
from donation_processor.invocation import RunRequest
from donation_processor.lease_keeper import LeaseKeeper
from donation_processor.observability import logger
from donation_processor.ports import (
    Claim,
    DeadLetterPort,
    DonationStorePort,
    DonorEventsPort,
    LockLease,
    PacingPort,
    PauseSwitchPort,
    PaymentsPort,
    RunLockPort,
)
from donation_processor.summary import RunSummary
from donation_processor.systemic_guard import SystemicGuard
from donation_processor.validation import KNOWN_STATUSES, InvalidDonation, validate
from donation_processor.work_claims import WorkClaims


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class EngineDependencies:
    lock: RunLockPort
    store: DonationStorePort
    payments: PaymentsPort
    dead_letters: DeadLetterPort
    pause_switch: PauseSwitchPort | None = None
    donor_events: DonorEventsPort | None = None
    # The Stripe rate limiter; without it, concurrency assumes the configured rate.
    pacing: PacingPort | None = None


class DonationEngine:
    def __init__(
        self,
        settings: Settings,
        dependencies: EngineDependencies,
        clock: Callable[[], datetime] = utc_now,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._settings = settings
        self._deps = dependencies
        self._clock = clock
        self._sleep = sleep
        self._courier = DeadLetterCourier(dependencies.store, dependencies.dead_letters)
        self._policy = ChargePolicy(
            max_attempts=settings.max_attempts,
            dunning_schedule_days=settings.dunning_schedule_days,
            retry_attempts=settings.stripe_retry_attempts,
        )

    def run(self, request: RunRequest, remaining_ms: Callable[[], int]) -> RunSummary:
        started = time.monotonic()
        run_id = f"run-{uuid.uuid4().hex[:16]}"
        logger.append_keys(run_id=run_id)
        summary = RunSummary(run_id=run_id)
        try:
            if request.dry_run:
                self._dry_run(request, summary)
            else:
                self._locked_run(request, remaining_ms, summary)
        finally:
            summary.duration_ms = int((time.monotonic() - started) * 1000)
        logger.info("run finished", **summary.to_dict())
        return summary

    # -- dry run ------------------------------------------------------------------------------------------

    def _dry_run(self, request: RunRequest, summary: RunSummary) -> None:
        """Report what would be charged; no lock, no claim, no write, no Stripe call."""
        summary.status = "dry_run"
        for document in self._deps.store.iter_due(self._clock(), request.donation_ids, request.limit):
            summary.add(due=1)
            try:
                donation = validate(document)
            except InvalidDonation as error:
                summary.add(invalid=1)
                logger.info(
                    "dry run: would mark invalid",
                    donation_id=str(document.get("_id"))[:64],
                    reason=str(error),
                )
                continue
            summary.add_amount(donation.currency, donation.amount)

    # -- real run -----------------------------------------------------------------------------------------

    def _paused(self) -> bool:
        return self._deps.pause_switch is not None and self._deps.pause_switch.is_paused()

    def _locked_run(self, request: RunRequest, remaining_ms: Callable[[], int], summary: RunSummary) -> None:
        if self._paused():
            summary.status = "paused"
            logger.warning("charging is paused by the operator switch; nothing charged")
            return
        try:
            lease = self._deps.lock.acquire(summary.run_id)
        except LockContendedError:
            summary.status = "skipped_locked"
            logger.info("another run holds the lock; nothing charged")
            return
        logger.info("lock acquired", fence=lease.fence)
        keeper = LeaseKeeper(
            self._deps.lock,
            lease,
            interval_seconds=max(1.0, self._settings.lock_lease_seconds / 3),
            clock_ms=lambda: int(self._clock().timestamp() * 1000),
        )
        started = time.monotonic()
        summary.status = "running"
        try:
            with keeper:
                self._deps.store.ensure_indexes()
                # The lock's counter restarts when its item is lost: never claim at or below a fence
                # already written in MongoDB.
                keeper.raise_fence(self._deps.store.highest_fence())
                logger.info("fence set above every fence in MongoDB", fence=keeper.lease.fence)
                delivered, parked = self._courier.flush_parked()
                summary.add(dead_lettered=delivered, dead_letters_deferred=parked)
                try:
                    self._process_due(request, keeper.lease, keeper, remaining_ms, summary)
                finally:
                    if self._deps.donor_events is not None:
                        summary.donor_events_failed = self._deps.donor_events.flush()
                self._count_overdue(summary)
        except BaseException:
            summary.status = "failed"  # what `donations status` shows as the last run
            raise
        finally:
            summary.duration_ms = int((time.monotonic() - started) * 1000)
            self._deps.lock.release(keeper.lease, last_run=summary.to_dict())

    def _count_overdue(self, summary: RunSummary) -> None:
        """Due for longer than OVERDUE_AFTER_HOURS and still active: the job is falling behind."""
        cutoff = self._clock() - timedelta(hours=self._settings.overdue_after_hours)
        try:
            summary.overdue = self._deps.store.count_overdue(cutoff)
            summary.unseen_no_date, summary.unseen_unknown_status = self._deps.store.count_unseen(
                KNOWN_STATUSES
            )
        except StoreError as error:
            logger.error("could not count overdue or unseen donations", error=str(error))
        if summary.unseen_no_date or summary.unseen_unknown_status:
            logger.warning(
                "documents the due query cannot see: never charged until fixed",
                no_usable_next_run_at=summary.unseen_no_date,
                unknown_status=summary.unseen_unknown_status,
            )

    def _process_due(
        self,
        request: RunRequest,
        lease: LockLease,
        keeper: LeaseKeeper,
        remaining_ms: Callable[[], int],
        summary: RunSummary,
    ) -> None:
        settings = self._settings
        breaker = CircuitBreaker(
            settings.circuit_breaker_threshold,
            cool_down_seconds=settings.circuit_cool_down_seconds,
            outage_window_seconds=settings.circuit_outage_window_seconds,
        )
        processor = ChargeProcessor(
            self._deps.store,
            self._deps.payments,
            self._courier,
            breaker,
            self._policy,
            self._clock,
            self._sleep,
            events=self._deps.donor_events,
            guard=SystemicGuard(settings.systemic_failure_threshold),
        )
        stop = threading.Event()
        claims = WorkClaims(
            self._deps.store,
            self._clock,
            settings.claim_lease_seconds,
            CatchUpPolicy(settings.missed_periods, timedelta(hours=settings.catch_up_min_interval_hours)),
        )
        ctx = RunContext(
            run_id=summary.run_id,
            claim=Claim(summary.run_id, lease.fence),
            stop=stop,
            summary=summary,
            lease_until=claims.lease_until,
        )
        margin_ms = settings.time_margin_seconds * 1000
        claimed = 0
        empty_claims = 0
        reason = "completed"
        fatal: BaseException | None = None
        in_flight: set[Future[None]] = set()

        def collect(done: set[Future[None]]) -> None:
            nonlocal fatal
            for future in done:
                error = future.exception()
                if error is not None and fatal is None:
                    fatal = error
                    stop.set()

        def stop_reason() -> str | None:
            nonlocal fatal
            if fatal is not None:
                return "fatal"
            if summary.systemic_code is not None:
                return "systemic_halt"
            if breaker.outage_exceeded:
                return "circuit_open"  # a short outage only pauses the workers at the breaker
            if keeper.lost.is_set():
                return "lock_lost"
            if remaining_ms() < margin_ms:
                return "time_budget"
            try:
                if self._paused():
                    return "paused"
            except PauseSwitchUnavailableError as error:
                fatal = error  # raised once what was claimed has been released
                return "fatal"
            return None

        pacing = self._deps.pacing
        governor = InFlightGovernor(
            (lambda: pacing.rate) if pacing is not None else (lambda: settings.stripe_max_rps),
            settings.max_concurrency,
        )
        claimed_not_started: deque[Work] = deque()

        def waited() -> float:
            return pacing.waited_by_current_thread() if pacing is not None else 0.0

        def charge(work: Work) -> None:
            started, waited_before = time.monotonic(), waited()
            processor.process(work, ctx)
            # Little's law wants the donation's own time: time spent queued for the limiter is not it.
            governor.record(time.monotonic() - started - (waited() - waited_before))

        with ThreadPoolExecutor(
            max_workers=settings.max_concurrency, thread_name_prefix="charge"
        ) as executor:
            while True:
                early = stop_reason()
                if early is not None:
                    reason = early
                    break
                # Keep just enough charges in flight for the rate limit at the latency we observe.
                while claimed_not_started and len(in_flight) < governor.target():
                    in_flight.add(executor.submit(charge, claimed_not_started.popleft()))
                if claimed_not_started:
                    done, in_flight = _wait_some(in_flight)
                    collect(done)
                    continue
                # Claim the next batch only when the last one is all started: memory stays flat.
                room = settings.batch_size
                if request.limit is not None:
                    room = min(room, request.limit - claimed)
                    if room <= 0:
                        break
                # Unresolved intents first, whatever their schedules say now; then due schedules.
                batch = claims.next_batch(ctx.claim, room, request.donation_ids)
                if batch == []:
                    break
                if batch is None:
                    # Every id was taken by someone else between the query and the claim; ask again,
                    # but never spin: a second empty claim in a row ends the run.
                    empty_claims += 1
                    if empty_claims >= 2:
                        break
                    continue
                empty_claims = 0
                claimed += len(batch)
                summary.add(due=len(batch))
                claimed_not_started.extend(batch)
            if reason != "completed" or fatal is not None:
                stop.set()  # claimed donations not yet started are released untouched; in-flight ones finish
            while claimed_not_started:
                in_flight.add(executor.submit(charge, claimed_not_started.popleft()))
            while in_flight:
                # Still watching the clock, the lock and the switch: retries stop once the run must.
                late = stop_reason() if reason == "completed" else None
                if late is not None:
                    reason = late
                    stop.set()
                done, in_flight = _wait_some(in_flight)
                collect(done)
        processor.finish(ctx)
        if fatal is not None:
            if isinstance(fatal, PaymentsUnavailableError):
                logger.error("run stopped: Stripe refused our credentials", error=str(fatal))
            raise fatal
        if summary.systemic_code is not None:
            reason = "systemic_halt"  # it may have been found while the last charges were finishing
        elif breaker.outage_exceeded:
            reason = "circuit_open"
        summary.status = {
            "completed": "completed",
            "circuit_open": "circuit_open",
            "paused": "paused",
            "systemic_halt": "systemic_halt",
        }.get(reason, "partial")
        if reason != "completed":
            logger.warning("run stopped early", stop_reason=reason)


def _wait_some(futures: set[Future[Any]]) -> tuple[set[Future[Any]], set[Future[Any]]]:
    done, pending = wait(futures, timeout=1.0, return_when=FIRST_COMPLETED)
    return set(done), set(pending)
