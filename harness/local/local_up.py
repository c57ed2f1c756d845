"""`make local-up`: a practice stack that outlives the command, for the `donations` CLI and local runs.

Starts, as background processes on 127.0.0.1 (pid files and logs in .local/): moto's server, the
Stripe-compatible server and a MongoDB (see practice_mongo.py); provisions from template.yaml the lock
table, dead-letter queue, pause parameter and donor event bus (with a sink queue to read its events);
creates a Stripe customer to seed donations for; writes .local/env. Running it again starts only what is
not running and keeps what the stack holds.

Ports (127.0.0.1): LOCAL_MOTO_PORT (5050), LOCAL_STRIPE_PORT (12111), LOCAL_MONGO_PORT (27018).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from harness.local.aws_local import DUMMY_ACCESS_KEY_ID, DUMMY_SECRET_ACCESS_KEY, REGION
from harness.local.background_process import (
    Managed,
    has_stale_pid_file,
    log_tail,
    port_in_use,
    running_pid,
    spawn,
    wait_for_port,
)
from harness.local.local_env import ENV_FILE_NAME, local_dir, write_env_file
from harness.local.practice_mongo import start_mongo, wire_server
from harness.local.practice_stack import create_stripe_customer, provision_practice_stack
from harness.local.services import LOCAL_STRIPE_KEY
from harness.project import PROJECT_ROOT

DEFAULT_PORTS = {"LOCAL_MOTO_PORT": 5050, "LOCAL_STRIPE_PORT": 12111, "LOCAL_MONGO_PORT": 27018}
DATABASE = "donations"
LOCK_NAME = "scheduled-donations"


@dataclass(frozen=True)
class Ports:
    moto: int
    stripe: int
    mongo: int

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Ports:
        values: dict[str, int] = {}
        for name, default in DEFAULT_PORTS.items():
            raw = env.get(name, "").strip()
            try:
                port = int(raw) if raw else default
            except ValueError:
                raise SystemExit(f"local-up: {name} must be a port number, got {raw!r}") from None
            if not 1024 <= port <= 65535:
                raise SystemExit(f"local-up: {name} must be between 1024 and 65535, got {port}")
            values[name] = port
        return cls(values["LOCAL_MOTO_PORT"], values["LOCAL_STRIPE_PORT"], values["LOCAL_MONGO_PORT"])


def moto_server(directory: Path) -> Managed:
    return Managed("moto", directory, "harness.local.aws_local")


def stripe_server(directory: Path) -> Managed:
    return Managed("stripe", directory, "harness.local.stripe_server")


def child_environment() -> dict[str, str]:
    """The servers' environment: ours, with the harness importable and no real AWS credentials."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    python_path = [str(PROJECT_ROOT), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(part for part in python_path if part)
    return env


def ensure_running(server: Managed, argv: Sequence[str], port: int, variable: str) -> bool:
    """Start server unless it runs; True if started now. Exits with a message if it cannot start."""
    if has_stale_pid_file(server):
        print(f"{server.name}: removed a stale pid file")
    pid = running_pid(server)
    if pid is not None:
        print(f"{server.name}: already running (pid {pid}, port {port})")
        return False
    if port_in_use(port):
        raise SystemExit(f"local-up: port {port} is in use by another program; set {variable} to a free port")
    pid = spawn(server, argv, child_environment())
    if not wait_for_port(port, pid=pid):
        raise SystemExit(f"local-up: {server.name} did not start; {server.log_file}:\n{log_tail(server)}")
    print(f"{server.name}: started (pid {pid}, http://127.0.0.1:{port}, log {server.log_file})")
    return True


def function_environment(
    ports: Ports, mongodb_uri: str, customer: str, provisioned: dict[str, str]
) -> dict[str, str]:
    """Everything the function and the CLI read, pointing at the practice stack."""
    return {
        "AWS_ACCESS_KEY_ID": DUMMY_ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET_ACCESS_KEY,
        "AWS_SESSION_TOKEN": "testing",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{ports.moto}",
        "MONGODB_URI": mongodb_uri,
        "MONGODB_DATABASE": DATABASE,
        "STRIPE_SECRET_KEY": LOCAL_STRIPE_KEY,
        "STRIPE_API_BASE": f"http://127.0.0.1:{ports.stripe}",
        "LOCK_NAME": LOCK_NAME,
        **provisioned,
        "POWERTOOLS_SERVICE_NAME": "scheduled-donations",
        "POWERTOOLS_METRICS_NAMESPACE": "ScheduledDonations",
        "POWERTOOLS_TRACE_DISABLED": "1",
        "LOCAL_STRIPE_CUSTOMER": customer,
    }


HEADER = """\
The practice stack of `make local-up` ({when}). Local only: moto, the local Stripe server, {mongo}.
Use: source .local/env, then `donations status`, `make local-invoke`, ... ; `make local-down` stops it.
LOCAL_STRIPE_CUSTOMER is a customer the local Stripe server knows:
  donations seed N --customer "$LOCAL_STRIPE_CUSTOMER"
DONOR_EVENTS_SINK_QUEUE_URL receives every event on the donor event bus (local only)."""


def main(argv: Sequence[str] | None = None) -> int:
    del argv
    started_at = time.monotonic()
    directory = local_dir()
    ports = Ports.from_env(os.environ)
    directory.mkdir(parents=True, exist_ok=True)
    python = sys.executable
    started = [
        ensure_running(
            moto_server(directory),
            [python, "-m", "harness.local.aws_local", "--port", str(ports.moto)],
            ports.moto,
            "LOCAL_MOTO_PORT",
        ),
        ensure_running(
            stripe_server(directory),
            [
                python,
                "-m",
                "harness.local.stripe_server",
                "--port",
                str(ports.stripe),
                "--log-level",
                "ERROR",
            ],
            ports.stripe,
            "LOCAL_STRIPE_PORT",
        ),
    ]
    if has_stale_pid_file(wire_server(directory)):
        print("mongo-wire: removed a stale pid file")
    try:
        mongo = start_mongo(directory, ports.mongo, child_environment())
    except RuntimeError as error:
        raise SystemExit(f"local-up: MongoDB: {error}") from None
    print(f"MongoDB: {mongo.description}")
    if not os.environ.get("LOCAL_MONGODB_URI", "").strip():
        print("  any other MongoDB instead: make local-down; LOCAL_MONGODB_URI=mongodb://… make local-up")

    stack = provision_practice_stack(f"http://127.0.0.1:{ports.moto}")
    provisioned = {
        "LOCK_TABLE_NAME": stack.lock_table_name,
        "DEAD_LETTER_QUEUE_URL": stack.dead_letter_queue_url,
        "PAUSE_PARAMETER_NAME": stack.pause_parameter_name,
        "DONOR_EVENT_BUS_NAME": stack.donor_event_bus_name,
        "DONOR_EVENTS_SINK_QUEUE_URL": stack.donor_events_sink_queue_url,
    }
    customer = create_stripe_customer(f"http://127.0.0.1:{ports.stripe}", LOCAL_STRIPE_KEY)
    env_file = directory / ENV_FILE_NAME
    when = datetime.now(UTC).isoformat(timespec="seconds")
    header = HEADER.format(when=when, mongo=mongo.description)
    write_env_file(env_file, function_environment(ports, mongo.uri, customer, provisioned), header)
    state = "started" if any(started) or mongo.started else "already up"
    print(f"local stack {state} in {time.monotonic() - started_at:.1f} s; wrote {env_file}")
    print(f"next: source {_shown(env_file)} && donations status")
    return 0


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    sys.exit(main())
