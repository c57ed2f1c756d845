"""`donations redrive`: give dead-lettered donations another attempt, for the SAME period, never a new charge.

It reads first, then acts: the messages on the dead-letter queue (up to --max), then what MongoDB holds for
each letter, and only then one plan for the whole queue, a function of what was read and nothing else. A
dry run (the default) prints that plan; --yes prints the same plan and carries it out, so both show the
same counts on the same queue. A write that finds its document changed since it was read leaves its letter
on the queue (said so, counted as left).

Which letters (the others stay on the queue untouched, visible at once, counted as "not selected"):

- --id ID: only letters for these scheduled donation ids (repeat the option, or separate with commas);
- --only-reason REASON: only letters with these reasons: hard_decline, attempts_exhausted,
  stripe_rejected_request, invalid_document (repeat, or separate with commas);
- --limit N: reset or delete at most N letters, the first in queue order; the letters past it are left.

Two options, two names: --only-reason filters letters by their reason; --force-reason TEXT, given with
--force, is the operator's justification for redriving a hard decline on an unchanged card.

For each selected letter:

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
- a `hard_decline` letter (stolen, lost, fraudulent, pickup_card, authentication_required, any code of
  charge_outcome.HARD_DECLINE_CODES) whose donation still has the payment method its period's last attempt
  was declined on: left on the queue, because card networks penalise retrying such a card; the donor
  updates the card first. So is one whose declined payment method is not recorded (a period stopped by a
  version before the charge intent). With --force --force-reason TEXT it is redriven all the same: the
  output says so, a log line ("hard decline redriven by force") names the reason, the donation and the
  letter, and the period's ledger entry keeps `forcedRedrive` (reason, at). `attempts_exhausted` (soft
  declines), `stripe_rejected_request` and `invalid_document` letters are redriven on the same card;
- a letter for a donation that an earlier letter of the same redrive resets: done with (deleted) when it
  is for the same period or for none, else left; a donation is reset once per redrive;
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

Redrive once the cause is fixed (the donor's new card, a corrected document): a soft decline redriven on the
same card may be declined again and dead-lettered again (never charged twice).

Messages left on the queue are made visible again at the end, so the next redrive (or a consumer) sees them.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, Literal, TextIO

from donation_processor.adapters.donation_store import MongoDonationStore
from donation_processor.charge_intent import ChargeIntent, IntentStatus
from donation_processor.charge_rules import StopReason
from donation_processor.currencies import format_amount
from donation_processor.idempotency import attempt_key
from donation_processor.observability import logger
from donation_processor.ports import Document
from donation_processor.validation import ChargeableDonation, InvalidDonation, read_schedule, validate
from donation_processor.work_claims import TWIN_IDS, new_intent
from donations_cli.connections import Connections, aws_errors
from donations_cli.errors import EXIT_FAILURE, EXIT_OK, CliError, UsageError
from donations_cli.output import write_json
from donations_cli.progress import Progress, progress_enabled

if TYPE_CHECKING:
    from mypy_boto3_sqs.type_defs import ChangeMessageVisibilityBatchRequestEntryTypeDef

REDRIVABLE = ("payment_failed", "invalid")
STOPPED = (IntentStatus.FAILED, IntentStatus.CANCELED)
# The stop reason of a period whose PaymentIntent Stripe reported as canceled or unconfirmable.
UNUSABLE_PAYMENT_INTENT = f"{StopReason.STRIPE_REJECTED_REQUEST}:payment_intent_"
INVALID_DOCUMENT = "invalid_document"
LETTER_REASONS = (
    str(StopReason.HARD_DECLINE),
    str(StopReason.ATTEMPTS_EXHAUSTED),
    str(StopReason.STRIPE_REJECTED_REQUEST),
    INVALID_DOCUMENT,
)
MAX_MESSAGES = 10_000
MAX_FORCE_REASON = 500
UPDATE_THE_CARD = "update the card first, or --force --force-reason TEXT"
Action = Literal["reset", "delete", "leave", "error"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--yes", action="store_true", help="act; without it, only print what would be done")
    which = parser.add_argument_group("which letters (the others stay on the queue, untouched and visible)")
    which.add_argument(
        "--id",
        action="append",
        default=[],
        dest="ids",
        metavar="ID",
        help="only letters for this scheduled donation id; repeat, or separate ids with commas",
    )
    which.add_argument(
        "--only-reason",
        action="append",
        default=[],
        dest="only_reasons",
        metavar="REASON",
        help=f"only letters with this reason ({', '.join(LETTER_REASONS)}); repeat, or separate with commas",
    )
    which.add_argument(
        "--limit",
        type=int,
        metavar="N",
        help="reset or delete at most N letters, the first in queue order; the rest are left",
    )
    forcing = parser.add_argument_group("hard declines on an unchanged card")
    forcing.add_argument(
        "--force",
        action="store_true",
        help="also redrive a hard_decline letter whose donation still has the declined payment method "
        "(card networks penalise such retries; use it with --id); needs --force-reason",
    )
    forcing.add_argument(
        "--force-reason",
        metavar="TEXT",
        help="why the card may be retried; printed, logged and recorded on the period's charge intent",
    )
    reading = parser.add_argument_group("reading the queue")
    reading.add_argument("--max", type=int, default=100, help="messages to read at most (default 100)")
    reading.add_argument(
        "--visibility-timeout",
        type=int,
        default=60,
        help="seconds a read message stays hidden from others; longer than the whole run (default 60)",
    )
    reading.add_argument(
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


# -- which letters --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """The letters this redrive may act on, and the operator's justification for forcing hard declines."""

    ids: frozenset[str] = frozenset()  # empty: every donation
    reasons: frozenset[str] = frozenset()  # empty: every reason
    limit: int | None = None  # letters reset or deleted at most
    force_reason: str | None = None  # set only with --force

    def excludes(self, letter: Letter | None) -> str | None:
        """The option that leaves this letter out (None: a malformed message), or None if it is selected."""
        if self.ids and (letter is None or letter.donation_id not in self.ids):
            return "--id"
        if self.reasons and (letter is None or letter.reason not in self.reasons):
            return "--only-reason"
        return None


def _listed(values: Sequence[str]) -> frozenset[str]:
    return frozenset(item.strip() for value in values for item in value.split(",") if item.strip())


def selection_from(args: argparse.Namespace) -> Selection:
    """The selection the options describe, or UsageError when they do not say clearly what to do."""
    ids = _listed(args.ids)
    if args.ids and not ids:
        raise UsageError("--id needs a scheduled donation id")
    reasons = _listed(args.only_reasons)
    unknown = sorted(reasons.difference(LETTER_REASONS))
    if unknown or (args.only_reasons and not reasons):
        got = ", ".join(unknown) or "nothing"
        raise UsageError(f"--only-reason must be among {', '.join(LETTER_REASONS)} (got {got})")
    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be at least 1")
    force_reason = (args.force_reason or "").strip()
    if args.force and not force_reason:
        raise UsageError("--force needs --force-reason TEXT: why the card may be retried")
    if args.force_reason is not None and not args.force:
        raise UsageError("--force-reason goes with --force")
    return Selection(ids, reasons, args.limit, force_reason[:MAX_FORCE_REASON] if args.force else None)


# -- the plan: what was read in, what to do out ----------------------------------------------------------


@dataclass(frozen=True)
class Facts:
    """What MongoDB held for one letter before this redrive wrote anything."""

    entry: ChargeIntent | None = None  # the ledger entry of the letter's period
    document: Document | None = None  # the scheduled donation
    twins: bool = False  # its id is shared with another document


@dataclass(frozen=True)
class Read:
    """One message as read: its letter (or why it is none), and the facts (or why they could not be read)."""

    letter: Letter | None
    malformed: str | None = None
    facts: Facts | None = None
    error: str | None = None


@dataclass(frozen=True)
class Forced:
    """A hard decline redriven on the payment method it was declined on, on the operator's word."""

    justification: str
    decline: str
    entry: ChargeIntent | None  # where the forcing is recorded


@dataclass(frozen=True)
class Plan:
    """What redrive does with one letter. A reset with `intent` reopens that intent first and holds the
    schedule for `period`; a reset without one leaves the period to the job (it opens or adopts it)."""

    action: Action
    reason: str
    document: Document | None = None
    intent: ChargeIntent | None = None
    period: str | None = None
    selected: bool = True
    forced: Forced | None = None
    after: int | None = (
        None  # a letter done with by the reset of the letter at this index, if it goes through
    )


def _already_active(document: Document, letter: Letter, entry: ChargeIntent | None) -> Plan:
    periods = MongoDonationStore.schedule_periods(document)
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
        f"amount {format_amount(intent.amount, intent.currency)} as first written, attempts 0",
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


def _respecting_card_networks(
    reset: Plan, letter: Letter, entry: ChargeIntent | None, donation: ChargeableDonation, force: str | None
) -> Plan:
    """A hard decline is retried only on another payment method than the one it was declined on, or
    by force with the operator's reason."""
    last = entry.last_attempt if entry is not None else None
    declined = last.payment_method_id if last is not None else None
    decline = letter.decline_code or letter.code or "no code"
    if declined is not None and declined != donation.payment_method_id:
        return replace(reset, reason=f"{reset.reason}; the hard decline ({decline}) was on {declined}")
    if declined is None:
        why = f"hard decline ({decline}); the ledger does not record which payment method was declined"
        advice = "check the card with the donor, then --force --force-reason TEXT"
    else:
        why = f"hard decline ({decline}) on the same payment method {declined}"
        advice = UPDATE_THE_CARD
    if force is None:
        return Plan("leave", f"{why}; {advice}")
    return replace(
        reset,
        reason=f"{reset.reason}; forced: {why} (--force-reason {force!r})",
        forced=Forced(force, decline, entry),
    )


def decide(letter: Letter, facts: Facts, now: datetime, force: str | None = None) -> Plan:
    """What redrive does with one letter, from what was read for it; `force` is the --force-reason."""
    entry = facts.entry
    if entry is not None and entry.status is IntentStatus.SUCCEEDED:
        return Plan("delete", f"period already charged ({entry.payment_intent_id or 'no PaymentIntent id'})")
    document = facts.document
    if document is None:
        return Plan("leave", "scheduled donation not found")
    if facts.twins:
        return Plan("leave", TWIN_IDS)
    status = MongoDonationStore.schedule_status(document)
    if status == "active":
        return _already_active(document, letter, entry)
    if status not in REDRIVABLE:
        return Plan("leave", f"donation is {str(status)[:40]!r}; only payment_failed or invalid are redriven")
    stopped = MongoDonationStore.stopped_period(document)
    if letter.period is not None and stopped not in (None, letter.period):
        return Plan("leave", f"the donation stopped on period {stopped}, the letter is for {letter.period}")
    reopen = entry if entry is not None and not entry.legacy_record else None
    held = letter.period if reopen is not None else None
    try:
        donation = validate(MongoDonationStore.as_redriven(document, now, held))
    except InvalidDonation as error:
        return Plan("leave", f"still invalid: {error}")
    if reopen is not None and letter.period is not None:
        planned = _reopen_plan(document, reopen, donation, letter.period)
    else:
        planned = _job_plan(document, donation, letter, now)
    if planned.action == "reset" and letter.reason == StopReason.HARD_DECLINE:
        return _respecting_card_networks(planned, letter, entry, donation, force)
    return planned


def _after_earlier_reset(letter: Letter, index: int, earlier: Letter) -> Plan:
    """A donation is reset once per redrive; a later letter for it rides on that reset or waits."""
    if letter.period is None or letter.period == earlier.period:
        return Plan("delete", f"the letter at [{index + 1}] resets this donation for it", after=index)
    return Plan(
        "leave",
        f"the letter at [{index + 1}] resets this donation for period {earlier.period or 'its next period'}, "
        f"the letter is for {letter.period}; redrive again once that period is settled",
    )


def plan_queue(reads: Sequence[Read], selection: Selection, now: datetime) -> list[Plan]:
    """What redrive does with each message read, in order. Depends on nothing but its arguments: the dry
    run and --yes print the plan of the same reads, so they agree on every count."""
    plans: list[Plan] = []
    resets: dict[str, tuple[int, Letter]] = {}
    acted = 0
    for index, read in enumerate(reads):
        letter = read.letter
        excluded = selection.excludes(letter)
        if excluded is not None:
            plans.append(Plan("leave", f"not selected ({excluded})", selected=False))
            continue
        if letter is None:
            plans.append(Plan("leave", f"malformed dead letter: {read.malformed}"))
            continue
        if read.error is not None:
            plans.append(Plan("error", read.error))
            continue
        earlier = resets.get(letter.donation_id)
        if earlier is not None:
            decision = _after_earlier_reset(letter, *earlier)
        else:
            assert read.facts is not None
            decision = decide(letter, read.facts, now, selection.force_reason)
        if decision.action in ("reset", "delete"):
            if selection.limit is not None and acted >= selection.limit:
                decision = Plan("leave", f"not selected (beyond --limit {selection.limit})", selected=False)
            else:
                acted += 1
        if decision.action == "reset":
            resets[letter.donation_id] = (index, letter)
        plans.append(decision)
    return plans


def read_facts(store: MongoDonationStore, letter: Letter) -> Facts:
    """What `decide` needs for one letter; reads only."""
    entry = store.period_entry(letter.donation_id, letter.period) if letter.period is not None else None
    if entry is not None and entry.status is IntentStatus.SUCCEEDED:
        return Facts(entry)
    document = store.find_schedule(letter.donation_id)
    twins = document is not None and bool(store.ids_with_twins([read_schedule(document).raw_id]))
    return Facts(entry, document, twins)


# -- reading, then acting ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    """One SQS message as received; its receipt handle is kept apart (a second read brings a newer one)."""

    message_id: str
    body: str


_COUNTED: dict[Action, str] = {"reset": "reset", "delete": "delete", "leave": "left", "error": "errors"}
_DRY_RUN = {
    "reset": "would reset for another attempt: {reason}; would delete the message",
    "delete": "nothing to do: {reason}; would delete the message",
    "leave": "skip: {reason}; would stay on the queue",
    "error": "error: {reason}; left on the queue",
}


class _Redrive:
    def __init__(
        self,
        args: argparse.Namespace,
        connections: Connections,
        out: TextIO,
        progress: Progress,
        now: datetime,
    ):
        self._args = args
        self._connections = connections
        self._out = out
        self._progress = progress
        self._now = now
        self._queue_url = connections.config.queue_url
        self._store = MongoDonationStore(connections.database)
        self.counts: Counter[str] = Counter()
        self._receipts: dict[str, str] = {}  # MessageId -> its newest receipt handle, for every message read
        self._deleted: set[str] = set()
        self._reset_done: set[int] = set()  # indexes of the letters whose reset went through
        self.letters: list[dict[str, Any]] = []  # with --json: each letter, its plan and what was said of it
        self.notes: list[str] = []  # with --json: what was said of no letter in particular

    def say(self, text: str) -> None:
        if self._args.json:  # the same lines, kept with the letter they are about
            said = self.letters[-1]["said"] if self.letters else self.notes
            said.append(text.strip())
            return
        self._progress.clear()
        self._out.write(text + "\n")
        self._out.flush()

    def _record(self, message: Message, letter: Letter | None, decision: Plan) -> None:
        """The letter and its plan, for --json."""
        self.letters.append(
            {
                "messageId": message.message_id,
                "donationId": letter.donation_id if letter else None,
                "period": letter.period if letter else None,
                "reason": letter.reason if letter else None,
                "code": letter.code if letter else None,
                "declineCode": letter.decline_code if letter else None,
                "paymentIntentId": letter.payment_intent_id if letter else None,
                "deadLetterId": letter.dead_letter_id if letter else None,
                "action": decision.action,
                "why": decision.reason,
                "selected": decision.selected,
                "said": [],
            }
        )

    def receive(self) -> list[Message]:
        """The messages, up to --max, each once, hidden from others until released or deleted."""
        messages: list[Message] = []
        while len(messages) < self._args.max:
            with aws_errors("reading the dead-letter queue"):
                received = self._connections.sqs.receive_message(
                    QueueUrl=self._queue_url,
                    MaxNumberOfMessages=min(10, self._args.max - len(messages)),
                    VisibilityTimeout=self._args.visibility_timeout,
                    WaitTimeSeconds=self._args.wait_seconds,
                ).get("Messages", [])
            fresh = [message for message in received if message["MessageId"] not in self._receipts]
            for message in received:  # a message seen before keeps its newest receipt
                self._receipts[message["MessageId"]] = message["ReceiptHandle"]
            if not fresh:
                break
            messages.extend(Message(message["MessageId"], message.get("Body", "")) for message in fresh)
        return messages

    def read(self, message: Message, selection: Selection) -> Read:
        """Everything the plan needs for one message; reads only, and only for the letters selected."""
        try:
            letter = parse_letter(message.body)
        except ValueError as error:
            return Read(None, malformed=str(error))
        if selection.excludes(letter) is not None:
            return Read(letter)
        try:
            with self._connections.mongo_errors("reading the donation"):
                return Read(letter, facts=read_facts(self._store, letter))
        except CliError as error:
            return Read(letter, error=str(error))

    def handle(self, message: Message, read: Read, decision: Plan, index: int) -> None:
        letter = read.letter
        self._record(message, letter, decision)
        if letter is None:
            self.say(f"[{index + 1}] message {message.message_id}: {decision.reason}; left on the queue")
            self._count(decision)
            return
        code = "/".join(item for item in (letter.code, letter.decline_code) if item) or "-"
        self.say(
            f"[{index + 1}] {letter.donation_id} period {letter.period or '-'} {letter.reason} ({code}) "
            f"PaymentIntent {letter.payment_intent_id or '-'}"
        )
        if not self._args.yes:
            self.say("    " + _DRY_RUN[decision.action].format(reason=decision.reason))
            self._count(decision)
            return
        try:
            self._act(message, letter, decision, index)
        except CliError as error:
            self.say(f"    error: {error}; left on the queue")
            self.counts["errors"] += 1

    def _count(self, decision: Plan) -> None:
        self.counts[_COUNTED[decision.action]] += 1
        if not decision.selected:
            self.counts["not selected"] += 1

    def _leave(self, text: str, decision: Plan | None = None) -> None:
        self.say(f"    skip: {text}; left on the queue")
        self._count(decision or Plan("leave", text))

    def _act(self, message: Message, letter: Letter, decision: Plan, index: int) -> None:
        if decision.action == "error":
            self.say(f"    error: {decision.reason}; left on the queue")
            self._count(decision)
            return
        if decision.action == "leave":
            self._leave(decision.reason, decision)
            return
        if decision.after is not None and decision.after not in self._reset_done:
            self._leave(f"the reset of the letter at [{decision.after + 1}] did not go through")
            return
        if decision.action == "reset":
            failed = self._reset(decision)
            if failed is not None:
                self._leave(failed)
                return
            self._reset_done.add(index)
            done = f"reset for another attempt: {decision.reason}"
            if decision.forced is not None:
                done += self._record_forced(letter, decision.forced)
        else:
            done = f"nothing to do: {decision.reason}"
        self._count(decision)
        try:
            self._delete(message)
        except CliError as error:
            # Safe: the next redrive finds the period open again (or charged) and deletes the message then.
            self.say(f"    {done}; the message could not be deleted: {error}")
            self.counts["errors"] += 1
            return
        self.counts["deleted"] += 1
        self.say(f"    {done}; message deleted")

    def _delete(self, message: Message) -> None:
        with aws_errors("deleting the message"):
            self._connections.sqs.delete_message(
                QueueUrl=self._queue_url, ReceiptHandle=self._receipts[message.message_id]
            )
        self._deleted.add(message.message_id)

    def _reset(self, decision: Plan) -> str | None:
        """Both writes, intent first; None when they went through, else why not."""
        assert decision.document is not None
        store = self._store
        intent = decision.intent
        with self._connections.mongo_errors("reopening the period"):
            if intent is not None and not store.redrive_intent(intent, self._now):
                return "the period's charge intent changed while redriving (or another period is open)"
        with self._connections.mongo_errors("reactivating the donation"):
            if not store.redrive_schedule(decision.document, self._now, decision.period if intent else None):
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
        with self._connections.mongo_errors("checking the reopened period"):
            entry = self._store.period_entry(intent.scheduled_donation_id, period)
            if entry is not None and entry.status in STOPPED:
                self._store.release_schedule(read_schedule(document).raw_id)
                self.say("    note: a run gave the period up meanwhile; the job reopens it when it is due")

    def _record_forced(self, letter: Letter, forced: Forced) -> str:
        """Log the forcing, and write it on the period's ledger entry; what to add to the output."""
        logger.warning(
            "hard decline redriven by force",
            donation_id=letter.donation_id,
            dead_letter_id=letter.dead_letter_id,
            period=letter.period,
            decline=forced.decline,
            operator_reason=forced.justification,
        )
        if forced.entry is None:
            return "; the forcing is logged (no ledger entry to record it on)"
        with self._connections.mongo_errors("recording the forced redrive"):
            recorded = self._store.record_forced_redrive(forced.entry, forced.justification, self._now)
        if not recorded:
            return "; the forcing is logged (the ledger entry is gone, not recorded)"
        return "; the forcing is logged and recorded on the period's ledger entry (forcedRedrive)"

    def release_held(self) -> None:
        """Make every message read and not deleted visible again now, rather than after the visibility
        timeout (in a dry run: all of them)."""
        receipts = [
            receipt for message_id, receipt in self._receipts.items() if message_id not in self._deleted
        ]
        for start in range(0, len(receipts), 10):
            entries: list[ChangeMessageVisibilityBatchRequestEntryTypeDef] = [
                {"Id": str(index), "ReceiptHandle": receipt, "VisibilityTimeout": 0}
                for index, receipt in enumerate(receipts[start : start + 10])
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


def summary_line(seen: int, counts: Mapping[str, int], acted: bool) -> str:
    """The last line; a dry run and the run with --yes that follows it print the same counts."""
    if not seen:
        return "no dead letters on the queue\n"
    left = f"{counts.get('left', 0)} left on the queue"
    if counts.get("not selected", 0):
        left += f" ({counts['not selected']} not selected)"
    if acted:
        return (
            f"redrive: {seen} messages: {counts.get('reset', 0)} reset for another attempt, "
            f"{counts.get('delete', 0)} deleted as done, {left}, "
            f"{counts.get('errors', 0)} errors ({counts.get('deleted', 0)} messages deleted)\n"
        )
    return (
        f"redrive (dry run): {seen} messages: {counts.get('reset', 0)} would be reset for another attempt, "
        f"{counts.get('delete', 0)} deleted as done, {left}, {counts.get('errors', 0)} errors; "
        "nothing changed. Run with --yes to act.\n"
    )


def run(args: argparse.Namespace, connections: Connections, out: TextIO, err: TextIO) -> int:
    if not 1 <= args.max <= MAX_MESSAGES:
        raise UsageError(f"--max must be between 1 and {MAX_MESSAGES}")
    if not 0 <= args.wait_seconds <= 20:
        raise UsageError("--wait-seconds must be between 0 and 20")
    if not 10 <= args.visibility_timeout <= 12 * 3600:
        raise UsageError("--visibility-timeout must be between 10 and 43200 seconds")
    selection = selection_from(args)
    queue_url = connections.config.queue_url
    connections.database  # noqa: B018 - fail on configuration before touching the queue
    estimate = _estimate(connections, queue_url)
    total = min(estimate, args.max) if estimate is not None else None
    progress = Progress("redrive", total, stream=err, enabled=progress_enabled(args.progress, err))
    now = datetime.now(UTC)
    redrive = _Redrive(args, connections, out, progress, now)
    messages: list[Message] = []
    try:
        with progress:
            messages = redrive.receive()
            reads = [redrive.read(message, selection) for message in messages]
            plans = plan_queue(reads, selection, now)
            for index, (message, read, decision) in enumerate(zip(messages, reads, plans, strict=True)):
                redrive.handle(message, read, decision, index)
                progress.advance()
    finally:
        redrive.release_held()
    if args.json:
        report = {
            "dryRun": not args.yes,
            "messages": len(messages),
            "counts": dict(sorted(redrive.counts.items())),
            "letters": redrive.letters,
            "notes": redrive.notes,
        }
        write_json(out, report)
    else:
        out.write(summary_line(len(messages), redrive.counts, args.yes))
    return EXIT_FAILURE if redrive.counts["errors"] > 0 else EXIT_OK
