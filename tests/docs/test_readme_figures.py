"""The README's headline figures are the ones the generated reports hold."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.reports.readme_figures import PROJECT_ROOT, quoted, update_readme


def _bold_headline(report: str) -> str:
    match = re.search(r"^\*\*.+\*\*$", report, re.MULTILINE)
    assert match is not None, "the report has no bold headline line"
    return match.group(0)


@pytest.mark.parametrize(
    ("name", "report"), [("reliability", "docs/RELIABILITY.md"), ("bench", "docs/BENCHMARKS.md")]
)
def test_the_readme_quotes_the_generated_headline(name: str, report: str) -> None:
    # GIVEN the generated report and the README
    headline = _bold_headline((PROJECT_ROOT / report).read_text(encoding="utf-8"))

    # WHEN the README's quote of that report is read
    # THEN it is the report's own headline, word for word
    assert quoted(name) == f"> {headline}"


def test_update_replaces_only_the_marked_quote(tmp_path: Path) -> None:
    # GIVEN a README with a marked quote between other text
    readme = tmp_path / "README.md"
    readme.write_text("before\n<!-- bench:start -->\n> old\n<!-- bench:end -->\nafter\n", encoding="utf-8")

    # WHEN it is updated
    update_readme("bench", "> **new figures**", readme)

    # THEN the quote changed and nothing else did
    assert readme.read_text(encoding="utf-8") == (
        "before\n<!-- bench:start -->\n> **new figures**\n<!-- bench:end -->\nafter\n"
    )


def test_a_readme_without_the_markers_is_an_error(tmp_path: Path) -> None:
    # GIVEN a README with no markers
    readme = tmp_path / "README.md"
    readme.write_text("no markers here\n", encoding="utf-8")

    # WHEN / THEN updating it names what is missing
    with pytest.raises(ValueError, match="bench:start"):
        update_readme("bench", "> x", readme)
