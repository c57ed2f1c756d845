"""`make local-up` / `make local-down`: idempotent, honest about what they start and stop, stale pid files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from harness.local.local_env import ENV_FILE_NAME, read_env_file, render_env_file
from tests.support.practice import PracticeStack

# Everything the CLI and the function read to find the practice stack.
REQUIRED = {
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_REGION",
    "MONGODB_URI",
    "MONGODB_DATABASE",
    "STRIPE_SECRET_KEY",
    "STRIPE_API_BASE",
    "LOCK_TABLE_NAME",
    "LOCK_NAME",
    "DEAD_LETTER_QUEUE_URL",
    "PAUSE_PARAMETER_NAME",
    "DONOR_EVENT_BUS_NAME",
}


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for init to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _pids(stack: PracticeStack) -> dict[str, int]:
    return {path.stem: int(path.read_text()) for path in stack.pid_files()}


def test_local_up_twice_starts_once_and_local_down_stops_what_it_started(
    practice_stack: PracticeStack,
) -> None:
    # GIVEN a fresh local-up
    first = practice_stack.make("local-up")
    assert first.returncode == 0, first.stderr
    started = _pids(practice_stack)

    # WHEN local-up runs again, then local-down
    second = practice_stack.make("local-up")
    after_second = _pids(practice_stack)
    env = read_env_file(practice_stack.directory / ENV_FILE_NAME)
    down = practice_stack.make("local-down")

    # THEN the first started three servers on 127.0.0.1 and wrote every variable the CLI needs
    assert set(started) == {"moto", "stripe", "mongo-wire"}
    assert "local stack started" in first.stdout
    assert env.keys() >= REQUIRED
    assert env["AWS_ENDPOINT_URL"] == f"http://127.0.0.1:{practice_stack.env['LOCAL_MOTO_PORT']}"
    assert env["MONGODB_URI"] == f"mongodb://127.0.0.1:{practice_stack.env['LOCAL_MONGO_PORT']}"
    assert env["STRIPE_API_BASE"] == f"http://127.0.0.1:{practice_stack.env['LOCAL_STRIPE_PORT']}"
    # and the second said so and kept the same processes
    assert "local stack already up" in second.stdout
    assert after_second == started
    # and local-down named each process it stopped, and they are gone with their pid files and env file
    for name, pid in started.items():
        assert f"{name} (pid {pid})" in down.stdout
        assert not _alive(pid)
    assert practice_stack.pid_files() == []
    assert not (practice_stack.directory / ENV_FILE_NAME).exists()


def test_a_stale_pid_file_is_reported_and_replaced(practice_stack: PracticeStack) -> None:
    # GIVEN a pid file naming a process that has exited
    practice_stack.directory.mkdir(parents=True)
    exited = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    (practice_stack.directory / "stripe.pid").write_text(exited.stdout)

    # WHEN local-up runs
    up = practice_stack.make("local-up")

    # THEN it says so and starts the server anew
    assert up.returncode == 0, up.stderr
    assert "stripe: removed a stale pid file" in up.stdout
    assert _pids(practice_stack)["stripe"] != int(exited.stdout)
    assert _alive(_pids(practice_stack)["stripe"])


def test_local_down_with_nothing_up_says_so(practice_stack: PracticeStack) -> None:
    # WHEN local-down runs where nothing was started
    down = practice_stack.make("local-down")

    # THEN it succeeds and says nothing was running
    assert down.returncode == 0
    assert "local-down: nothing was running" in down.stdout


def test_local_invoke_without_local_up_says_to_run_it_first(practice_stack: PracticeStack) -> None:
    # WHEN local-invoke runs before local-up
    invoke = practice_stack.make("local-invoke")

    # THEN it fails with what to do
    assert invoke.returncode != 0
    assert "run `make local-up` first" in invoke.stderr


def test_the_env_file_means_the_same_to_bash_and_to_the_harness(tmp_path: Path) -> None:
    # GIVEN values a shell would need quoted, written as the env file
    variables = {
        "PLAIN": "abc",
        "SPACES": "a b",
        "QUOTES": 'it\'s "x" $HOME',
        "URI": "mongodb://h:1/?a=1&b=2",
    }
    env_file = tmp_path / "env"
    env_file.write_text(render_env_file(variables, "a header\nof two lines"))

    # WHEN bash sources it, and the harness reads it
    script = f'source {env_file} && printf \'%s\\0\' "$PLAIN" "$SPACES" "$QUOTES" "$URI"'
    printed = subprocess.run(  # noqa: S603 - a fixed script on a file this test wrote
        ["bash", "-c", script],  # noqa: S607
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    # THEN both see exactly the values written
    assert printed.split("\0")[:-1] == list(variables.values())
    assert read_env_file(env_file) == variables
