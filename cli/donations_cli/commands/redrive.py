"""`donations redrive`: give dead-lettered donations another attempt, for the SAME period, never a new charge.

For each letter on the dead-letter queue (dry run by default; --yes acts):

- the letter is not JSON or names no donation: reported, left on the queue;
- its period already has a `succeeded` entry in the ledger (`donations`): nothing to do, the message is
  deleted;
- the donation is gone, shares its id with another document, or is in a state redrive does not touch
  (neither `payment_failed` nor `invalid`): left on the queue. One that is `active` again is done with
  (the message is deleted) when the letter's period is open or is the period the schedule is on;
- the donation, as the redrive would leave it, fails validation: left on the queue ("still invalid");
- the letter is for another period than the one the donation stopped on, or the period's PaymentIntent
  is one Stripe reported as canceled or unconfirmable (another attempt on it could only be rejected):
  left on the queue;
- otherwise the period goes back to the job, and the message is deleted only after both writes matched:
  1. its charge intent is reopened (failed/canceled -> pending, due now, `attempts` 0, no lease), by a
     write conditional on the intent as read;
  2. then the donation is made `active` again, held for that period (`openPeriod`), with the stop fields
     and any claim cleared (`lastRedrivenAt`, `redriveCount` + 1), conditional on its status and
     `stoppedAt` as read.
  The intent goes first: if the second write fails, the next run finds an open intent whose donation is
  not active and gives the period up (`canceled`) without a charge; a later redrive reopens it again.
  A letter without a period (`invalid_document`) has no intent: the donation is made `active` again and
  the job opens the period nextRunAt names when it is due. So does a period stopped by a version before
  the charge intent: the job adopts what that version left on the document, with the dunning budget back
  to 0 (`periodAttempts` kept, so its keys go on past the ones already sent).

Why no period is charged twice, and no key is sent again:

- the ledger has one entry per (donation, period), and the period never changes: the reopened intent is
  that entry, with its amount, currency and customer as first written;
- the engine numbers the attempts on the intent, and every attempt is written there (key, payment method)
  before it is sent: the next one is `<creation key>:attempt-<n>` with n past every key already sent, so
  a reopened period never re-sends a key Stripe stored a decline under, and uses the donation's payment
  method of that moment (the donor's new card);
- the period's PaymentIntent stays on the intent: the next attempt confirms it (a PaymentIntent succeeds
  at most once); only a period that never got one creates it.

Redrive once the cause is fixed (the donor's new card, a corrected document): a donation redriven unchanged
is declined again and dead-lettered again (never charged twice).

Messages left on the queue are made visible again at the end, so the next redrive (or a consumer) sees them.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, Literal, TextIO

from donation_processor.adapters.donation_store import MongoDonationStore
from donation_processor.charge_intent import ChargeIntent, IntentStatus
from donation_processor.charge_rules import StopReason
from donation_processor.idempotency import attempt_key
from donation_processor.ports import Document
from donation_processor.validation import ChargeableDonation, InvalidDonation, read_schedule, validate
from donation_processor.work_claims import TWIN_IDS, new_intent
from donations_cli.connections import Connections, aws_errors, mongo_errors
from donations_cli.errors import EXIT_FAILURE, EXIT_OK, CliError, UsageError
from donations_cli.progress import Progress, progress_enabled

if TYPE_CHECKING:
    from mypy_boto3_sqs.type_defs import ChangeMessageVisibilityBatchRequestEntryTypeDef

REDRIVABLE = ("payment_failed", "invalid")
STOPPED = (IntentStatus.FAILED, IntentStatus.CANCELED)
# The stop reason of a period whose PaymentIntent Stripe reported as canceled or unconfirmable.
UNUSABLE_PAYMENT_INTENT = f"{StopReason.STRIPE_REJECTED_REQUEST}:payment_intent_"
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
    """What redrive does with one letter. A reset with `intent` reopens that intent first and holds the
    schedule for `period`; a reset without one leaves the period to the job (it opens or adopts it)."""

    action: Action
    reason: str
    document: Document | None = None
    intent: ChargeIntent | None = None
    period: str | None = None


def _already_active(
    store: MongoDonationStore, document: Document, letter: Letter, entry: ChargeIntent | None
) -> Plan:
    periods = store.schedule_periods(document)
    current = periods[0] if periods else "unknown"
    if letter.period is None:
        return Plan("delete", f"already active again on period {current} (redriven or fixed earlier)")
    if entry is not None and entry.open and entry.status is IntentStatus.PENDING:
        return Plan("delete", f"period {letter.period} is open again (redriven earlier)")
    if letter.period in periods:
        return Plan("delete", f"already active again on period {letter.period}")
    return Plan("leave", f"donation is active on period {current}, the letter is for {letter.period}")


def _when(donation: ChargeableDonation, now: datetime) -> str:
    due = donation.next_run_at
    return "due now" if due <= now else f"due {due.isoformat(timespec='seconds')}"


def _reopen_plan(document: Document, intent: ChargeIntent, donation: ChargeableDonation, period: str) -> Plan:
    if intent.open:
        # Stopped but not yet applied by the run that stopped it, or reopened by a redrive whose second
        # write failed: a run settles it first (without a charge when the donation is not active).
        return Plan(
            "leave",
            f"period {period} is still open ({intent.status}); the next run settles it, then redrive again",
        )
    if intent.payment_intent_id is not None and (intent.stop_reason or "").startswith(
        UNUSABLE_PAYMENT_INTENT
    ):
        # Stripe said the PaymentIntent itself cannot be confirmed (canceled, or in a state that takes no
        # confirm): the reopened period would confirm it again and be rejected again.
        return Plan(
            "leave",
            f"the period's PaymentIntent {intent.payment_intent_id} cannot be confirmed "
            f"({intent.stop_reason}); settle the period by hand",
        )
    key = attempt_key(intent.creation_key, intent.next_attempt_number)
    if intent.payment_intent_id is not None:
        charge = f"PaymentIntent {intent.payment_intent_id} kept, confirmed under the new key {key}"
    else:
        charge = f"no PaymentIntent yet, created under the new key {key}"
    return Plan(
        "reset",
        f"period {period} reopened ({intent.status}), {charge}, payment method {donation.payment_method_id}, "
        f"amount {intent.amount} {intent.currency} as first written, attempts 0",
        document,
        intent,
        period,
    )


def _job_plan(document: Document, donation: ChargeableDonation, letter: Letter, now: datetime) -> Plan:
    """No intent to reopen: the job opens the period its next claim names, or adopts an earlier version's."""
    period = new_intent(donation, now).period  # the period the engine opens for this document
    if letter.period is not None and period != letter.period:
        return Plan("leave", f"the donation is on period {period}, the letter is for {letter.period}")
    legacy = donation.legacy
    if legacy is None:
        how = "opened by the job"
    elif legacy.payment_intent_id is not None:
        how = (
            f"left in flight by an earlier version, adopted by the job: PaymentIntent "
            f"{legacy.payment_intent_id} kept, keys numbered past {legacy.period_attempts}"
        )
    else:
        how = "left in flight by an earlier version, adopted by the job"
    return Plan("reset", f"period {period} {how} ({_when(donation, now)}), attempts 0", document)


def plan(store: MongoDonationStore, letter: Letter, now: datetime) -> Plan:
    """What redrive does with one letter; reads only."""
    entry = store.period_entry(letter.donation_id, letter.period) if letter.period is not None else None
    if entry is not None and entry.status is IntentStatus.SUCCEEDED:
        return Plan("delete", f"period already charged ({entry.payment_intent_id or 'no PaymentIntent id'})")
    document = store.find_schedule(letter.donation_id)
    if document is None:
        return Plan("leave", "scheduled donation not found")
    if store.ids_with_twins([read_schedule(document).raw_id]):
        return Plan("leave", TWIN_IDS)
    status = store.schedule_status(document)
    if status == "active":
        return _already_active(store, document, letter, entry)
    if status not in REDRIVABLE:
        return Plan("leave", f"donation is {str(status)[:40]!r}; only payment_failed or invalid are redriven")
    stopped = store.stopped_period(document)
    if letter.period is not None and stopped not in (None, letter.period):
        return Plan("leave", f"the donation stopped on period {stopped}, the letter is for {letter.period}")
    reopen = entry if entry is not None and not entry.legacy_record else None
    held = letter.period if reopen is not None else None
    try:
        donation = validate(store.as_redriven(document, now, held))
    except InvalidDonation as error:
        return Plan("leave", f"still invalid: {error}")
    if reopen is not None and letter.period is not None:
        return _reopen_plan(document, reopen, donation, letter.period)
    return _job_plan(document, donation, letter, now)


_DRY_RUN = {
    "reset": "would reset for another attempt: {reason}; would delete the message",
    "delete": "nothing to do: {reason}; would delete the message",
    "leave": "skip: {reason}; would stay on the queue",
}


class _Redrive:
    def __init__(self, args: argparse.Namespace, connections: Connections, out: TextIO, progress: Progress):
        self._args = args
        self._connections = connections
        self._out = out
        self._progress = progress
        self._queue_url = connections.config.queue_url
        self._store = MongoDonationStore(connections.database)
        self.counts: Counter[str] = Counter()
        self.held: dict[str, str] = {}  # MessageId -> receipt handle of messages left on the queue

    def say(self, text: str) -> None:
        self._progress.clear()
        self._out.write(text + "\n")
        self._out.flush()

    def _delete(self, receipt: str) -> None:
        with aws_errors("deleting the message"):
            self._connections.sqs.delete_message(QueueUrl=self._queue_url, ReceiptHandle=receipt)

    def _leave(self, message_id: str, receipt: str, text: str) -> None:
        self.say(f"    skip: {text}; left on the queue")
        self.counts["left"] += 1
        self.held[message_id] = receipt

    def _reset(self, decision: Plan, now: datetime) -> str | None:
        """Both writes, intent first; None when they went through, else why not."""
        assert decision.document is not None
        store = self._store
        intent = decision.intent
        with mongo_errors("reopening the period"):
            if intent is not None and not store.redrive_intent(intent, now):
                return "the period's charge intent changed while redriving (or another period is open)"
        with mongo_errors("reactivating the donation"):
            if not store.redrive_schedule(decision.document, now, decision.period if intent else None):
                if intent is not None:
                    return (
                        "the donation changed while redriving; the next run gives the reopened period up "
                        "without a charge. Run again"
                    )
                return "the donation changed while redriving. Run again"
        if intent is not None and decision.period is not None:
            self._settle(decision.document, intent, decision.period)
        return None

    def _settle(self, document: Document, intent: ChargeIntent, period: str) -> None:
        """A run that took the reopened intent between the two writes saw the donation still stopped and gave
        the period up: the schedule must not stay held for an intent that is closed again."""
        with mongo_errors("checking the reopened period"):
            entry = self._store.period_entry(intent.scheduled_donation_id, period)
            if entry is not None and entry.status in STOPPED:
                self._store.release_schedule(read_schedule(document).raw_id)
                self.say("    note: a run gave the period up meanwhile; the job reopens it when it is due")

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
        now = datetime.now(UTC)
        with mongo_errors("reading the donation"):
            decision = plan(self._store, letter, now)
        if not self._args.yes:
            self.say("    " + _DRY_RUN[decision.action].format(reason=decision.reason))
            self.counts["left" if decision.action == "leave" else decision.action] += 1
            self.held[message_id] = receipt
            return
        if decision.action == "leave":
            self._leave(message_id, receipt, decision.reason)
            return
        if decision.action == "reset":
            failed = self._reset(decision, now)
            if failed is not None:
                self._leave(message_id, receipt, failed)
                return
            self.counts["reset"] += 1
            done = f"reset for another attempt: {decision.reason}"
        else:
            self.counts["delete"] += 1
            done = f"nothing to do: {decision.reason}"
        try:
            self._delete(receipt)
        except CliError as error:
            # Safe: the next redrive finds the period open again (or charged) and deletes the message then.
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


def summary_line(seen: int, counts: Counter[str], acted: bool) -> str:
    """The last line; a dry run and the run with --yes that follows it use the same three counts."""
    if not seen:
        return "no dead letters on the queue\n"
    if acted:
        return (
            f"redrive: {seen} messages: {counts['reset']} reset for another attempt, "
            f"{counts['delete']} deleted as done, {counts['left']} left on the queue, "
            f"{counts['errors']} errors ({counts['deleted']} messages deleted)\n"
        )
    return (
        f"redrive (dry run): {seen} messages: {counts['reset']} would be reset for another attempt, "
        f"{counts['delete']} deleted as done, {counts['left']} left on the queue; nothing changed. "
        "Run with --yes to act.\n"
    )


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
    out.write(summary_line(len(seen), redrive.counts, args.yes))
    return EXIT_FAILURE if redrive.counts["errors"] > 0 else EXIT_OK
