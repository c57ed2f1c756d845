"""Build the engine and its adapters from Settings, once per container."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

import boto3
from botocore.config import Config

from donation_processor.adapters.dead_letter_queue import SqsDeadLetters
from donation_processor.adapters.donation_store import MongoDonationStore
from donation_processor.adapters.donor_events import EventBridgeDonorEvents
from donation_processor.adapters.mongo_connection import get_database
from donation_processor.adapters.pause_switch import SsmPauseSwitch
from donation_processor.adapters.run_lock import DynamoDbRunLock
from donation_processor.adapters.stripe_payments import StripePayments, build_stripe_client
from donation_processor.config import Settings
from donation_processor.engine import DonationEngine, EngineDependencies, utc_now
from donation_processor.exceptions import SecretError
from donation_processor.rate_limiter import RateLimiter

SECRET_CACHE_SECONDS = 300
# Bounded timeouts so an unreachable endpoint fails fast; "standard" retries cover throttling blips.
AWS_CLIENT_CONFIG = Config(
    connect_timeout=5, read_timeout=10, retries={"max_attempts": 3, "mode": "standard"}
)


def read_secret(name: str) -> str:
    """A plain-string secret from Secrets Manager, cached by Powertools; the value is never logged."""
    from aws_lambda_powertools.utilities import parameters

    try:
        value = parameters.get_secret(name, max_age=SECRET_CACHE_SECONDS)
    except parameters.exceptions.GetParameterError as error:
        raise SecretError(f"secret {name!r} could not be read") from error
    if not isinstance(value, str) or not value.strip():
        raise SecretError(f"secret {name!r} is empty or not a string")
    return value.strip()


def build_engine(
    settings: Settings,
    clock: Callable[[], datetime] = utc_now,
    sleep: Callable[[float], None] = time.sleep,
    lock_monotonic: Callable[[], float] = time.monotonic,
    lock_sleep: Callable[[float], None] = time.sleep,
) -> DonationEngine:
    """The engine on its real adapters. `clock` and `sleep` are the engine's wall clock and backoff sleep;
    `lock_monotonic` and `lock_sleep` are what the run lock watches a holder's record version with (one
    lease on `lock_monotonic`, polling with `lock_sleep`), so tests can let a lease pass without waiting."""
    mongodb_uri = settings.mongodb_uri or read_secret(str(settings.mongodb_secret_name))
    stripe_key = settings.stripe_secret_key or read_secret(str(settings.stripe_secret_name))
    database = get_database(mongodb_uri, settings.mongodb_database, pool_size=settings.max_concurrency + 4)
    limiter = RateLimiter(rate=settings.stripe_max_rps)
    payments = StripePayments(
        build_stripe_client(stripe_key, settings.stripe_api_base, settings.stripe_timeout_seconds), limiter
    )
    dependencies = EngineDependencies(
        lock=DynamoDbRunLock(
            settings.lock_table_name,
            settings.lock_name,
            settings.lock_lease_seconds,
            client=boto3.client("dynamodb", config=AWS_CLIENT_CONFIG),
            clock_ms=lambda: int(clock().timestamp() * 1000),
            monotonic=lock_monotonic,
            sleep=lock_sleep,
        ),
        store=MongoDonationStore(database),
        payments=payments,
        dead_letters=SqsDeadLetters(
            settings.dead_letter_queue_url, client=boto3.client("sqs", config=AWS_CLIENT_CONFIG)
        ),
        pacing=limiter,
    )
    if settings.pause_parameter_name:
        dependencies = replace(dependencies, pause_switch=SsmPauseSwitch(settings.pause_parameter_name))
    if settings.donor_event_bus_name:
        events_client = boto3.client("events", config=AWS_CLIENT_CONFIG)
        dependencies = replace(
            dependencies, donor_events=EventBridgeDonorEvents(settings.donor_event_bus_name, events_client)
        )
    return DonationEngine(settings, dependencies, clock=clock, sleep=sleep)
