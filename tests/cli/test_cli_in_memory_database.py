"""A real `donations` process refuses mongomock://: each process would start with an empty database."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from donations_cli.main import main
from tests.support.cli import donations_process


def test_the_real_entry_point_refuses_a_mongomock_uri_and_says_what_to_use(tmp_path: Path) -> None:
    # GIVEN an operator who copied the test harness's URI
    uri = "mongomock://localhost/donations"

    # WHEN `donations status` runs as its own process
    answer = donations_process(tmp_path, "status", MONGODB_URI=uri)

    # THEN it stops with a usage error that says why and points to a database that outlives the process
    assert answer.returncode == 2, answer.stderr
    assert answer.stdout == ""
    assert "in memory" in answer.stderr
    assert "make local-up" in answer.stderr
    assert "MONGODB_URI" in answer.stderr
    assert "Traceback" not in answer.stderr


def test_main_refuses_mongomock_unless_the_caller_shares_its_process_database(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a mongomock URI, and a database of this test's own
    env = {"MONGODB_URI": "mongomock://localhost", "MONGODB_DATABASE": f"in_memory_{uuid.uuid4().hex[:8]}"}

    # WHEN main() runs with its default, and again as the in-process tests call it
    refused = main(["seed", "1"], env=env)
    refused_err = capsys.readouterr().err
    shared = main(["seed", "1"], env=env, shared_process_database=True)

    # THEN only the caller that shares the database gets it
    assert refused == 2
    assert "mongomock://" in refused_err
    assert shared == 0, capsys.readouterr().err
