"""The one Logger, Tracer and Metrics of the job (Powertools), and the metrics a run summary becomes."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger, Metrics, Tracer, single_metric
from aws_lambda_powertools.metrics import MetricUnit

from donation_processor import metric_names as names
from donation_processor.dead_letter_reasons import DeadLetterReason

if TYPE_CHECKING:
    from donation_processor.summary import RunSummary

SERVICE_NAME = "scheduled-donations"
DEFAULT_NAMESPACE = "ScheduledDonations"

logger = Logger(service=SERVICE_NAME)
tracer = Tracer(service=SERVICE_NAME)
# The default namespace applies when POWERTOOLS_METRICS_NAMESPACE is unset.
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or DEFAULT_NAMESPACE
metrics = Metrics(service=SERVICE_NAME, namespace=NAMESPACE)


def publish_failed_run() -> None:
    """The invocation raised: one RunFailed, and none of the run's counts (they are partial)."""
    metrics.add_metric(name=names.RUN_FAILED, unit=MetricUnit.Count, value=1)


def publish_run_metrics(summary: RunSummary) -> None:
    """Turn a run summary into CloudWatch metrics (EMF, flushed by the handler's decorator)."""
    if summary.status == "dry_run":
        # A dry run charges nothing: its counts must not reach the dashboards or the failure-rate alarm.
        metrics.add_metric(
            name=names.RUN_DURATION_MS, unit=MetricUnit.Milliseconds, value=summary.duration_ms
        )
        return
    _publish_dimensioned_metrics(summary)
    counts = {
        names.DONATIONS_DUE: summary.due,
        names.DONATIONS_SUCCEEDED: summary.succeeded,
        names.DONATIONS_FAILED: summary.failed,
        names.DONATIONS_RETRIED: summary.retried,
        names.DONATIONS_DEAD_LETTERED: summary.dead_lettered,
        names.DONATIONS_INVALID: summary.invalid,
        names.DONATIONS_SKIPPED: summary.skipped,
        names.DONATIONS_MISSED: summary.missed,
        names.DEAD_LETTERS_DEFERRED: summary.dead_letters_deferred,
        names.LOCK_CONTENDED: 1 if summary.status == "skipped_locked" else 0,
        names.CIRCUIT_OPENED: 1 if summary.status == "circuit_open" else 0,
        names.RUN_SYSTEMIC_HALT: 1 if summary.status == "systemic_halt" else 0,
        # The heartbeat: only a run that really worked through its queue counts as completed.
        names.RUN_COMPLETED: 1 if summary.status in ("completed", "partial") else 0,
        names.RUN_PARTIAL: 1 if summary.status == "partial" else 0,
        names.RUN_PAUSED: 1 if summary.status == "paused" else 0,
        names.DONOR_EVENTS_FAILED: summary.donor_events_failed,
    }
    for name, value in counts.items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    metrics.add_metric(name=names.RUN_DURATION_MS, unit=MetricUnit.Milliseconds, value=summary.duration_ms)
    if summary.status in ("completed", "partial", "circuit_open"):
        # A gauge: only runs that looked at the queue report it, so a skipped run leaves no false zero.
        metrics.add_metric(name=names.DONATIONS_OVERDUE, unit=MetricUnit.Count, value=summary.overdue)
        unseen = summary.unseen_no_date + summary.unseen_unknown_status
        metrics.add_metric(name=names.DONATIONS_UNSEEN, unit=MetricUnit.Count, value=unseen)


def _publish_dimensioned_metrics(summary: RunSummary) -> None:
    """The metrics with a dimension of their own, each flushed at once as its own blob. They go first, so
    the shared metric set is filled last, just before the handler flushes it."""
    if summary.systemic_code is not None:
        _publish_dimensioned(names.SYSTEMIC_FAILURES, 1, "code", summary.systemic_code[:250])
    for reason in DeadLetterReason:
        # Every reason, zeros included: the alarms read a series that says "none" rather than nothing.
        count = summary.dead_letters_by_reason.get(reason, 0)
        _publish_dimensioned(names.DEAD_LETTERS_BY_REASON, count, "reason", reason)
    for currency, amount in sorted(summary.amount_by_currency.items()):
        _publish_dimensioned(names.AMOUNT_CHARGED, amount, "currency", currency)


def _publish_dimensioned(name: str, value: int, dimension: str, dimension_value: str) -> None:
    """One metric with a dimension of its own besides service: its own EMF blob, flushed at once."""
    with single_metric(
        name=name,
        unit=MetricUnit.Count,
        value=value,
        namespace=NAMESPACE,
        default_dimensions={"service": SERVICE_NAME},
    ) as metric:
        metric.add_dimension(name=dimension, value=dimension_value)
