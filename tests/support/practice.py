"""What the practice-stack tests share: running make targets, this checkout's import path, free ports."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from donation_processor.adapters import mongo_connection
from harness.project import PROJECT_ROOT

# What the shared venv's `donations` script would not give: this checkout's code first.
WORKTREE_PYTHONPATH = os.pathsep.join(
    str(PROJECT_ROOT / part) for part in ("layers/shared", "functions/scheduled_donations", "cli", ".")
)
# The venv is built already; never let a make target rebuild it from a test.
MAKE = ("make", "--no-print-directory", "-s", "-o", ".venv/.installed")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def forget_cached_client(uri: str) -> None:
    """The engine caches one MongoClient per URI for the process; close the one a test's server had."""
    client = mongo_connection._clients.pop(uri, None)
    if client is not None:
        client.close()


@dataclass
class PracticeStack:
    """`make local-up` and friends, run as a person runs them, in their own directory and on free ports."""

    env: dict[str, str]
    directory: Path

    def make(self, target: str, *variables: str) -> subprocess.CompletedProcess[str]:
        return self.run([*MAKE, target, *variables])

    def run(self, argv: Sequence[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603 - our own make targets and interpreter
            list(argv),
            cwd=PROJECT_ROOT,
            env=env or self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def pid_files(self) -> list[Path]:
        return sorted(self.directory.glob("*.pid"))
