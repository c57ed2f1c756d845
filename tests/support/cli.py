"""Helpers for the CLI tests: run `donations` in-process, point it at the local services, seed and peek."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from donation_processor.engine import DonationEngine
from donation_processor.invocation import RunRequest
from donation_processor.summary import RunSummary
from donations_cli.main import build_parser, main
from harness.local.aws_local import sqs_client
from harness.local.seed import scheduled_donation
from harness.local.services import LocalServices


@dataclass(frozen=True)
class CliResult:
    code: int
    out: str
    err: str


def point_cli_at(services: LocalServices, monkeypatch: pytest.MonkeyPatch, **extra: str) -> None:
    """The function's environment for the local services (boto3 reads AWS_ENDPOINT_URL from os.environ)."""
    for name, value in services.environment(**extra).items():
        monkeypatch.setenv(name, value)


def donations(capsys: pytest.CaptureFixture[str], *argv: str) -> CliResult:
    """`donations ARGV…` through the real entry point, sharing this process's mongomock database with the
    test; stdout and stderr of this call only."""
    capsys.readouterr()
    code = main(list(argv), shared_process_database=True)
    captured = capsys.readouterr()
    return CliResult(code, captured.out, captured.err)


def run_engine(engine: DonationEngine) -> RunSummary:
    return engine.run(RunRequest(source="schedule"), lambda: 900_000)


def insert_donation(services: LocalServices, **fields: Any) -> Any:
    """One due scheduled donation for a fresh Stripe customer; returns its _id."""
    document = scheduled_donation(
        customer_id=services.stripe.state.create_customer(),
        next_run_at=fields.pop("next_run_at", datetime.now(UTC) - timedelta(hours=1)),
        **fields,
    )
    services.database["scheduled_donations"].insert_one(document)
    return document["_id"]


def peek_letters(services: LocalServices) -> list[dict[str, Any]]:
    """The dead letters on the queue, left there (visibility timeout 0)."""
    client = sqs_client(services.moto.endpoint_url)
    messages = client.receive_message(
        QueueUrl=services.queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0, WaitTimeSeconds=0
    ).get("Messages", [])
    return [json.loads(message["Body"]) for message in messages]


def send_raw(services: LocalServices, body: str) -> None:
    sqs_client(services.moto.endpoint_url).send_message(QueueUrl=services.queue_url, MessageBody=body)


def subcommands() -> dict[str, argparse.ArgumentParser]:
    """The `donations` parser's subcommands, by name."""
    parser = build_parser()
    [action] = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    return dict(action.choices)


WORKTREE = Path(__file__).resolve().parents[2]
CODE_PATHS = ("layers/shared", "functions/scheduled_donations", "cli", ".")


def donations_process(cwd: Path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`donations ARGV…` as a process of its own (this worktree's code, not the installed script's)."""
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(str(WORKTREE / path) for path in CODE_PATHS),
        **env,
    }
    return subprocess.run(  # noqa: S603 - our own module
        [sys.executable, "-m", "donations_cli.main", *argv],
        cwd=cwd, env=environment, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
