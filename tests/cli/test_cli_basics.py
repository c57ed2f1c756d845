"""The CLI's own pieces: the progress bar, the configuration loader, the entry point's exit codes."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from donations_cli.config import StackInfo, load_cli_config
from donations_cli.errors import UsageError
from donations_cli.main import main
from donations_cli.progress import Progress, progress_enabled


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_bar_redraws_at_most_ten_times_a_second() -> None:
    # GIVEN a bar over 1000 items and a clock moving 1 ms per item
    stream, clock = io.StringIO(), FakeClock()
    with Progress("seed", 1000, stream=stream, enabled=True, clock=clock) as progress:
        for _ in range(1000):
            clock.now += 0.001
            progress.advance()

    # THEN one second of work drew about ten frames plus the final one, ending at 100 %
    frames = stream.getvalue().split("\r")[1:]
    assert 10 <= len(frames) <= 12
    assert frames[-1].startswith("seed [" + "#" * 30 + "] 1000/1000 100%")
    assert stream.getvalue().endswith("\n")


def test_the_progress_bar_is_off_unless_asked_for_or_on_a_terminal() -> None:
    assert progress_enabled(None, io.StringIO()) is False
    assert progress_enabled(None, Terminal()) is True
    assert progress_enabled(True, io.StringIO()) is True
    assert progress_enabled(False, Terminal()) is False
    stream = io.StringIO()
    with Progress("x", 3, stream=stream, enabled=False) as progress:
        progress.advance(3)
    assert stream.getvalue() == ""


def test_an_unknown_total_counts_instead() -> None:
    stream, clock = io.StringIO(), FakeClock()
    with Progress("redrive", None, stream=stream, enabled=True, clock=clock) as progress:
        clock.now = 2.0
        progress.advance(4)
    assert "redrive 4 done 2/s" in stream.getvalue()


def test_configuration_errors_name_the_variable_and_never_show_the_uri() -> None:
    with pytest.raises(UsageError, match="either MONGODB_URI or MONGODB_SECRET_NAME"):
        load_cli_config({"MONGODB_URI": "mongodb://localhost", "MONGODB_SECRET_NAME": "x"})
    with pytest.raises(
        UsageError, match=r"MONGODB_URI must be a mongodb://, mongodb\+srv:// or mongomock://"
    ):
        load_cli_config({"MONGODB_URI": "postgres://localhost"})
    with pytest.raises(UsageError, match="DEAD_LETTER_QUEUE_URL"):
        load_cli_config({"DEAD_LETTER_QUEUE_URL": "queue"})
    with pytest.raises(UsageError, match="OVERDUE_AFTER_HOURS"):
        load_cli_config({"OVERDUE_AFTER_HOURS": "soon"})
    config = load_cli_config({"MONGODB_URI": "mongodb://admin:s3cret@localhost/donations"})
    assert "s3cret" not in repr(config)
    with pytest.raises(UsageError, match="LOCK_TABLE_NAME is required"):
        _ = config.lock_table


def test_the_environment_wins_over_the_stack() -> None:
    stack = StackInfo(
        name="prod",
        outputs={"LockTableName": "stack-lock", "DeadLetterQueueUrl": "https://sqs/stack"},
        parameters={"MongoDbSecretName": "scheduled-donations/mongodb-uri", "MongoDbDatabase": "live"},
    )
    from_stack = load_cli_config({}, stack)
    assert (from_stack.lock_table, from_stack.queue_url) == ("stack-lock", "https://sqs/stack")
    assert (from_stack.mongodb_secret_name, from_stack.mongodb_database) == (
        "scheduled-donations/mongodb-uri",
        "live",
    )
    overridden = load_cli_config({"LOCK_TABLE_NAME": "mine", "MONGODB_URI": "mongomock://x"}, stack)
    assert overridden.lock_table == "mine"
    assert (overridden.mongodb_uri, overridden.mongodb_secret_name) == ("mongomock://x", None)


def test_usage_errors_exit_2_and_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "redrive" in capsys.readouterr().out
    assert main([]) == 2
    assert main(["refund"]) == 2
    assert main(["status", "--no-such-option"]) == 2


def test_the_console_script_runs_from_any_directory(tmp_path: Path) -> None:
    # GIVEN the project installed in the venv (pip install -e .): the `donations` script beside python
    script = Path(sys.executable).parent / "donations"
    assert script.exists(), "the project is not installed: .venv/bin/pip install --no-deps -e ."

    # WHEN it is run from an unrelated directory
    answer = subprocess.run(  # noqa: S603 - our own console script
        [str(script), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )

    # THEN it starts and lists its commands
    assert answer.returncode == 0, answer.stderr
    for command in ("seed", "status", "redrive", "pause", "resume"):
        assert command in answer.stdout
