"""`donations completion bash|zsh`: a script generated from the parser, checked in a real bash."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from donations_cli.commands.completion import FUNCTION
from tests.support.cli import donations, subcommands

BASH = shutil.which("bash")


def _complete(script: Path, *words: str) -> list[str]:
    """What bash offers for the last of `words` (the word being typed), with the script sourced."""
    assert BASH is not None
    typed = " ".join(f'"{word}"' for word in words)
    command = (
        f"source {script} && complete -p donations && "
        f"COMP_WORDS=(donations {typed}) && COMP_CWORD={len(words)} && {FUNCTION} && "
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    answer = subprocess.run(  # noqa: S603 - bash on a script we generated
        [BASH, "--norc", "--noprofile", "-c", command],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert answer.returncode == 0, answer.stderr
    lines = answer.stdout.splitlines()
    assert lines[0] == f"complete -F {FUNCTION} donations"
    return lines[1:]


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
def test_the_bash_script_completes_every_subcommand_its_options_and_their_choices(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the generated bash script
    result = donations(capsys, "completion", "bash")
    assert result.code == 0, result.err
    script = tmp_path / "donations.bash"
    script.write_text(result.out)

    # WHEN bash completes the first word, a seed option, a --frequency value and a preview option
    first = _complete(script, "")
    seed = _complete(script, "seed", "--m")
    frequency = _complete(script, "seed", "--frequency", "")
    preview = _complete(script, "preview", "--")

    # THEN every subcommand of the parser is offered, and each subcommand's own options and choices
    assert set(subcommands()) <= set(first)
    assert seed == ["--mix"]
    assert frequency == ["weekly", "monthly", "quarterly", "yearly"]
    preview_parser = subcommands()["preview"]
    assert {
        option
        for action in preview_parser._actions
        for option in action.option_strings
        if option.startswith("--")
    } == set(preview)


def test_the_zsh_script_is_bash_s_through_bashcompinit(capsys: pytest.CaptureFixture[str]) -> None:
    zsh = donations(capsys, "completion", "zsh")
    bash = donations(capsys, "completion", "bash")
    assert zsh.code == 0
    assert "bashcompinit" in zsh.out
    assert zsh.out.endswith(bash.out)
