"""`make reliability`: run the fault-injection suite and write docs/RELIABILITY.md from its own figures.

Nothing in the table is typed by hand: each row is what one scenario measured from the Stripe server's
ledger and MongoDB in this run.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.project import PROJECT_ROOT
from harness.reports.readme_figures import update_readme

TARGET = PROJECT_ROOT / "docs" / "RELIABILITY.md"

GUARANTEES = """\
## What the design guarantees

- **Ledger first.** Before the first Stripe request of a period, the job writes that period's charge intent
  in `donations` (period, amount, currency, customer, payment method, the creation key); every later
  attempt is written there, key and parameters, before it is sent. Nothing being charged is ever
  recomputed from the schedule document, which the host application edits at any time.
- **At most one successful charge per (scheduled donation, period), and one period at a time.** A unique
  index allows one intent per (donation, period) and a second one refuses a second open intent per
  donation. The PaymentIntent of a period is created under a key derived only from the canonical donation
  id and the period (`scheduled-donation:<id>:<YYYY-MM-DD>`); a missing answer is recovered by re-sending
  the same key with the same recorded parameters (Stripe replays the first answer), or past 23 h by
  retrieving the PaymentIntent or searching its metadata. Dunning confirms that same PaymentIntent under a
  new key per attempt, and a PaymentIntent can succeed only once.
- **At most one charge per billing cycle when the host moves the date.** Once charged, a schedule whose
  `nextRunAt` the host edited meanwhile continues on the host's day, from the first date more than half a
  period after the charged due date.
- **Every charge recorded, and counted once.** Unresolved intents are resolved first in every run,
  whatever the schedule document now says (cancelled, deleted, edited). An outcome is counted, announced
  and dead-lettered only by the run whose conditional write on the intent won; the schedule moves on after
  that write, idempotently.
- **One run at a time.** A DynamoDB conditional write with a lease and a fencing token that grows on every
  acquisition (and keeps growing if the lock item is lost); DynamoDB unreachable means no run.
- **No lost failure.** A hard decline, exhausted attempts or a rejected request is recorded on the intent
  with its dead letter in the same MongoDB write (an invalid document: on the schedule); a letter is
  cleared only after SQS accepted it, so an SQS outage parks letters until a later run delivers them.
"""

LIMITS = """\
## What it does not guarantee

- **Exactly-once delivery of dead letters.** Delivery is at least once: a crash after SQS accepted a letter
  and before MongoDB cleared it sends it again. Each letter carries a stable `deadLetterId` to deduplicate.
- **Charges made outside this job.** A PaymentIntent created by hand for a period without the metadata
  cannot be found by the reconciliation search.
- **Stripe search freshness.** Stripe's search index can lag by up to a minute; the search is used only for
  a creation whose answer went missing more than 23 h ago (or after an idempotency_error, which only a
  period adopted from an earlier version can meet), when that lag cannot matter.
- **Atomic conditional writes.** The lock relies on DynamoDB's conditional writes being atomic (they are;
  moto's server is not under concurrent requests, so the harness's applies DynamoDB requests one at a time,
  tested in tests/harness_aws). No clock decides who holds the lock.
- **Real MongoDB in this table.** The figures below come from the backend named in each row. The store's
  contract tests run on a real server in GitHub Actions (`MONGODB_TEST_URI`); this machine has none.
"""


def run_suite(results: Path) -> int:
    env = {**os.environ, "RELIABILITY_RESULTS": str(results)}
    command = [sys.executable, "-m", "pytest", "-m", "faults", "-q", "-p", "no:cacheprovider", "tests/faults"]
    completed = subprocess.run(command, cwd=PROJECT_ROOT, env=env, check=False)  # noqa: S603 - our own tests
    return completed.returncode


def render(rows: list[dict[str, Any]], exit_code: int) -> str:
    header = (
        "| scenario | injected fault | charge requests sent | successful charges | duplicate charges | "
        "lost records | outcome | backend |\n|---|---|---:|---:|---:|---:|---|---|\n"
    )
    body = "".join(
        f"| `{row['scenario']}` | {row['fault']} | {row['charges_attempted']} | "
        f"{row['successful_charges']} | {row['duplicate_charges']} | {row['lost_records']} | "
        f"{row['outcome']} | {row['backend']} |\n"
        for row in rows
    )
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        "# Reliability\n\n"
        "Generated by `make reliability` (harness/reports/reliability.py) from a run of the\n"
        "fault-injection suite (`pytest -m faults tests/faults`); do not edit by hand.\n\n"
        f"Last run: {when} on {platform.system()} {platform.machine()}, Python {platform.python_version()}; "
        f"suite exit code {exit_code}.\n\n"
        f"{headline(rows)}\n\n"
        "Each scenario seeds due donations, injects one fault into the real handler's adapters or into the\n"
        "Stripe-compatible server, then runs the job again (and again after the leases expire), and counts\n"
        "from the Stripe server's ledger and from MongoDB. *Charge requests sent* counts PaymentIntent\n"
        "create/confirm requests that reached the server (429s excluded); *lost records* counts charged\n"
        "periods without a `succeeded` record.\n\n"
        "## Scenario matrix\n\n" + header + body + "\n" + GUARANTEES + "\n" + LIMITS
    )


def headline(rows: list[dict[str, Any]]) -> str:
    duplicates = sum(row["duplicate_charges"] for row in rows)
    lost = sum(row["lost_records"] for row in rows)
    return f"**{len(rows)} scenarios, {duplicates} duplicate charges, {lost} lost records.**"


def main() -> int:
    with tempfile.TemporaryDirectory() as scratch:
        results = Path(scratch) / "results.json"
        exit_code = run_suite(results)
        if not results.exists():
            print("the fault suite wrote no results", file=sys.stderr)
            return 1
        rows = json.loads(results.read_text())
    TARGET.write_text(render(rows, exit_code))
    update_readme("reliability", f"> {headline(rows)}")
    print(f"wrote {TARGET.relative_to(PROJECT_ROOT)}: {len(rows)} scenarios, exit code {exit_code}")
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
