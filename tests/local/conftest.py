"""Fixtures for the practice stack: the mongomock wire server in-process; `make local-up` on free ports."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.local.mongo_wire_server import RunningMongoWireServer, start_mongo_wire_server
from tests.support.practice import WORKTREE_PYTHONPATH, PracticeStack, forget_cached_client, free_port


@pytest.fixture
def wire_server() -> Iterator[RunningMongoWireServer]:
    with start_mongo_wire_server() as server:
        yield server
        forget_cached_client(server.uri)


def _kill_leftovers(stack: PracticeStack) -> None:
    """A failed local-down must not leave servers behind: stop what the pid files still name."""
    for pid_file in stack.pid_files():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)


@pytest.fixture
def practice_stack(tmp_path: Path) -> Iterator[PracticeStack]:
    directory = tmp_path / "local"
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "MONGODB_"))}
    env.pop("LOCAL_MONGODB_URI", None)
    env.update(
        LOCAL_DIR=str(directory),
        LOCAL_MOTO_PORT=str(free_port()),
        LOCAL_STRIPE_PORT=str(free_port()),
        LOCAL_MONGO_PORT=str(free_port()),
        LOCAL_MONGO_MODE="wire",
        PYTHONPATH=WORKTREE_PYTHONPATH,
    )
    stack = PracticeStack(env, directory)
    try:
        yield stack
    finally:
        stack.make("local-down")
        _kill_leftovers(stack)
