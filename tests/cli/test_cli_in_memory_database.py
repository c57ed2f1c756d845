"""A real `donations` process refuses mongomock://: each process would start with an empty database."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from donations_cli.main import main

WORKTREE = Path(__file__).parents[2]
CODE_PATHS = ("layers/shared", "functions/scheduled_donations", "cli", ".")


def test_the_real_entry_point_refuses_a_mongomock_uri_and_says_what_to_use(tmp_path: Path) -> None:
    # GIVEN the environment of an operator who copied the test harness's URI
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(str(WORKTREE / path) for path in CODE_PATHS),
        "MONGODB_URI": "mongomock://localhost/donations",
    }

    # WHEN `donations status` runs as its own process
    answer = subprocess.run(
        [sys.executable, "-m", "donations_cli.main", "status"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip

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
