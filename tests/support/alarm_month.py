"""A month of the real engine on the fast tier's fakes, recorded as the metrics CloudWatch would hold.

One invocation per schedule tick (template.yaml's ScheduleExpression default) on a test clock. Each run is
the real DonationEngine on in-memory fakes; its EMF output (publish_run_metrics, as the handler emits it)
is read back as datapoints at the tick. Around it, what AWS itself would report: the function's
Invocations, Errors and Duration, and the dead-letter queue's NumberOfMessagesSent,
ApproximateNumberOfMessagesVisible and ApproximateAgeOfOldestMessage every 5 minutes, with an operator who
works the queue on weekdays at 10:00 UTC.

Donors: monthly schedules spread over the month, each with a card that behaves as the scenario says. So
that a month of runs stays fast, a schedule enters the store when it falls due and leaves it once nothing
in the month can touch it again (charged for the month, or stopped with its letter sent): every run sees
exactly the due donations, retries and letters it would see with all of them in the store.
"""

from __future__ import annotations

import io
import random
import re
from collections import Counter
from collections.abc import Callable, Mapping
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from donation_processor.charge_outcome import FailureKind, PaymentFailed, StripeFailure
from donation_processor.config import load_settings
from donation_processor.engine import DonationEngine, EngineDependencies
from donation_processor.exceptions import DonationProcessorError
from donation_processor.invocation import RunRequest
from donation_processor.observability import logger, metrics, publish_failed_run, publish_run_metrics
from donation_processor.ports import PaymentIntentResult
from harness.local.seed import scheduled_donation
from tests.support.alarm_evaluator import (
    Datapoint,
    MetricId,
    MetricStore,
    TemplateValues,
    dimensions,
    read_emf,
)
from tests.support.fakes import FakeClock, FakeDeadLetters, FakeDonorEvents, FakeLock, FakePayments, FakeStore

FUNCTION = "ScheduledDonationsFunction"
QUEUE = "DeadLetterQueue"  # what alarm_evaluator.TemplateValues makes of !GetAtt DeadLetterQueue.QueueName
START = datetime(2026, 4, 1, tzinfo=UTC)  # a 30-day month: every donor is due once in it
SQS_SAMPLE = timedelta(minutes=5)
HARD_DECLINE_CODES = ("expired_card", "stolen_card", "lost_card", "do_not_try_again", "incorrect_number")
# The fast tier's environment, and a circuit breaker that gives up on an outage after 1 real second
# (CloudWatch sees the same circuit_open run as after the template's 120 s).
TEST_ENVIRONMENT = {
    "STRIPE_SECRET_KEY": "sk_test_alarm_month",
    "STRIPE_SECRET_NAME": "",
    "MONGODB_SECRET_NAME": "",
    "LOCK_TABLE_NAME": "run-lock",
    "DEAD_LETTER_QUEUE_URL": "https://sqs.invalid/dead-letters",
    "MAX_CONCURRENCY": "4",
    "CIRCUIT_COOL_DOWN_SECONDS": "0.05",
    "CIRCUIT_OUTAGE_WINDOW_SECONDS": "1",
}


@dataclass(frozen=True)
class CardMix:
    """Shares of donors whose card is declined: for good, until they authenticate, or a few times."""

    hard_decline: float = 0.03
    authentication_required: float = 0.01
    soft_decline: float = 0.05
    # Of the soft declines, how many declines before the card works again (dunning retries 1, 3, 7 days
    # later); beyond MaxAttempts the schedule stops as attempts_exhausted.
    soft_declines_before_success: Mapping[int, float] = field(
        default_factory=lambda: {1: 0.80, 2: 0.10, 3: 0.05, 99: 0.05}
    )


@dataclass
class Faults:
    """What goes wrong, and when (functions of the tick's time)."""

    no_invocation: Callable[[datetime], bool] = lambda _at: False
    stripe_down: Callable[[datetime], bool] = lambda _at: False  # every request: no answer (503)
    stripe_rejects: Callable[[datetime], bool] = lambda _at: False  # every request: 400 parameter_unknown
    queue_unreachable: Callable[[datetime], bool] = lambda _at: False


def between(start: datetime, end: datetime) -> Callable[[datetime], bool]:
    return lambda at: start <= at < end


class FaultyStripe:
    """PaymentsPort: the fake Stripe, unless the scenario says Stripe is down or rejects every request."""

    def __init__(self, inner: FakePayments, faults: Faults, clock: FakeClock) -> None:
        self._inner, self._faults, self._clock = inner, faults, clock

    def _check(self) -> None:
        now = self._clock()
        if self._faults.stripe_down(now):
            raise PaymentFailed(
                StripeFailure(
                    FailureKind.TRANSIENT,
                    "api_error",
                    message="Service Unavailable",
                    http_status=503,
                    availability=True,
                )
            )
        if self._faults.stripe_rejects(now):
            raise PaymentFailed(
                StripeFailure(
                    FailureKind.INVALID_REQUEST,
                    "invalid_request_error",
                    code="parameter_unknown",
                    message="Received unknown parameter",
                    http_status=400,
                )
            )

    def create_payment_intent(self, params: Mapping[str, Any], idempotency_key: str) -> PaymentIntentResult:
        self._check()
        return self._inner.create_payment_intent(params, idempotency_key)

    def confirm_payment_intent(
        self, payment_intent_id: str, params: Mapping[str, Any], idempotency_key: str
    ) -> PaymentIntentResult:
        self._check()
        return self._inner.confirm_payment_intent(payment_intent_id, params, idempotency_key)

    def retrieve_payment_intent(self, payment_intent_id: str) -> PaymentIntentResult:
        self._check()
        return self._inner.retrieve_payment_intent(payment_intent_id)

    def find_payment_intent(self, scheduled_donation_id: str, period: str) -> PaymentIntentResult | None:
        self._check()
        return self._inner.find_payment_intent(scheduled_donation_id, period)


class QueueModel:
    """The dead-letter queue as CloudWatch sees it; an operator works it on weekdays at 10:00 UTC."""

    def __init__(self, metrics_store: MetricStore) -> None:
        self._store = metrics_store
        self._sent_at: list[datetime] = []

    def sent(self, at: datetime, count: int) -> None:
        self._sent_at += [at] * count
        self._record("NumberOfMessagesSent", at, count)

    def report(self, start: datetime, end: datetime) -> None:
        """Samples every 5 minutes in [start, end), with the operator's round in between."""
        at = start
        while at < end:
            if at.weekday() < 5 and at.hour == 10 and at.minute == 0:
                self._sent_at = [sent for sent in self._sent_at if sent >= at]
            self._record("ApproximateNumberOfMessagesVisible", at, len(self._sent_at))
            if self._sent_at:  # SQS reports the age only while a message is waiting
                self._record("ApproximateAgeOfOldestMessage", at, (at - min(self._sent_at)).total_seconds())
            at += SQS_SAMPLE

    def _record(self, name: str, at: datetime, value: float) -> None:
        self._store.add(Datapoint(MetricId("AWS/SQS", name, dimensions(QueueName=QUEUE)), at, value))


@dataclass
class Figures:
    invocations: int = 0
    failed_invocations: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    due: int = 0
    succeeded: int = 0
    failed: int = 0
    charges: int = 0
    dead_letters_by_reason: Counter[str] = field(default_factory=Counter)
    dead_letters_deferred: int = 0


@dataclass
class Month:
    """What the replay recorded: the metrics, the window they cover and the run figures."""

    metrics: MetricStore
    start: datetime
    end: datetime
    figures: Figures


def schedule_interval(template: Mapping[str, Any]) -> timedelta:
    """The ScheduleExpression default as an interval: rate(1 hour), rate(30 minutes), rate(1 day)."""
    expression = str(template["Parameters"]["ScheduleExpression"]["Default"])
    match = re.fullmatch(r"rate\((\d+) (minute|hour|day)s?\)", expression)
    assert match, f"the replay runs rate() schedules only, not {expression}"
    return timedelta(**{f"{match[2]}s": int(match[1])})


def engine_environment(template: Mapping[str, Any]) -> dict[str, str]:
    """The function's environment with every parameter at its default, on the fast tier's fakes."""
    values = TemplateValues(template)
    variables = template["Resources"][FUNCTION]["Properties"]["Environment"]["Variables"]
    environment = {
        name: str(values.resolve(value))
        for name, value in variables.items()
        if isinstance(value, dict) and value.get("Ref") in template["Parameters"]
    }
    return environment | TEST_ENVIRONMENT


class _Donors:
    """Monthly donors, due once each at a random time of the month, and their cards' behaviour."""

    def __init__(
        self, count: int, start: datetime, month: timedelta, mix: CardMix, rng: random.Random
    ) -> None:
        self.pending: list[dict[str, Any]] = []
        self.scripts: list[tuple[str, str, int | None]] = []  # (payment method, decline code, times)
        soft_weights = list(mix.soft_declines_before_success.items())
        for number in range(count):
            due = start + timedelta(seconds=rng.uniform(0, month.total_seconds()))
            method = f"pm_donor{number:06d}"
            draw = rng.random()
            if draw < mix.hard_decline:
                self.scripts.append((method, rng.choice(HARD_DECLINE_CODES), None))
            elif draw < mix.hard_decline + mix.authentication_required:
                self.scripts.append((method, "authentication_required", None))
            elif draw < mix.hard_decline + mix.authentication_required + mix.soft_decline:
                [times] = rng.choices([t for t, _ in soft_weights], [w for _, w in soft_weights])
                self.scripts.append((method, "insufficient_funds", times))
            self.pending.append(
                scheduled_donation(
                    customer_id=f"cus_{number:06d}donor", next_run_at=due, payment_method_id=method
                )
            )
        self.pending.sort(key=lambda document: document["nextRunAt"], reverse=True)

    def falling_due(self, at: datetime) -> list[dict[str, Any]]:
        naive = at.replace(tzinfo=None)
        due: list[dict[str, Any]] = []
        while self.pending and self.pending[-1]["nextRunAt"] <= naive:
            due.append(self.pending.pop())
        return due


def _retire_finished(store: FakeStore, month_end: datetime) -> None:
    """Drop what no run of the month can touch again: schedules charged past its end or stopped, whose
    letters left, with their closed charge intents."""
    end = month_end.replace(tzinfo=None)
    finished = {
        raw
        for raw, document in store.scheduled.items()
        if "pendingDeadLetter" not in document
        and document.get("openPeriod") is None
        and (document.get("status") != "active" or document["nextRunAt"] >= end)
    }
    for raw in finished:
        del store.scheduled[raw]
    names = {str(raw) for raw in finished}
    for ref in [
        ref
        for ref, intent in store.donations.items()
        if str(intent["scheduledDonationId"]) in names
        and "openFor" not in intent
        and "pendingDeadLetter" not in intent
    ]:
        del store.donations[ref]


def replay(
    template: Mapping[str, Any],
    *,
    days: int = 30,
    donors: int = 10_000,
    mix: CardMix | None = None,
    faults: Faults | None = None,
    start: datetime = START,
    seed: int = 11,
) -> Month:
    """Run the job once per schedule tick for `days` days; donors are spread over a 30-day month."""
    faults = faults or Faults()
    rng = random.Random(seed)
    tick = schedule_interval(template)
    end = start + timedelta(days=days)
    month_end = start + timedelta(days=30)
    clock = FakeClock(start)
    store, payments, queue = FakeStore(), FakePayments(), FakeDeadLetters()
    population = _Donors(donors, start, month_end - start, mix or CardMix(), rng)
    for method, code, times in population.scripts:
        if times is None:
            payments.decline(method, code)
        else:
            payments.decline_times(method, code, times)
    engine = DonationEngine(
        load_settings(engine_environment(template)),
        EngineDependencies(
            lock=FakeLock(clock),
            store=store,
            payments=FaultyStripe(payments, faults, clock),
            dead_letters=queue,
            donor_events=FakeDonorEvents(),
        ),
        clock=clock,
        sleep=lambda _seconds: None,
    )
    recorded = MetricStore()
    sqs = QueueModel(recorded)
    figures = Figures()
    level = logger.log_level
    logger.setLevel("CRITICAL")  # a month of run logs would only slow the replay down
    try:
        at = start
        while at < end:
            clock.now = at
            for document in population.falling_due(at):
                store.add_schedule(document)
            if not faults.no_invocation(at):
                queue.unreachable = faults.queue_unreachable(at)
                letters_before = len(queue.letters)
                recorded.add_all(_invoke(engine, at, figures))
                sqs.sent(at, len(queue.letters) - letters_before)
            sqs.report(at, at + tick)
            _retire_finished(store, month_end)
            at += tick
    finally:
        logger.setLevel(level)
    figures.charges = len(payments.charges)
    return Month(recorded, start, end, figures)


def _invoke(engine: DonationEngine, at: datetime, figures: Figures) -> list[Datapoint]:
    """One scheduled invocation, as the handler runs it: the run, then its metrics flushed as EMF."""
    figures.invocations += 1
    output = io.StringIO()
    errors = 0
    with redirect_stdout(output):
        try:
            summary = engine.run(RunRequest(source="schedule"), lambda: 900_000)
        except DonationProcessorError:
            errors = 1
            publish_failed_run()
        else:
            publish_run_metrics(summary)
        metrics.flush_metrics()
    if errors:
        figures.failed_invocations += 1
        duration_ms = 0.0
    else:
        figures.statuses[summary.status] += 1
        figures.due += summary.due
        figures.succeeded += summary.succeeded
        figures.failed += summary.failed
        figures.dead_letters_by_reason.update(summary.dead_letters_by_reason)
        figures.dead_letters_deferred += summary.dead_letters_deferred
        duration_ms = float(summary.duration_ms)
    function = dimensions(FunctionName=FUNCTION)
    return [
        *read_emf(output.getvalue(), at),
        Datapoint(MetricId("AWS/Lambda", "Invocations", function), at, 1),
        Datapoint(MetricId("AWS/Lambda", "Errors", function), at, errors),
        Datapoint(MetricId("AWS/Lambda", "Duration", function), at, duration_ms),
    ]
