"""`donations show ID`: one scheduled donation, its charge intents and attempts, and its parked letters.

ID is the schedule's `_id` as the engine accepts it (an ObjectId's 24 hex digits, or a string of 1-64
letters, digits, '_' or '-'). Reads only. Dead letters parked in MongoDB (not yet accepted by SQS) are
shown; letters already on the queue are not read (receiving hides them from consumers): `donations redrive
--id ID` lists them. Exit 1 when MongoDB holds nothing for the id, 2 when it is not an id.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any, TextIO

from donation_processor.adapters.donation_store import MongoDonationStore
from donation_processor.currencies import format_amount
from donations_cli.connections import Connections
from donations_cli.donation_report import checked_id, donation_report, read_donation
from donations_cli.errors import EXIT_OK
from donations_cli.output import write_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", help="the scheduled donation's _id")


def _amount(money: dict[str, Any]) -> str:
    amount, currency = money["amount"], money["currency"]
    if isinstance(amount, int) and isinstance(currency, str):
        return format_amount(amount, currency)
    return f"{amount!r} {currency!r}"


def _schedule_lines(report: dict[str, Any]) -> list[str]:
    schedule = report["schedule"]
    if schedule is None:
        return [f"scheduled donation {report['id']}: deleted (its ledger entries remain)"]
    lines = [f"scheduled donation {report['id']} ({schedule['idType']})"]
    shown = {**schedule, "amount": _amount(schedule["amount"])}
    for name in ("status", "amount", "frequency", "nextRunAt", "stripeCustomerId", "stripePaymentMethodId",
                 "donorId", "metadata"):  # fmt: skip
        lines.append(f"  {name:<24} {shown[name] if shown[name] is not None else '-'}")
    problem = schedule["invalidBecause"]
    lines.append(f"  {'chargeable':<24} {'yes' if problem is None else 'no: ' + problem}")
    engine = {name: value for name, value in report["engine"].items() if value is not None}
    for name, value in engine.items():
        lines.append(f"  {name:<24} {value}")
    return lines


def _intent_lines(intent: dict[str, Any]) -> list[str]:
    state = "open" if intent["open"] else "closed"
    lines = [
        f"  period {intent['period']}: {intent['status']} ({state}), {_amount(intent['amount'])}, "
        f"declines {intent['dunningAttempts']}, PaymentIntent {intent['paymentIntentId'] or '-'}"
    ]
    if intent["nextAttemptAt"] is not None:
        lines.append(f"    next attempt due {intent['nextAttemptAt']}")
    lease = intent["lease"]
    if lease is not None and lease["runId"] is not None:
        held = "held" if lease["live"] else "expired"
        lines.append(
            f"    lease {held}: {lease['runId']} (fence {lease['fence']}) until {lease['expiresAt']}"
        )
    error = "/".join(item for item in (intent["errorCode"], intent["declineCode"]) if item)
    if intent["stopReason"] or error:
        lines.append(f"    stop reason {intent['stopReason'] or '-'}; last Stripe error {error or '-'}")
    for attempt in intent["attempts"]:
        outcome = attempt["outcome"] or "no answer recorded"
        if attempt["reason"]:
            outcome += f" ({attempt['reason']})"
        kind = "creates" if attempt["creates"] else "confirms"
        lines.append(
            f"    attempt {attempt['number']} {kind}, key {attempt['key']}, {attempt['paymentMethodId']}, "
            f"sent {attempt['sentAt']}: {outcome}"
        )
    return lines


def render(report: dict[str, Any]) -> str:
    lines = _schedule_lines(report)
    lines += ["", f"charge intents ({len(report['intents'])})"]
    for intent in report["intents"]:
        lines += _intent_lines(intent)
    letters = report["parkedLetters"]
    lines += ["", f"dead letters parked in MongoDB, not yet on SQS ({len(letters)})"]
    for letter in letters:
        code = "/".join(item for item in (letter["code"], letter["declineCode"]) if item) or "-"
        lines.append(f"  {letter['deadLetterId']}: {letter['reason']} ({code}), on the {letter['keptOn']}")
    lines += ["", report["queue"]["why"]]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace, connections: Connections, out: TextIO, err: TextIO) -> int:
    donation_id = checked_id(args.id)
    now = datetime.now(UTC)
    with connections.mongo_errors("reading the donation"):
        donation = read_donation(MongoDonationStore(connections.database), donation_id)
    report = donation_report(donation, now)
    if args.json:
        write_json(out, report)
    else:
        out.write(render(report))
    return EXIT_OK
