"""`donations status`: what is due, what is stuck, the dead-letter queue, the pause switch, the last run.

Each section is read on its own: one unreachable service shows as an error in its section, the others are
still shown, and the exit code is 1.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from botocore.exceptions import BotoCoreError, ClientError

from donation_processor.adapters.donation_store import MongoDonationStore
from donation_processor.adapters.pause_switch import PAUSED, RUNNING
from donation_processor.validation import KNOWN_STATUSES
from donations_cli.amounts import totals_line
from donations_cli.connections import Connections, aws_errors
from donations_cli.errors import EXIT_OK, CliError
from donations_cli.output import write_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # --json is every command's


def donation_counts(connections: Connections, now: datetime) -> dict[str, int]:
    """Counts over the schedules and the open charges (the ledger's pending intents), through the store."""
    overdue_before = now - timedelta(hours=connections.config.overdue_after_hours)
    with connections.mongo_errors("counting donations"):
        return MongoDonationStore(connections.database).operator_counts(now, overdue_before)


UNSEEN_LISTED = 20


def unseen_documents(connections: Connections) -> dict[str, Any]:
    """Documents the due query can never see, counted by kind, the first ones listed with their ids."""
    store = MongoDonationStore(connections.database)
    with connections.mongo_errors("looking for documents the due query cannot see"):
        no_date, unknown = store.count_unseen(KNOWN_STATUSES)
        listed = store.unseen(KNOWN_STATUSES, UNSEEN_LISTED)
    return {
        "noUsableNextRunAt": no_date,
        "unknownStatus": unknown,
        "first": [{"id": donation_id, "why": why} for donation_id, why in listed],
    }


def _oldest_message_age(connections: Connections, queue_url: str, now: datetime) -> int | None:
    """ApproximateAgeOfOldestMessage is a CloudWatch metric, not a queue attribute: best effort."""
    try:
        answer = connections.client("cloudwatch").get_metric_statistics(
            Namespace="AWS/SQS",
            MetricName="ApproximateAgeOfOldestMessage",
            Dimensions=[{"Name": "QueueName", "Value": queue_url.rstrip("/").rsplit("/", 1)[-1]}],
            StartTime=now - timedelta(minutes=15),
            EndTime=now,
            Period=300,
            Statistics=["Maximum"],
        )
    except (BotoCoreError, ClientError):  # optional: a missing permission or metric means "unknown"
        return None
    points = sorted(answer.get("Datapoints", []), key=lambda point: point.get("Timestamp"))
    return int(points[-1]["Maximum"]) if points else None


def queue_depth(connections: Connections, now: datetime) -> dict[str, Any]:
    url = connections.config.queue_url
    with aws_errors("reading the dead-letter queue attributes"):
        attributes = connections.sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        ).get("Attributes", {})
    return {
        "queueUrl": url,
        "messages": int(attributes.get("ApproximateNumberOfMessages", 0)),
        "inFlight": int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
        "delayed": int(attributes.get("ApproximateNumberOfMessagesDelayed", 0)),
        "oldestMessageAgeSeconds": _oldest_message_age(connections, url, now),
    }


def pause_state(connections: Connections) -> dict[str, Any]:
    name = connections.config.pause_parameter_name
    if name is None:
        return {"parameter": None, "state": "not configured"}
    ssm = connections.ssm
    with aws_errors(f"reading pause switch {name!r}"):
        try:
            value = ssm.get_parameter(Name=name)["Parameter"].get("Value", "")
        except ssm.exceptions.ParameterNotFound:
            return {"parameter": name, "state": "missing (the function fails closed: runs charge nothing)"}
    state = value.strip().lower()
    if state not in (PAUSED, RUNNING):
        state = f"invalid {value[:20]!r} (the function fails closed: runs charge nothing)"
    return {"parameter": name, "state": state}


def last_run(connections: Connections, now: datetime) -> dict[str, Any]:
    config = connections.config
    with aws_errors("reading the lock item"):
        item = connections.dynamodb.get_item(
            TableName=config.lock_table, Key={"lockId": {"S": config.lock_name}}, ConsistentRead=True
        ).get("Item", {})
    summary: Any = None
    raw = item.get("lastRun", {}).get("S")
    if raw is not None:
        try:
            summary = json.loads(raw)
        except ValueError:
            summary = {"unreadable": raw[:200]}
    lease_ms = int(item.get("leaseExpiresAt", {}).get("N", "0"))
    fence = item.get("fence", {}).get("N")
    return {
        "lockId": config.lock_name,
        "fence": int(fence) if fence is not None else None,
        "leaseLive": lease_ms >= int(now.timestamp() * 1000),
        "owner": item.get("owner", {}).get("S"),
        "leaseExpiresAt": (
            datetime.fromtimestamp(lease_ms / 1000, UTC).isoformat(timespec="seconds") if lease_ms else None
        ),
        "summary": summary,
    }


def collect(connections: Connections, now: datetime) -> tuple[dict[str, Any], list[CliError]]:
    """Every section; a failed section holds {"error": …} and its error is returned too."""
    sections: dict[str, Callable[[], Any]] = {
        "donations": lambda: donation_counts(connections, now),
        "unseenDocuments": lambda: unseen_documents(connections),
        "deadLetterQueue": lambda: queue_depth(connections, now),
        "pauseSwitch": lambda: pause_state(connections),
        "lastRun": lambda: last_run(connections, now),
    }
    report: dict[str, Any] = {
        "now": now.isoformat(timespec="seconds"),
        "database": connections.config.mongodb_database,
        "overdueAfterHours": connections.config.overdue_after_hours,
    }
    errors: list[CliError] = []
    for name, read in sections.items():
        try:
            report[name] = read()
        except CliError as error:
            report[name] = {"error": str(error)}
            errors.append(error)
    return report, errors


_COUNT_LABELS = (
    ("dueNow", "due now (no open charge)"),
    ("openChargesDue", "open charges due now"),
    ("overdue", "overdue (> {hours} h)"),
    ("openCharges", "open charges (dunning, recheck, in flight)"),
    ("pastDue", "past due (soft-declined, retry scheduled)"),
    ("invalid", "invalid"),
    ("stopped", "stopped (payment_failed)"),
    ("claimedNow", "claimed now (live claim)"),
    ("parkedDeadLetters", "dead letters parked in MongoDB"),
    ("active", "active in total"),
)


def render(report: dict[str, Any]) -> str:
    lines = [
        f"status at {report['now']} (database {report['database']})",
        "",
        "donations (schedules and open charges)",
    ]
    counts = report["donations"]
    if "error" in counts:
        lines.append(f"  error: {counts['error']}")
    else:
        for key, label in _COUNT_LABELS:
            lines.append(f"  {label.format(hours=report['overdueAfterHours']):<44} {counts[key]:>10}")
    unseen = report["unseenDocuments"]
    lines += ["", "unseen by the due query (never charged until fixed)"]
    if "error" in unseen:
        lines.append(f"  error: {unseen['error']}")
    else:
        lines += [
            f"  {'active, nextRunAt missing or not a date':<44} {unseen['noUsableNextRunAt']:>10}",
            f"  {'status the job does not know':<44} {unseen['unknownStatus']:>10}",
        ]
        lines += [f"    {entry['id']}: {entry['why']}" for entry in unseen["first"]]
    queue = report["deadLetterQueue"]
    lines += ["", "dead-letter queue"]
    if "error" in queue:
        lines.append(f"  error: {queue['error']}")
    else:
        age = queue["oldestMessageAgeSeconds"]
        lines += [
            f"  {'messages waiting':<44} {queue['messages']:>10}",
            f"  {'messages in flight (being read)':<44} {queue['inFlight']:>10}",
            f"  {'age of the oldest message':<44} {(f'{age} s' if age is not None else 'unknown'):>10}",
        ]
    pause = report["pauseSwitch"]
    lines += ["", "pause switch"]
    if "error" in pause:
        lines.append(f"  error: {pause['error']}")
    else:
        lines.append(f"  {pause['parameter'] or '(PAUSE_PARAMETER_NAME not set)'}: {pause['state']}")
    run = report["lastRun"]
    lines += ["", "last run"]
    if "error" in run:
        lines.append(f"  error: {run['error']}")
    else:
        live = f"held by {run['owner']} until {run['leaseExpiresAt']}" if run["leaseLive"] else "free"
        lines.append(f"  lock {run['lockId']}: fence {run['fence']}, {live}")
        summary = run["summary"]
        if summary is None:
            lines.append("  no run has finished yet")
        else:
            for key, value in summary.items():
                if key == "amountByCurrency" and isinstance(value, dict):
                    lines.append(f"  {key:<44} {totals_line(value)}")
                elif isinstance(value, dict):
                    lines.append(f"  {key:<44} {value}")
                else:
                    lines.append(f"  {key:<44} {value!s:>10}")
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace, connections: Connections, out: TextIO, err: TextIO) -> int:
    now = datetime.now(UTC)
    report, errors = collect(connections, now)
    if args.json:
        write_json(out, report)
    else:
        out.write(render(report))
    for error in errors:
        err.write(f"error: {error}\n")
    # A missing variable or credentials is a configuration error (2); a failing service is 1.
    return max((error.exit_code for error in errors), default=EXIT_OK)
