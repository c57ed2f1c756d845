"""In AWS the Stripe key and the MongoDB URI come from Secrets Manager by name, never from the template."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import app
from donation_processor.exceptions import SecretError
from harness.local.aws_local import create_secret, secretsmanager_client
from harness.local.lambda_context import LocalLambdaContext
from harness.local.seed import scheduled_donation
from harness.local.services import LOCAL_STRIPE_KEY, LocalServices

SCHEDULED_EVENT = json.loads(Path("events/scheduled.json").read_text())


def test_the_handler_reads_both_secrets_from_secrets_manager_and_charges(
    handler_env: LocalServices,
    lambda_context: LocalLambdaContext,
    monkeypatch: pytest.MonkeyPatch,
    log_stream: io.StringIO,
) -> None:
    # GIVEN the key and the URI stored as secrets, and only their names in the environment
    client = secretsmanager_client(handler_env.moto.endpoint_url)
    create_secret(client, "test/stripe-key", LOCAL_STRIPE_KEY)
    create_secret(client, "test/mongodb-uri", handler_env.mongodb_uri)
    monkeypatch.delenv("STRIPE_SECRET_KEY")
    monkeypatch.delenv("MONGODB_URI")
    monkeypatch.setenv("STRIPE_SECRET_NAME", "test/stripe-key")
    monkeypatch.setenv("MONGODB_SECRET_NAME", "test/mongodb-uri")
    handler_env.database["scheduled_donations"].insert_one(
        scheduled_donation(
            customer_id=handler_env.stripe.state.create_customer(),
            next_run_at=datetime.now(UTC) - timedelta(minutes=5),
        )
    )

    # WHEN the schedule invokes the handler
    summary = app.lambda_handler(SCHEDULED_EVENT, lambda_context)

    # THEN it charged with the secret key against the secret database, and logged neither secret
    assert summary["succeeded"] == 1
    assert len(handler_env.stripe.state.charges()) == 1
    assert LOCAL_STRIPE_KEY not in log_stream.getvalue()
    assert handler_env.mongodb_uri not in log_stream.getvalue()


def test_a_missing_secret_fails_clearly_before_anything_is_charged(
    handler_env: LocalServices, lambda_context: LocalLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a Stripe secret name that does not exist
    monkeypatch.delenv("STRIPE_SECRET_KEY")
    monkeypatch.setenv("STRIPE_SECRET_NAME", "test/not-there")

    # WHEN the handler starts
    # THEN it fails naming the secret, and Stripe saw nothing
    with pytest.raises(SecretError, match="test/not-there"):
        app.lambda_handler(SCHEDULED_EVENT, lambda_context)
    assert handler_env.stripe.state.request_count == 0
