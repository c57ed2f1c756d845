"""docs/CLI.md keeps up with the parser: a section per subcommand naming each of its options, and the exit
codes of errors.py."""

from __future__ import annotations

import re
from pathlib import Path

from donation_processor.adapters.pause_switch import CACHE_SECONDS
from donations_cli.errors import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from tests.support.cli import subcommands

DOC = (Path(__file__).resolve().parents[2] / "docs" / "CLI.md").read_text()


def _sections() -> dict[str, str]:
    """Each `## …` section's text, by its heading."""
    parts = re.split(r"^## (.+)$", DOC, flags=re.MULTILINE)
    return {heading.strip(): body for heading, body in zip(parts[1::2], parts[2::2], strict=True)}


def test_every_subcommand_has_a_section_naming_each_of_its_options() -> None:
    # GIVEN the doc's sections and the parser's subcommands
    sections = _sections()
    common = sections["Common options"]

    # THEN each subcommand has its section, and each of its options is named there or under common options
    for name, parser in subcommands().items():
        heading = f"`donations {name}`"
        assert heading in sections, f"docs/CLI.md has no section {heading}"
        options = {option for action in parser._actions for option in action.option_strings}
        missing = sorted(
            option
            for option in options - {"-h", "--help"}
            if f"`{option}" not in sections[heading] and f"`{option}" not in common
        )
        assert missing == [], f"{heading}: {missing}"


def test_the_exit_codes_and_the_pause_cache_are_the_code_s() -> None:
    # GIVEN the exit-code table
    codes = dict(re.findall(r"^\| (\d+) \| (.+?) \|$", _sections()["Exit codes"], flags=re.MULTILINE))

    # THEN it lists exactly the codes errors.py defines, and the pause figure is the switch's cache time
    assert set(codes) == {str(code) for code in (EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED)}
    assert f"within {CACHE_SECONDS} s" in _sections()["`donations pause`"]
