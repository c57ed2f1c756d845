"""The real handler, and separate processes, on the mongomock wire server instead of in-process mongomock."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from harness.local.aws_local import MotoServer
from harness.local.lambda_context import LocalLambdaContext
from harness.local.mongo_wire_server import RunningMongoWireServer
from harness.local.seed import seed_donations
from harness.local.services import LocalServices
from harness.local.stripe_server import RunningStripeServer
from harness.project import PROJECT_ROOT
from tests.support.dead_letters import read_dead_letters
from tests.support.practice import WORKTREE_PYTHONPATH, forget_cached_client

SCHEDULED_EVENT = json.loads((PROJECT_ROOT / "events" / "scheduled.json").read_text())


@pytest.fixture
def wire_services(
    moto_server: MotoServer,
    stripe_server: RunningStripeServer,
    wire_server: RunningMongoWireServer,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[LocalServices]:
    """A fresh lock table and queue on moto, the database on the wire server, a cold handler container."""
    import app

    stripe_server.state.reset()
    services = LocalServices(moto=moto_server, stripe=stripe_server, mongodb_uri="")
    services.provision(mongodb_uri=wire_server.uri)
    for name, value in services.environment(STRIPE_RETRY_ATTEMPTS="2").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(app, "_engine", None)
    yield services
    forget_cached_client(wire_server.uri)


def test_a_handler_run_on_the_wire_server_charges_each_due_donation_once(
    wire_services: LocalServices,
) -> None:
    # GIVEN 40 due donations of the demo mix (declines, authentication, malformed documents included)
    import app

    kinds = seed_donations(wire_services.database, wire_services.stripe.state.create_customer, 40)

    # WHEN the handler runs twice on the same scheduled event
    first = app.lambda_handler(SCHEDULED_EVENT, LocalLambdaContext())
    second = app.lambda_handler(SCHEDULED_EVENT, LocalLambdaContext())

    # THEN the first run charged every card that succeeds, once, and the second charged nothing
    charges = Counter(
        (charge.metadata["scheduled_donation_id"], charge.metadata["period"])
        for charge in wire_services.stripe.state.charges()
    )
    assert first["status"] == "completed"
    assert first["succeeded"] == kinds["succeeds"] == len(charges)
    assert set(charges.values()) == {1}
    assert second["succeeded"] == 0
    # and the hard declines and malformed documents were dead-lettered, through the same database
    letters = read_dead_letters(wire_services)
    assert first["deadLettered"] == len(letters) > 0
    stopped = wire_services.database["scheduled_donations"].count_documents({"status": "payment_failed"})
    assert stopped == sum(1 for letter in letters if letter["reason"] == "hard_decline")


_WRITER = """
import sys
from pymongo import MongoClient
with MongoClient(sys.argv[1]) as client:
    client.shared.notes.insert_many([{"_id": n, "by": "writer"} for n in range(25)])
"""
_READER = """
import json, sys
from pymongo import MongoClient
with MongoClient(sys.argv[1]) as client:
    print(json.dumps(sorted(d["_id"] for d in client.shared.notes.find({"by": "writer"}))))
"""


def _python(code: str, uri: str) -> str:
    return subprocess.run(  # noqa: S603 - our own interpreter, our own code
        [sys.executable, "-c", code, uri],
        env={"PYTHONPATH": WORKTREE_PYTHONPATH, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout


def test_two_separate_processes_see_the_same_data(wire_server: RunningMongoWireServer) -> None:
    # GIVEN one process that wrote 25 documents and exited
    _python(_WRITER, wire_server.uri)

    # WHEN another process reads them
    read: list[Any] = json.loads(_python(_READER, wire_server.uri))

    # THEN it sees all of them: the data lives in the server, not in either process
    assert read == list(range(25))
