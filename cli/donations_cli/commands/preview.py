"""`donations preview`: what a run would charge now, without charging or writing anything.

It reads what a run claims, in the same order: open charge intents whose next attempt is due, then due
schedules (the engine's own due query), and applies the engine's rules to each (see due_reasons.py). The
totals are per currency, over the donations listed (at most --limit). With the pause switch set, a run
charges nothing: the list is what it would charge once resumed.

`donations preview --id ID` says why that donation is or is not due.
"""

from __future__ import annotations

import argparse
from collections import Counter
from datetime import UTC, datetime
from typing import Any, TextIO

from donation_processor.adapters.donation_store import MongoDonationStore
from donation_processor.adapters.pause_switch import RUNNING
from donation_processor.currencies import format_amount
from donation_processor.validation import read_schedule
from donations_cli.amounts import totals_line
from donations_cli.commands.status import pause_state
from donations_cli.connections import Connections
from donations_cli.donation_report import checked_id, iso, read_donation
from donations_cli.due_reasons import ASSUMPTION, Verdict, for_intent, for_schedule
from donations_cli.errors import EXIT_OK, UsageError
from donations_cli.output import write_json

PAUSED_NOW = "the pause switch {parameter} is {state}: a run now charges nothing"
DEFAULT_LIMIT = 100
MAX_LIMIT = 100_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--id", dest="donation_id", metavar="ID", help="say why this donation is or is not due"
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=DEFAULT_LIMIT,
        help=f"donations to look at, at most (default {DEFAULT_LIMIT})",
    )


def _paused(pause: dict[str, Any]) -> bool:
    """A configured switch that is not `running` (paused, missing, unreadable) stops every run."""
    return pause["parameter"] is not None and pause["state"] != RUNNING


def preview_all(
    store: MongoDonationStore, now: datetime, limit: int
) -> tuple[list[tuple[str, Verdict]], bool]:
    """Each donation a run would look at now, in its order, with its verdict; and whether the limit cut it."""
    intents = store.due_intents(now, limit + 1)
    schedules = store.schedules_for([intent.scheduled_donation_id for intent in intents])
    verdicts = [
        (intent.scheduled_donation_id, for_intent(intent, schedules.get(intent.scheduled_donation_id), now))
        for intent in intents
    ]
    room = limit + 1 - len(verdicts)
    documents = list(store.iter_due(now, None, room)) if room > 0 else []
    twins = store.ids_with_twins([document.get("_id") for document in documents])
    verdicts += [
        (read_schedule(document).canonical_id, for_schedule(document, twins, now)) for document in documents
    ]
    return verdicts[:limit], len(verdicts) > limit


def preview_one(store: MongoDonationStore, donation_id: str, now: datetime) -> Verdict:
    donation = read_donation(store, donation_id)
    open_entry = next((entry for entry in donation.entries if entry.intent.open), None)
    if open_entry is not None:
        return for_intent(open_entry.intent, donation.document, now)
    if donation.document is None:
        return Verdict(False, "the schedule is deleted; only its ledger entries remain")
    twins = store.ids_with_twins([donation.document.get("_id")])
    return for_schedule(donation.document, twins, now)


def _one(args: argparse.Namespace, connections: Connections, out: TextIO, now: datetime) -> int:
    donation_id = checked_id(args.donation_id)
    pause = pause_state(connections)
    with connections.mongo_errors("reading the donation"):
        verdict = preview_one(MongoDonationStore(connections.database), donation_id, now)
    if _paused(pause) and verdict.due:
        verdict = Verdict(False, f"{PAUSED_NOW.format(**pause)}; once resumed: {verdict.why}", verdict.charge)
    if args.json:
        write_json(out, {**verdict.as_dict(donation_id), "now": iso(now), "assumes": ASSUMPTION})
        return EXIT_OK
    charge = verdict.charge
    amount = f" {format_amount(charge['amount']['amount'], charge['amount']['currency'])}" if charge else ""
    out.write(f"{donation_id}: {'due' if verdict.due else 'not due'}{amount}\n  why: {verdict.why}\n")
    out.write(f"({ASSUMPTION})\n")
    return EXIT_OK


def render(report: dict[str, Any]) -> str:
    charges, skipped = report["charges"], report["notCharged"]
    head = f"preview at {report['now']} (database {report['database']}): nothing charged or written"
    lines = [head]
    if report["paused"]:
        lines.append(
            f"charging is paused ({report['pauseSwitch']['state']}): a run now charges nothing; once resumed:"
        )
    lines.append(f"a run would charge {len(charges)} donations")
    for charge in charges:
        amount = format_amount(charge["amount"]["amount"], charge["amount"]["currency"])
        lines.append(f"  {charge['id']:<26} {charge['period']}  {charge['kind']:<14} {amount:>18}")
    lines.append(f"totals: {totals_line(report['totals'])}")
    if skipped:
        lines += ["", f"looked at, not charged ({len(skipped)})"]
        lines += [f"  {entry['id']}: {entry['why']}" for entry in skipped]
    if report["limitReached"]:
        lines.append(f"(more may be due: only the first {report['limit']} were looked at; raise --limit)")
    lines.append(f"({report['assumes']})")
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace, connections: Connections, out: TextIO, err: TextIO) -> int:
    if not 1 <= args.limit <= MAX_LIMIT:
        raise UsageError(f"--limit must be between 1 and {MAX_LIMIT:,}")
    now = datetime.now(UTC)
    if args.donation_id is not None:
        return _one(args, connections, out, now)
    pause = pause_state(connections)
    with connections.mongo_errors("reading what is due"):
        verdicts, cut = preview_all(MongoDonationStore(connections.database), now, args.limit)
    charges = [
        {"id": donation_id, **verdict.charge}
        for donation_id, verdict in verdicts
        if verdict.charge and verdict.due
    ]
    totals: Counter[str] = Counter()
    for charge in charges:
        totals[charge["amount"]["currency"]] += charge["amount"]["amount"]
    report = {
        "now": iso(now),
        "database": connections.config.mongodb_database,
        "pauseSwitch": pause,
        "paused": _paused(pause),
        "charges": charges,
        "notCharged": [
            {"id": donation_id, "why": verdict.why} for donation_id, verdict in verdicts if not verdict.due
        ],
        "totals": dict(sorted(totals.items())),
        "limit": args.limit,
        "limitReached": cut,
        "assumes": ASSUMPTION,
    }
    if args.json:
        write_json(out, report)
    else:
        out.write(render(report))
    return EXIT_OK
