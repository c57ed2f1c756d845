"""`donations redrive`: give dead-lettered donations another attempt, for the SAME period, never a new charge.

For each letter on the dead-letter queue (dry run by default; --yes acts):

- the letter is not JSON or names no donation: reported, left on the queue;
- the donation is gone, is on another period, or is in a state redrive does not touch: left on the queue;
- the period already has a `succeeded` record: nothing to do, the message is deleted;
- the donation, as it would be after the reset, still fails validation: left on the queue;
- otherwise it is reset for another attempt with one conditional update (status payment_failed/invalid
  as read → active, due now, the period pinned in periodStart, the stop fields and any claim cleared) and the
  message is deleted only after that update matched.

What the reset keeps, and why no period can be charged twice:

- `periodStart` (or, if the document has none, the letter's period): the period, and so the creation key
  `scheduled-donation:<id>:<period>`, stays the same;
- `paymentIntentId`: the engine retrieves that PaymentIntent and re-confirms it; a PaymentIntent succeeds
  at most once, and one that already succeeded is recorded, not charged again;
- `periodAttempts`: the engine derives the per-attempt confirm key from it (`…:attempt-<periodAttempts+1>`),
  so the next attempt uses a key never sent for this period (re-sending a used key would replay the old
  decline, or be refused as an idempotency error with the donor's new card). A document stopped before the
  engine kept `periodAttempts` gets it set to its `attempts`. `attempts` (the dunning budget) goes back to 0.

Redrive once the cause is fixed (the donor's new card, a corrected document): a donation redriven unchanged
is declined again and dead-lettered again (never charged twice).

Messages left on the queue are made visible again at the end, so the next redrive (or a consumer) sees them.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import TYPE_CHECKING, Any, Literal, TextIO

from bson import ObjectId
from pymongo.collection import Collection

from donation_processor.adapters.donation_store import DONATIONS, SCHEDULED
from donation_processor.adapters.mongo_connection import to_mongo_datetime
from donation_processor.idempotency import confirm_key, payment_intent_key
from donation_processor.schedule import as_utc, period_key
from donation_processor.validation import InvalidDonation, validate
from donations_cli.connections import Connections, aws_errors, mongo_errors
from donations_cli.errors import EXIT_FAILURE, EXIT_OK, CliError, UsageError
from donations_cli.progress import Progress, progress_enabled

if TYPE_CHECKING:
    from mypy_boto3_sqs.type_defs import ChangeMessageVisibilityBatchRequestEntryTypeDef

REDRIVABLE = ("payment_failed", "invalid")
CLEARED_ON_RESET = (
    "stopReason",
    "stoppedAt",
    "invalidReason",
    "pendingDeadLetter",
    "claimedBy",
    "claimExpiresAt",
)
MAX_MESSAGES = 10_000
Action = Literal["reset", "delete", "leave"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--yes", action="store_true", help="act; without it, only print what would be done")
    parser.add_argument("--max", type=int, default=100, help="messages to read at most (default 100)")
    parser.add_argument(
        "--visibility-timeout",
        type=int,
        default=60,
        help="seconds a read message stays hidden from others while this runs (default 60)",
    )
    parser.add_argument(
        "--wait-seconds", type=int, default=1, help="SQS long-poll wait per read, 0-20 (default 1)"
    )


@dataclass(frozen=True)
class Letter:
    """The fields of a dead letter that redrive reads (see donation_processor.dead_letters.build_letter)."""

    dead_letter_id: str
    donation_id: str
    period: str | None
    reason: str
    idempotency_key: str | None = None
    payment_intent_id: str | None = None
    code: str | None = None
    decline_code: str | None = None
    attempts: int | None = None


def _optional_text(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    return value[:300] if isinstance(value, str) and value else None


def parse_letter(raw: str) -> Letter:
    """The letter, or ValueError saying what is wrong with it."""
    try:
        body = json.loads(raw)
    except ValueError:
        raise ValueError("the message body is not JSON") from None
    if not isinstance(body, dict):
        raise ValueError("the message body is not a JSON object")
    donation_id = body.get("scheduledDonationId")
    if not isinstance(donation_id, str) or not donation_id or len(donation_id) > 256:
        raise ValueError("scheduledDonationId is missing")
    period = body.get("period")
    if period is not None:
        if not isinstance(period, str) or len(period) != 10:
            raise ValueError("period must be a YYYY-MM-DD date")
        try:
            date.fromisoformat(period)
        except ValueError:
            raise ValueError("period must be a YYYY-MM-DD date") from None
    attempts = body.get("attempts")
    return Letter(
        dead_letter_id=_optional_text(body, "deadLetterId") or "(no deadLetterId)",
        donation_id=donation_id,
        period=period,
        reason=_optional_text(body, "reason") or "unknown",
        idempotency_key=_optional_text(body, "idempotencyKey"),
        payment_intent_id=_optional_text(body, "paymentIntentId"),
        code=_optional_text(body, "code"),
        decline_code=_optional_text(body, "declineCode"),
        attempts=attempts if isinstance(attempts, int) and not isinstance(attempts, bool) else None,
    )


@dataclass(frozen=True)
class Plan:
    action: Action
    reason: str
    query: dict[str, Any] = field(default_factory=dict)
    update: dict[str, Any] = field(default_factory=dict)


def find_donation(collection: Collection[Any], donation_id: str) -> dict[str, Any] | None:
    """By ObjectId when the id is 24 hex digits and such a document exists, else by the string id."""
    if ObjectId.is_valid(donation_id) and len(donation_id) == 24:
        found = collection.find_one({"_id": ObjectId(donation_id)})
        if found is not None:
            return dict(found)
    found = collection.find_one({"_id": donation_id})
    return dict(found) if found is not None else None


def _current_period(document: dict[str, Any]) -> str | None:
    for name in ("periodStart", "nextRunAt"):
        value = document.get(name)
        if isinstance(value, datetime):
            return period_key(value)
    return None


def _pinned_period_start(document: dict[str, Any], letter: Letter) -> Any:
    """The period the reset keeps: periodStart as stored; else the letter's period at nextRunAt's time of
    day; else (a letter without period, e.g. an invalid document) nextRunAt itself."""
    existing = document.get("periodStart")
    if existing is not None:
        return existing  # validate() rejects it if it is not a date-time
    next_run = document.get("nextRunAt")
    if letter.period is not None:
        time_of_day = (
            as_utc(next_run).time().replace(tzinfo=None) if isinstance(next_run, datetime) else time()
        )
        return datetime.combine(date.fromisoformat(letter.period), time_of_day)
    if not isinstance(next_run, datetime):
        raise InvalidDonation("nextRunAt must be a UTC date-time (it fixes the period to retry)")
    return next_run


def plan(database: Any, letter: Letter, now: datetime) -> Plan:
    """What redrive does with one letter; reads only."""
    scheduled = database[SCHEDULED]
    document = find_donation(scheduled, letter.donation_id)
    if document is None:
        return Plan("leave", "scheduled donation not found")
    if letter.period is not None:
        charged = database[DONATIONS].find_one(
            {"scheduledDonationId": document["_id"], "period": letter.period, "status": "succeeded"}
        )
        if charged is not None:
            return Plan("delete", f"period already charged ({charged.get('paymentIntentId')})")
    status = document.get("status")
    if status == "active":
        current = _current_period(document)
        if document.get("pendingDeadLetter") is None and letter.period in (None, current):
            return Plan("delete", f"already active again on period {current} (reset earlier)")
        return Plan("leave", f"donation is active on period {current}, the letter is for {letter.period}")
    if status not in REDRIVABLE:
        return Plan("leave", f"donation is {str(status)[:40]!r}; only payment_failed or invalid are redriven")
    moment = to_mongo_datetime(now)
    try:
        period_start = _pinned_period_start(document, letter)
        after = {key: value for key, value in document.items() if key not in CLEARED_ON_RESET}
        after.update(status="active", nextRunAt=moment, periodStart=period_start)
        # Confirm keys count periodAttempts (defaulting to attempts on older documents): keep that count,
        # give the dunning budget back, and check the document exactly as the reset leaves it.
        after.update(attempts=0, periodAttempts=validate(after).period_attempts)
        donation = validate(after)
    except InvalidDonation as error:
        return Plan("leave", f"still invalid: {error}")
    period = period_key(donation.period_start)
    if letter.period is not None and period != letter.period:
        return Plan("leave", f"the donation is on period {period}, the letter is for {letter.period}")
    creation_key = payment_intent_key(donation.id, period)
    if donation.payment_intent_id is None:
        intent = f"no PaymentIntent yet (creation key {creation_key})"
    else:
        next_key = confirm_key(donation.id, period, max(donation.period_attempts + 1, 2))
        intent = f"PaymentIntent {donation.payment_intent_id} kept (next confirm key {next_key})"
    return Plan(
        "reset",
        f"period {period} kept, {intent}, attempts 0",
        # Conditional on the state just read: a concurrent change makes the update match nothing.
        query={"_id": document["_id"], "status": status, "stoppedAt": document.get("stoppedAt")},
        update={
            "$set": {
                "status": "active",
                "nextRunAt": moment,
                "periodStart": to_mongo_datetime(donation.period_start),
                "attempts": 0,
                "periodAttempts": donation.period_attempts,
                "lastRedrivenAt": moment,
            },
            "$unset": {name: "" for name in CLEARED_ON_RESET},
            "$inc": {"redriveCount": 1},
        },
    )


class _Redrive:
    def __init__(self, args: argparse.Namespace, connections: Connections, out: TextIO, progress: Progress):
        self._args = args
        self._connections = connections
        self._out = out
        self._progress = progress
        self._queue_url = connections.config.queue_url
        self.counts: Counter[str] = Counter()
        self.held: dict[str, str] = {}  # MessageId -> receipt handle of messages left on the queue

    def say(self, text: str) -> None:
        self._progress.clear()
        self._out.write(text + "\n")
        self._out.flush()

    def _delete(self, receipt: str) -> None:
        with aws_errors("deleting the message"):
            self._connections.sqs.delete_message(QueueUrl=self._queue_url, ReceiptHandle=receipt)

    def handle(self, message: dict[str, Any], number: int) -> None:
        message_id, receipt = str(message["MessageId"]), str(message["ReceiptHandle"])
        try:
            letter = parse_letter(str(message.get("Body", "")))
        except ValueError as error:
            self.say(f"[{number}] message {message_id}: malformed dead letter: {error}; left on the queue")
            self.counts["left"] += 1
            self.held[message_id] = receipt
            return
        code = "/".join(item for item in (letter.code, letter.decline_code) if item) or "-"
        self.say(
            f"[{number}] {letter.donation_id} period {letter.period or '-'} {letter.reason} ({code}) "
            f"PaymentIntent {letter.payment_intent_id or '-'}"
        )
        database = self._connections.database
        with mongo_errors("reading the donation"):
            decision = plan(database, letter, datetime.now(UTC))
        if not self._args.yes:
            text = {
                "reset": f"would reset for another attempt: {decision.reason}; would delete the message",
                "delete": f"nothing to do: {decision.reason}; would delete the message",
                "leave": f"skip: {decision.reason}; would stay on the queue",
            }[decision.action]
            self.say(f"    {text}")
            self.counts[f"would {decision.action}"] += 1
            self.held[message_id] = receipt
            return
        if decision.action == "leave":
            self.say(f"    skip: {decision.reason}; left on the queue")
            self.counts["left"] += 1
            self.held[message_id] = receipt
            return
        if decision.action == "reset":
            with mongo_errors("resetting the donation"):
                matched = database[SCHEDULED].update_one(decision.query, decision.update).matched_count
            if matched != 1:
                self.say("    skip: the donation changed while redriving; left on the queue, run again")
                self.counts["left"] += 1
                self.held[message_id] = receipt
                return
            self.counts["reset"] += 1
            done = f"reset for another attempt: {decision.reason}"
        else:
            done = f"nothing to do: {decision.reason}"
        try:
            self._delete(receipt)
        except CliError as error:
            # Safe: the next redrive finds the donation active (or charged) and deletes the message then.
            self.say(f"    {done}; the message could not be deleted: {error}")
            self.counts["errors"] += 1
            return
        self.counts["deleted"] += 1
        self.say(f"    {done}; message deleted")

    def release_held(self) -> None:
        """Make the messages left on the queue visible again now rather than after the visibility timeout."""
        receipts = list(self.held.items())
        for start in range(0, len(receipts), 10):
            entries: list[ChangeMessageVisibilityBatchRequestEntryTypeDef] = [
                {"Id": str(index), "ReceiptHandle": receipt, "VisibilityTimeout": 0}
                for index, (_, receipt) in enumerate(receipts[start : start + 10])
            ]
            try:
                with aws_errors("releasing the messages left on the queue"):
                    self._connections.sqs.change_message_visibility_batch(
                        QueueUrl=self._queue_url,
                        Entries=entries,
                    )
            except CliError as error:
                self.say(f"note: {error}; they reappear after the visibility timeout")
                return


def _estimate(connections: Connections, queue_url: str) -> int | None:
    try:
        with aws_errors("reading the queue depth"):
            attributes = connections.sqs.get_queue_attributes(
                QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"]
            ).get("Attributes", {})
    except CliError:
        return None
    return int(attributes.get("ApproximateNumberOfMessages", 0))


def run(args: argparse.Namespace, connections: Connections, out: TextIO, err: TextIO) -> int:
    if not 1 <= args.max <= MAX_MESSAGES:
        raise UsageError(f"--max must be between 1 and {MAX_MESSAGES}")
    if not 0 <= args.wait_seconds <= 20:
        raise UsageError("--wait-seconds must be between 0 and 20")
    if not 10 <= args.visibility_timeout <= 12 * 3600:
        raise UsageError("--visibility-timeout must be between 10 and 43200 seconds")
    queue_url = connections.config.queue_url
    connections.database  # noqa: B018 - fail on configuration before touching the queue
    estimate = _estimate(connections, queue_url)
    total = min(estimate, args.max) if estimate is not None else None
    progress = Progress("redrive", total, stream=err, enabled=progress_enabled(args.progress, err))
    redrive = _Redrive(args, connections, out, progress)
    seen: set[str] = set()
    failed = False
    try:
        with progress:
            while len(seen) < args.max:
                with aws_errors("reading the dead-letter queue"):
                    messages = connections.sqs.receive_message(
                        QueueUrl=queue_url,
                        MaxNumberOfMessages=min(10, args.max - len(seen)),
                        VisibilityTimeout=args.visibility_timeout,
                        WaitTimeSeconds=args.wait_seconds,
                    ).get("Messages", [])
                fresh = [message for message in messages if message["MessageId"] not in seen]
                for message in messages:
                    if message["MessageId"] in redrive.held:  # seen before: keep the newest receipt
                        redrive.held[message["MessageId"]] = message["ReceiptHandle"]
                if not fresh:
                    break
                for message in fresh:
                    seen.add(message["MessageId"])
                    try:
                        redrive.handle(dict(message), len(seen))
                    except CliError as error:
                        redrive.say(f"    error: {error}; left on the queue")
                        redrive.counts["errors"] += 1
                        redrive.held[message["MessageId"]] = message["ReceiptHandle"]
                    progress.advance()
    finally:
        redrive.release_held()
    counts = redrive.counts
    failed = counts["errors"] > 0
    if not seen:
        out.write("no dead letters on the queue\n")
    elif args.yes:
        out.write(
            f"redrive: {len(seen)} messages: {counts['reset']} reset for another attempt, "
            f"{counts['deleted']} deleted, {counts['left']} left on the queue, {counts['errors']} errors\n"
        )
    else:
        out.write(
            f"redrive (dry run): {len(seen)} messages: {counts['would reset']} would be reset, "
            f"{counts['would delete']} deleted as done, {counts['would leave']} left; nothing changed. "
            "Run with --yes to act.\n"
        )
    return EXIT_FAILURE if failed else EXIT_OK
