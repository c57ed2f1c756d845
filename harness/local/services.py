"""Start everything the job talks to, on this machine: moto's server, the Stripe-compatible server, mongomock.

Used by `make demo`, the tests and the benchmark, so all three exercise the same wiring as Lambda does:
the real handler reads the same environment variables it reads in AWS.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from pymongo.database import Database

from donation_processor.adapters.mongo_connection import get_database
from harness.local.aws_local import MotoServer, provision_local_stack, start_moto_server
from harness.local.stripe_server import RunningStripeServer, start_stripe_server

LOCAL_STRIPE_KEY = "sk_test_local_harness"
AWS_DUMMY_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


@dataclass
class LocalServices:
    moto: MotoServer
    stripe: RunningStripeServer
    mongodb_uri: str
    mongodb_database: str = "donations"
    lock_table_name: str = "scheduled-donations-lock"
    queue_url: str = ""
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def database(self) -> Database[Any]:
        return get_database(self.mongodb_uri, self.mongodb_database)

    def environment(self, **overrides: str) -> dict[str, str]:
        """The function's environment variables, pointing at the local services."""
        env = {
            **AWS_DUMMY_ENV,
            "AWS_ENDPOINT_URL": self.moto.endpoint_url,
            "MONGODB_URI": self.mongodb_uri,
            "MONGODB_DATABASE": self.mongodb_database,
            "STRIPE_SECRET_KEY": LOCAL_STRIPE_KEY,
            "STRIPE_API_BASE": self.stripe.url,
            "LOCK_TABLE_NAME": self.lock_table_name,
            "DEAD_LETTER_QUEUE_URL": self.queue_url,
            "POWERTOOLS_SERVICE_NAME": "scheduled-donations",
            "POWERTOOLS_METRICS_NAMESPACE": "ScheduledDonations",
            "POWERTOOLS_TRACE_DISABLED": "1",
            **self.extra_env,
        }
        env.update(overrides)
        return env

    def provision(self, suffix: str | None = None, mongodb_uri: str | None = None) -> None:
        """Create a fresh lock table and queue (from template.yaml) and point a fresh database at them:
        in mongomock by default, or a uniquely named database on the real server at mongodb_uri."""
        tag = suffix or uuid.uuid4().hex[:8]
        self.lock_table_name = f"scheduled-donations-lock-{tag}"
        if mongodb_uri is None:
            self.mongodb_uri = f"mongomock://localhost/{tag}"
        else:
            self.mongodb_uri, self.mongodb_database = mongodb_uri, f"scheduled_donations_test_{tag}"
        stack = provision_local_stack(
            self.moto.endpoint_url,
            lock_table_name=self.lock_table_name,
            queue_name=f"scheduled-donations-dlq-{tag}",
        )
        self.queue_url = stack.queue_url

    def stop(self) -> None:
        self.stripe.stop()
        self.moto.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


def start_local_services(
    *, latency_ms: float = 0, jitter_ms: float = 0, rate_limit_rps: float | None = None
) -> LocalServices:
    moto = start_moto_server()
    stripe = start_stripe_server(latency_ms=latency_ms, jitter_ms=jitter_ms, rate_limit_rps=rate_limit_rps)
    services = LocalServices(moto=moto, stripe=stripe, mongodb_uri="mongomock://localhost/demo")
    services.provision()
    return services
