"""The README's five-minute on-call drill works as written: each command, in order, on a fresh local-up."""

from __future__ import annotations

import json
import re
import shlex
import sys
from dataclasses import dataclass, field
from typing import Any

from harness.local.local_env import ENV_FILE_NAME, read_env_file
from harness.project import PROJECT_ROOT
from tests.support.practice import PracticeStack

DRILL_HEADING = "## Five-minute on-call drill"
DRILL_BLOCK = re.compile(r"```bash\n(.*?)```", re.DOTALL)
VARIABLE = re.compile(r"\$\{?([A-Z_][A-Z0-9_]*)\}?")


def drill_commands() -> list[list[str]]:
    """The drill's commands as argv lists: the first bash block under its heading, comments dropped."""
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split(DRILL_HEADING, 1)[1].split("\n## ", 1)[0]
    block = DRILL_BLOCK.search(section)
    assert block is not None, "the drill section has no ```bash block"
    return [words for line in block.group(1).splitlines() if (words := shlex.split(line, comments=True))]


def _summary(output: str) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads(output)
    return summary


def _count(output: str, label: str) -> int:
    match = re.search(rf"^\s+{re.escape(label)}\s+(\d+)$", output, re.MULTILINE)
    assert match is not None, f"{label!r} not in:\n{output}"
    return int(match.group(1))


@dataclass
class DrillState:
    """What the drill has done so far, and so what each command must print."""

    sourced: dict[str, str] = field(default_factory=dict)
    paused: bool = False
    # The id a person pastes where the drill says <id>: the first donation the redrive dry run listed.
    pasted_id: str | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)


def check(words: list[str], output: str, state: DrillState) -> None:
    """What the drill's comments promise each command prints."""
    command = " ".join(words[:2])
    if command == "make local-up":
        assert "local stack started" in output
    elif command == "make local-invoke":
        summary = _summary(output)
        state.runs.append(summary)
        assert summary["status"] == ("paused" if state.paused else "completed")
        if state.paused:
            assert summary["succeeded"] == 0
        elif len(state.runs) == 1:
            assert summary["failed"] > 0
            assert summary["deadLettered"] > 0
    elif command == "donations seed":
        assert f"seeded {words[2]} scheduled donations" in output
        assert "hard_decline_stolen_card" in output
    elif command == "donations status":
        assert _count(output, "messages waiting") > 0
        assert _count(output, "stopped (payment_failed)") > 0
        assert f"charging: {'paused' if state.paused else 'running'}" in output
    elif command == "donations redrive":
        if "--yes" in words:
            assert re.search(r"redrive: \d+ messages: [1-9]\d* reset for another attempt", output), output
        else:
            assert "redrive (dry run)" in output
            assert "nothing changed" in output
            listed = re.search(r"^\[1\] (\S+) period ", output, re.MULTILINE)
            assert listed is not None, output
            state.pasted_id = listed.group(1)
    elif command == "donations preview":
        if "--id" in words:
            assert f"{state.pasted_id}: not due" in output
            assert "paused" in output
        else:
            assert re.search(r"^a run would charge 200 donations$", output, re.MULTILINE), output
            assert "totals: " in output
    elif command == "donations show":
        assert state.pasted_id in output
        assert "card_declined" in output or "authentication_required" in output
    elif command == "donations pause":
        state.paused = True
        assert "-> paused" in output
    elif command == "donations resume":
        state.paused = False
        assert "-> running" in output
    elif command == "make local-down":
        assert "local-down: stopped moto" in output


def _expand(word: str, state: DrillState) -> str:
    if word == "<id>":
        assert state.pasted_id is not None, "the drill uses <id> before listing any donation"
        return state.pasted_id
    return VARIABLE.sub(lambda match: state.sourced[match.group(1)], word)


def test_the_readme_drill_runs_command_by_command_on_a_fresh_local_stack(
    practice_stack: PracticeStack,
) -> None:
    # GIVEN the drill as the README writes it
    commands = drill_commands()
    assert commands[0] == ["make", "local-up"]
    assert commands[-1] == ["make", "local-down"]
    state = DrillState()

    # WHEN each command runs in order, as a person in one shell would run it
    for words in commands:
        if words[0] == "source":
            state.sourced = read_env_file(practice_stack.directory / ENV_FILE_NAME)
            continue
        if words[0] == "make":
            result = practice_stack.make(words[1], *words[2:])
        elif words[0] == "donations":
            arguments = [_expand(word, state) for word in words[1:]]
            argv = [sys.executable, "-m", "donations_cli.main", *arguments]
            result = practice_stack.run(argv, {**practice_stack.env, **state.sourced})
        else:
            raise AssertionError(f"the drill runs {words[0]!r}, which this test does not know how to run")

        # THEN it succeeds and prints what the drill says it will
        assert result.returncode == 0, f"{shlex.join(words)} failed:\n{result.stdout}\n{result.stderr}"
        check(words, result.stdout, state)

    # and the drill went through a completed run, a paused one and the run after resume
    assert [run["status"] for run in state.runs] == ["completed", "paused", "completed"]
    assert list(practice_stack.directory.glob("*.pid")) == []
