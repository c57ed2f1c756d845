"""`donations seed N` against mongomock, then the real engine charges what it seeded."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from donation_processor.engine import DonationEngine
from donations_cli.commands.seed import DEMO_MIX, production_reason
from donations_cli.config import load_cli_config
from donations_cli.connections import Connections
from harness.local.services import LocalServices
from tests.support.cli import donations, point_cli_at, run_engine


def test_seeded_donations_are_due_and_the_engine_charges_each_once(
    services: LocalServices,
    make_engine: Callable[..., DonationEngine],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN two customers Stripe knows
    point_cli_at(services, monkeypatch)
    customers = [services.stripe.state.create_customer() for _ in range(2)]

    # WHEN the operator seeds 25 donations due five minutes ago, with a progress bar
    result = donations(
        capsys,
        "seed", "25", "--customer", customers[0], "--customer", customers[1],
        "--due-in-minutes", "-5", "--amount", "1234", "--progress",
    )  # fmt: skip

    # THEN 25 due, active donations exist and the bar reached 25/25
    assert result.code == 0, result.err
    assert result.out.startswith("seeding 25 scheduled donations in database donations")
    assert "seeded 25 scheduled donations (seedBatch " in result.out
    assert "seed [" in result.err
    assert "25/25 100%" in result.err
    assert result.err.endswith("\n")
    scheduled = services.database["scheduled_donations"]
    assert scheduled.count_documents({"status": "active", "nextRunAt": {"$lte": datetime.now(UTC)}}) == 25
    assert {document["stripeCustomerId"] for document in scheduled.find()} == set(customers)

    # WHEN the real engine runs
    summary = run_engine(make_engine())

    # THEN it charged every one of them exactly once, for the seeded amount
    assert (summary.due, summary.succeeded) == (25, 25)
    counts = services.stripe.state.charge_counts_by()
    assert len(counts) == 25
    assert set(counts.values()) == {1}
    assert {charge.amount for charge in services.stripe.state.charges()} == {1234}


def test_the_demo_mix_covers_every_test_payment_method_and_stays_quiet_without_a_terminal(
    services: LocalServices, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the local services
    point_cli_at(services, monkeypatch)

    # WHEN the operator seeds a demo mix (stderr is not a terminal under pytest)
    result = donations(capsys, "seed", "60", "--mix")

    # THEN every kind is there, as printed, and no progress bar was drawn
    assert result.code == 0, result.err
    assert result.err == ""
    methods = Counter(
        document["stripePaymentMethodId"] for document in services.database["scheduled_donations"].find()
    )
    assert sum(methods.values()) == 60
    assert {entry.payment_method_id for entry in DEMO_MIX} == set(methods)
    succeeds = methods["pm_card_visa"]
    assert f"  {'succeeds':<34} {succeeds}\n" in result.out


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("MONGODB_URI", "mongodb://admin:s3cret@db.example.com:27017/donations", "db.example.com"),
        ("MONGODB_URI", "mongodb+srv://admin:s3cret@cluster0.example.net/donations", "mongodb+srv"),
        ("MONGODB_SECRET_NAME", "scheduled-donations/mongodb-uri", "Secrets Manager"),
    ],
)
def test_seed_refuses_what_looks_like_production(
    services: LocalServices,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variable: str,
    value: str,
    named: str,
) -> None:
    # GIVEN a MongoDB that is not clearly local
    point_cli_at(services, monkeypatch)
    monkeypatch.delenv("MONGODB_URI")
    monkeypatch.setenv(variable, value)

    # WHEN the operator seeds without saying it is not production
    result = donations(capsys, "seed", "10")

    # THEN it is refused as a usage error, before connecting, and no password is echoed
    assert result.code == 2
    assert "refusing to seed" in result.err
    assert named in result.err
    assert "--yes-this-is-not-production" in result.err
    assert "s3cret" not in result.err + result.out


@pytest.mark.parametrize(
    ("uri", "local"),
    [
        ("mongomock://localhost/x", True),
        ("mongodb://localhost:27017/donations", True),
        ("mongodb://user:p%40ss@127.0.0.1,[::1]:27018/?replicaSet=rs0", True),
        ("mongodb://localhost,db-2.internal:27017/donations", False),
        ("mongodb://user:pw@10.0.0.5/donations", False),
    ],
)
def test_the_production_heuristic_accepts_only_local_hosts(uri: str, local: bool) -> None:
    connections = Connections(load_cli_config({"MONGODB_URI": uri}), shared_process_database=True)
    assert (production_reason(connections) is None) is local


def test_seed_rejects_bad_arguments_as_usage_errors(
    services: LocalServices, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    point_cli_at(services, monkeypatch)
    assert donations(capsys, "seed", "0").code == 2
    bad_currency = donations(capsys, "seed", "3", "--currency", "xxx")
    assert bad_currency.code == 2
    assert "--currency" in bad_currency.err
    assert donations(capsys, "seed", "many").code == 2
    assert services.database["scheduled_donations"].count_documents({}) == 0
