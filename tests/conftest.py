"""Shared fixtures: the real local services (moto's server, the Stripe-compatible server, mongomock)."""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from donation_processor.config import load_settings
from donation_processor.engine import DonationEngine
from donation_processor.observability import metrics
from donation_processor.wiring import build_engine
from harness.local.aws_local import MotoServer, start_moto_server
from harness.local.lambda_context import LocalLambdaContext
from harness.local.services import AWS_DUMMY_ENV, LocalServices
from harness.local.stripe_server import RunningStripeServer, start_stripe_server
from tests.support.clock import TestClock

for _name, _value in AWS_DUMMY_ENV.items():
    os.environ.setdefault(_name, _value)
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "1")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "ScheduledDonations")


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    with start_moto_server() as server:
        yield server


@pytest.fixture(scope="session")
def stripe_server() -> Iterator[RunningStripeServer]:
    with start_stripe_server() as server:
        yield server


def _mongodb_backends() -> list[Any]:
    real = os.environ.get("MONGODB_TEST_URI")
    return ["mongomock", pytest.param(real, id="mongodb")] if real else ["mongomock"]


@pytest.fixture(params=_mongodb_backends())
def services(
    request: pytest.FixtureRequest, moto_server: MotoServer, stripe_server: RunningStripeServer
) -> Iterator[LocalServices]:
    """A fresh lock table, queue and database per test, on the shared servers. Every test that uses it
    runs on mongomock, and again on a real MongoDB server when MONGODB_TEST_URI is set."""
    stripe_server.state.reset()
    local = LocalServices(moto=moto_server, stripe=stripe_server, mongodb_uri="")
    real_uri = None if request.param == "mongomock" else str(request.param)
    local.provision(mongodb_uri=real_uri)
    yield local
    if real_uri is not None:
        local.database.client.drop_database(local.mongodb_database)


@pytest.fixture
def handler_env(services: LocalServices, monkeypatch: pytest.MonkeyPatch) -> LocalServices:
    """The function's environment pointing at the local services, and a cold container."""
    import app

    for name, value in services.environment(STRIPE_RETRY_ATTEMPTS="2").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(app, "_engine", None)
    return services


@pytest.fixture
def lambda_context() -> LocalLambdaContext:
    return LocalLambdaContext()


@pytest.fixture
def clock() -> TestClock:
    return TestClock()


@pytest.fixture
def make_engine(services: LocalServices, clock: TestClock) -> Callable[..., DonationEngine]:
    """The engine with its real adapters, a test clock and no backoff sleeping; the run lock watches a
    holder on the test clock (`TestClock.monotonic`/`sleep`), so waiting out a dead one takes no real time."""

    def factory(sleep: Callable[[float], None] | None = None, **env_overrides: str) -> DonationEngine:
        env = services.environment(**env_overrides)
        previous = {name: os.environ.get(name) for name in env}
        os.environ.update(env)  # boto3 reads AWS_ENDPOINT_URL and credentials from the environment
        try:
            return build_engine(
                load_settings(env),
                clock=clock,
                sleep=sleep or (lambda _seconds: None),
                lock_monotonic=clock.monotonic,
                lock_sleep=clock.sleep,
            )
        finally:
            for name, value in previous.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    return factory


@pytest.fixture(autouse=True)
def _clear_metrics() -> Iterator[None]:
    yield
    metrics.clear_metrics()


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """Everything the Powertools logger writes during the test (its handler holds its own stream)."""
    from donation_processor.observability import logger

    stream = io.StringIO()
    handler = logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    previous = handler.setStream(stream)
    yield stream
    handler.setStream(previous)
