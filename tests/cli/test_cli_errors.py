"""Errors that tell the truth: the region variable users set, a MongoDB URI that cannot work, MongoDB
failures that name the hosts (never the password), and an interrupted seed that still shows its tag."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mongomock
import pytest

from harness.local.services import LocalServices
from tests.support.cli import donations, donations_process, point_cli_at

PASSWORD = "s3cret-pw"


def test_aws_region_alone_is_enough_for_the_aws_clients(
    services: LocalServices, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the local services and only AWS_REGION set (botocore itself reads AWS_DEFAULT_REGION only)
    point_cli_at(services, monkeypatch, PAUSE_PARAMETER_NAME="/cli-errors/region/charging")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.setenv("AWS_REGION", "us-east-1")

    # WHEN the operator pauses
    result = donations(capsys, "pause")

    # THEN the switch was written: no complaint about a missing region
    assert result.code == 0, result.err
    assert "no AWS region" not in result.err


def test_a_missing_region_names_both_variables_users_set(
    services: LocalServices, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN no region anywhere
    point_cli_at(services, monkeypatch, PAUSE_PARAMETER_NAME="/cli-errors/no-region/charging")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.delenv("AWS_REGION")

    # WHEN the operator pauses
    result = donations(capsys, "pause")

    # THEN a usage error names AWS_REGION, AWS_DEFAULT_REGION and --region
    assert result.code == 2
    assert "set AWS_REGION (or AWS_DEFAULT_REGION) or pass --region" in result.err


@pytest.mark.parametrize(
    ("uri", "wrong"),
    [
        ("mongodb://localhost:99999/donations", "port 99999 is not between 1 and 65535"),
        (f"mongodb://admin:{PASSWORD}@db.example.com:abc/donations", "port 'abc' is not a number"),
        ("mongodb://localhost:27017,localhost:0/donations", "port 0 is not between 1 and 65535"),
    ],
)
def test_a_uri_with_a_bad_port_is_one_line_naming_mongodb_uri(
    services: LocalServices,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    uri: str,
    wrong: str,
) -> None:
    # GIVEN a MongoDB URI whose port cannot work
    point_cli_at(services, monkeypatch)
    monkeypatch.setenv("MONGODB_URI", uri)

    # WHEN the operator asks for the status
    result = donations(capsys, "status")

    # THEN one line names MONGODB_URI and what is wrong, exit 2, no traceback and no password
    assert result.code == 2
    assert result.err == f"donations status: error: MONGODB_URI: {wrong}\n"
    assert PASSWORD not in result.out + result.err


def test_an_unreachable_mongodb_is_named_by_its_hosts_and_never_by_its_password(tmp_path: Path) -> None:
    # GIVEN a URI with a password, pointing at a port nothing listens on. A process of its own: a client left
    # in this one would keep retrying in the background and leave garbage for other tests' gc checks.
    uri = f"mongodb://admin:{PASSWORD}@127.0.0.1:1/donations?authSource=admin"

    # WHEN the operator seeds (a command that needs only MongoDB)
    answer = donations_process(tmp_path, "seed", "1", MONGODB_URI=uri)

    # THEN one line names the host and the kind of failure, and the password appears nowhere
    assert answer.returncode == 1, answer.stderr
    assert "MongoDB at 127.0.0.1:1" in answer.stderr
    assert "ServerSelectionTimeoutError" in answer.stderr
    assert len(answer.stderr.splitlines()) == 1
    assert PASSWORD not in answer.stdout + answer.stderr
    assert "admin" not in answer.stderr


def test_an_interrupted_seed_has_already_shown_its_tag_and_says_how_to_clean_up(
    services: LocalServices, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN batches of 2 and a Ctrl-C during the second insert
    point_cli_at(services, monkeypatch)
    monkeypatch.setattr("donations_cli.commands.seed.BATCH_SIZE", 2)
    original = mongomock.collection.Collection.insert_many
    calls: list[int] = []

    def interrupted(self: Any, documents: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, documents, *args, **kwargs)

    monkeypatch.setattr(mongomock.collection.Collection, "insert_many", interrupted)

    # WHEN the operator seeds 5
    result = donations(capsys, "seed", "5")

    # THEN the tag was printed first, and the interruption repeats it with the clean-up command
    assert result.code == 130
    first_line = result.out.splitlines()[0]
    assert first_line.startswith("seeding 5 scheduled donations in database donations")
    batch = first_line.rsplit("seedBatch ", 1)[1].rstrip(")")
    assert services.database["scheduled_donations"].count_documents({"seedBatch": batch}) == 2
    assert "interrupted after 2 of 5" in result.err
    assert f'db.scheduled_donations.deleteMany({{seedBatch: "{batch}"}})' in result.err
