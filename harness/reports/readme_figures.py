"""Keep the README's headline figures equal to the generated reports they quote.

The README quotes one line from each generated report (docs/RELIABILITY.md, docs/BENCHMARKS.md) between
`<!-- name:start -->` and `<!-- name:end -->` markers; the scripts that write those reports call
``update_readme`` with the same line, and tests/docs/test_readme_figures.py fails if the two ever differ.
"""

from __future__ import annotations

import re
from pathlib import Path

from harness.project import PROJECT_ROOT

README = PROJECT_ROOT / "README.md"


def _pattern(name: str) -> re.Pattern[str]:
    return re.compile(
        rf"(<!-- {re.escape(name)}:start -->\n)(.*?)(\n<!-- {re.escape(name)}:end -->)", re.DOTALL
    )


def quoted(name: str, readme: Path = README) -> str:
    """The text the README quotes under `name`."""
    match = _pattern(name).search(readme.read_text(encoding="utf-8"))
    if match is None:
        raise ValueError(f"{readme.name} has no <!-- {name}:start --> ... <!-- {name}:end --> block")
    return match.group(2)


def update_readme(name: str, text: str, readme: Path = README) -> None:
    """Replace the README's quote under `name` with `text`."""
    content = readme.read_text(encoding="utf-8")
    quoted(name, readme)  # raises if the markers are missing
    readme.write_text(
        _pattern(name).sub(lambda match: match.group(1) + text + match.group(3), content, count=1),
        encoding="utf-8",
    )
