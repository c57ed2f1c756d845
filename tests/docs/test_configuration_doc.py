"""docs/CONFIGURATION.md is generated: its tables are rendered here from config.py and template.yaml.

How to update the doc: change config.py (or template.yaml), run this file, and paste the table the failure
prints between the markers it names. Nothing else writes the tables, so they cannot drift from the code.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from donation_processor.config import SETTINGS, Setting
from harness.local.aws_local import load_template
from harness.project import PROJECT_ROOT

DOC = PROJECT_ROOT / "docs" / "CONFIGURATION.md"
FUNCTION = "ScheduledDonationsFunction"
# Parameters used only by these resources are the alarms' (docs/ALARMS.md), not the function's.
ALARM_RESOURCE_TYPES = {
    "AWS::CloudWatch::Alarm",
    "AWS::CloudWatch::Dashboard",
    "AWS::SNS::Topic",
    "AWS::SNS::Subscription",
    "AWS::SNS::TopicPolicy",
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(PROJECT_ROOT / "template.yaml")


def _function_environment(template: dict[str, Any]) -> dict[str, Any]:
    variables: dict[str, Any] = dict(template["Globals"]["Function"]["Environment"]["Variables"])
    variables |= template["Resources"][FUNCTION]["Properties"]["Environment"]["Variables"]
    return variables


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _template_source(template: dict[str, Any], setting: Setting) -> str:
    value = _function_environment(template).get(setting.env)
    if isinstance(value, dict) and value.get("Ref") in template["Parameters"]:
        name = value["Ref"]
        if setting.default_text() in ("unset", "required"):
            return f"`{name}` (default `{template['Parameters'][name]['Default']}`)"
        return f"`{name}`"
    if isinstance(value, dict) and "Ref" in value:
        return f"resource `{value['Ref']}`"
    if value == "":
        return "empty in AWS (local use)"
    if value is None:
        return "not passed"
    return f"fixed `{value}`"


def render_settings(template: dict[str, Any]) -> str:
    """The table of every variable config.py reads."""
    lines = [
        "| Variable | Template parameter | Default | Allowed | Meaning |",
        "| --- | --- | --- | --- | --- |",
    ]
    for setting in SETTINGS:
        cells = (
            f"`{setting.env}`",
            _template_source(template, setting),
            setting.default_text(),
            setting.allowed_text(),
            setting.meaning,
        )
        lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return "\n".join(lines)


def _references(node: Any) -> Iterator[str]:
    """Every parameter or condition name a template fragment refers to (Ref, Fn::Sub, Fn::If, Condition)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                yield value
            elif key == "Fn::Sub":
                text = value if isinstance(value, str) else value[0]
                yield from re.findall(r"\$\{([A-Za-z0-9]+)\}", text)
                if not isinstance(value, str):
                    yield from _references(value[1])
            elif key == "Fn::If":
                yield value[0]
                yield from _references(value[1:])
            elif key == "Condition" and isinstance(value, str):
                yield value
            else:
                yield from _references(value)
    elif isinstance(node, list):
        for item in node:
            yield from _references(item)


def function_parameters(template: dict[str, Any]) -> list[str]:
    """Template parameters that something other than the alarms, the dashboard and the topic uses."""
    users = [template["Globals"]] + [
        resource
        for resource in template["Resources"].values()
        if resource["Type"] not in ALARM_RESOURCE_TYPES
    ]
    names = set(_references(users))
    for condition in [name for name in names if name in template.get("Conditions", {})]:
        names |= set(_references(template["Conditions"][condition]))
    return [name for name in template["Parameters"] if name in names]


def _allowed(parameter: dict[str, Any]) -> str:
    if "AllowedValues" in parameter:
        return ", ".join(f"`{value}`" for value in parameter["AllowedValues"])
    if "MinValue" in parameter or "MaxValue" in parameter:
        return f"{parameter.get('MinValue', '')} to {parameter.get('MaxValue', '')}".strip()
    if "AllowedPattern" in parameter:
        return f"`{parameter['AllowedPattern']}`"
    return "any"


def render_other_parameters(template: dict[str, Any]) -> str:
    """The function's template parameters that feed no config.py setting."""
    environment = _function_environment(template)
    fed_settings = {
        environment[setting.env]["Ref"]
        for setting in SETTINGS
        if isinstance(environment.get(setting.env), dict)
    }
    lines = ["| Parameter | Default | Allowed | Meaning |", "| --- | --- | --- | --- |"]
    for name in function_parameters(template):
        if name in fed_settings:
            continue
        parameter = template["Parameters"][name]
        cells = (f"`{name}`", f"`{parameter['Default']}`", _allowed(parameter), parameter["Description"])
        lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return "\n".join(lines)


def _block(name: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    match = re.search(rf"<!-- {name}:start -->\n(.*?)\n<!-- {name}:end -->", text, re.DOTALL)
    assert match is not None, (
        f"docs/CONFIGURATION.md has no <!-- {name}:start --> ... <!-- {name}:end --> block"
    )
    return match.group(1)


def test_the_settings_table_is_the_one_config_py_and_the_template_give(template: dict[str, Any]) -> None:
    # GIVEN the table rendered from config.py's settings and the function's environment in template.yaml
    rendered = render_settings(template)

    # WHEN the doc's table is read
    written = _block("settings")

    # THEN they are the same, character for character
    if written != rendered:
        print(rendered)  # shown under "Captured stdout call", ready to paste between the markers
    assert written == rendered, "docs/CONFIGURATION.md's settings table differs: paste the captured stdout"


def test_the_other_parameters_table_is_the_one_the_template_gives(template: dict[str, Any]) -> None:
    # GIVEN the function's other template parameters, rendered from template.yaml
    rendered = render_other_parameters(template)

    # WHEN the doc's table is read
    written = _block("parameters")

    # THEN they are the same, character for character
    if written != rendered:
        print(rendered)  # shown under "Captured stdout call", ready to paste between the markers
    assert written == rendered, "docs/CONFIGURATION.md's parameters table differs: paste the captured stdout"


def test_every_template_parameter_is_in_a_table_or_belongs_to_the_alarms(template: dict[str, Any]) -> None:
    # GIVEN every template parameter, and the two generated tables
    tables = render_settings(template) + render_other_parameters(template)
    used_by_function = set(function_parameters(template))

    # WHEN each parameter is looked for
    unlisted = [name for name in used_by_function if f"`{name}`" not in tables]

    # THEN each one the function uses is listed, and each of the rest is named in docs/ALARMS.md
    assert unlisted == []
    assert "BatchSize" in used_by_function
    alarms_doc = (PROJECT_ROOT / "docs" / "ALARMS.md").read_text(encoding="utf-8")
    alarm_only = [name for name in template["Parameters"] if name not in used_by_function]
    assert "PageEmail" in alarm_only
    assert [name for name in alarm_only if f"`{name}`" not in alarms_doc] == []
