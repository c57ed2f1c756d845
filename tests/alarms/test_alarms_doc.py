"""docs/ALARMS.md and docs/RUNBOOK.md list exactly the template's alarms, with severities and conditions."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from harness.local.aws_local import load_template
from tests.support.alarm_table import rows

ROOT = Path(__file__).resolve().parents[2]
ALARM_ROW = re.compile(r"^\| `(?P<name>[A-Za-z]+Alarm)` \|")
RUNBOOK_ROW = re.compile(
    r"^\| \[(?P<name>[A-Za-z]+Alarm)\]\(#(?P<anchor>[a-z]+)\) \| (?P<severity>page|ticket) \|$"
)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(ROOT / "template.yaml")


def table_rows(document: str, heading: str) -> list[list[str]]:
    """The cells of each alarm row of the first table under `heading`."""
    section = document.split(f"\n{heading}\n", 1)[1].split("\n## ", 1)[0]
    table = section[section.index("\n|") :].split("\n\n", 1)[0]
    lines = [line for line in table.splitlines() if ALARM_ROW.match(line)]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines]


def test_the_alarm_table_is_the_templates_alarms_with_their_severity_metric_and_condition(
    template: dict[str, Any],
) -> None:
    # GIVEN the alarm table of docs/ALARMS.md and the rows rendered from template.yaml
    documented = table_rows((ROOT / "docs" / "ALARMS.md").read_text(encoding="utf-8"), "## The alarms")
    expected = rows(template)

    # THEN it has one row per alarm, in the same order, with the same name, severity, metric and condition
    assert [tuple(cells[:4]) for cells in documented] == expected
    # AND each says why it has its severity and threshold
    for cells in documented:
        assert len(cells) == 5, cells[0]
        assert len(cells[4]) > 40, f"{cells[0]}: no reason given"


def test_the_runbook_gives_every_alarm_the_severity_of_the_template(template: dict[str, Any]) -> None:
    # GIVEN the runbook's alarm table and each alarm's section
    runbook = (ROOT / "docs" / "RUNBOOK.md").read_text(encoding="utf-8")
    listed = {
        match["name"]: match["severity"]
        for line in runbook.splitlines()
        if (match := RUNBOOK_ROW.match(line))
    }
    # THEN it lists exactly the template's alarms, each with its severity
    assert listed == {name.strip("`"): severity for name, severity, *_ in rows(template)}
    # AND each alarm's section opens with that severity
    for name, severity in listed.items():
        section = runbook.split(f"\n### {name}\n", 1)[1]
        assert section.lstrip().startswith(f"**Severity.** {severity}"), name
