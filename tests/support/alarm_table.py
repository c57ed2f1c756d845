"""The alarm table of docs/ALARMS.md, rendered from template.yaml: name, severity, metric and condition.

`python -m tests.support.alarm_table` prints the rows (with an empty "why" column) to paste into the doc;
tests/alarms/test_alarms_doc.py fails when a row of the doc differs from its rendering.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.local.aws_local import load_template
from tests.support.alarm_evaluator import TemplateValues

SEVERITY_OF_TOPIC = {"PageTopic": "page", "TicketTopic": "ticket"}
CUSTOM_NAMESPACE = {"Ref": "MetricsNamespace"}
COMPARISONS = {
    "GreaterThanThreshold": ">",
    "GreaterThanOrEqualToThreshold": "≥",
    "LessThanThreshold": "<",
    "LessThanOrEqualToThreshold": "≤",
}


def duration(seconds: int) -> str:
    if seconds % 86400 == 0:
        days = seconds // 86400
        return f"{days} day" + ("s" if days > 1 else "")
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    return f"{seconds // 60} min"


def _with_parameter(raw: Any, value: object, render: Any = str) -> str:
    """A value, and the parameter it comes from, if any: `40 (FailureRatePercentThreshold)`."""
    shown = render(value)
    if isinstance(raw, dict) and "Ref" in raw:
        return f"{shown} (`{raw['Ref']}`)"
    return shown


def _number(value: object) -> str:
    number = float(str(value))
    return str(int(number)) if number.is_integer() else str(number)


def _metric(definition: Mapping[str, Any], values: TemplateValues) -> str:
    name = definition["MetricName"]
    if definition["Namespace"] != CUSTOM_NAMESPACE:
        name = f"{definition['Namespace']} {name}"
    extra = [
        f"{item['Name']}={values.resolve(item['Value'])}"
        for item in definition.get("Dimensions", [])
        if definition["Namespace"] == CUSTOM_NAMESPACE and item["Name"] != "service"
    ]
    return f"`{name}`" + (f" ({', '.join(extra)})" if extra else "")


def row(logical_id: str, properties: Mapping[str, Any], values: TemplateValues) -> tuple[str, str, str, str]:
    [action] = properties["AlarmActions"]
    severity = SEVERITY_OF_TOPIC[action["Ref"]]
    if "Metrics" in properties:
        stats = [query for query in properties["Metrics"] if "MetricStat" in query]
        [returned] = [query for query in properties["Metrics"] if query.get("ReturnData", True)]
        expression = str(values.resolve(returned["Expression"]))
        where = "; ".join(
            f"`{query['Id']}` = {stat['Stat']} of {_metric(stat['Metric'], values)}"
            for query in stats
            for stat in [query["MetricStat"]]
        )
        metric = f"`{expression}` where {where}"
        raw_period = stats[0]["MetricStat"]["Period"]
    else:
        metric = f"{properties['Statistic']} of {_metric(properties, values)}"
        raw_period = properties["Period"]
    period = _with_parameter(raw_period, values.resolve(raw_period), lambda v: duration(int(float(str(v)))))
    threshold = _with_parameter(properties["Threshold"], values.resolve(properties["Threshold"]), _number)
    periods = int(properties["EvaluationPeriods"])
    to_alarm = int(properties.get("DatapointsToAlarm", periods))
    condition = (
        f"{COMPARISONS[properties['ComparisonOperator']]} {threshold} per {period}, "
        f"{to_alarm} of {periods}; missing data {properties.get('TreatMissingData', 'missing')}"
    )
    return f"`{logical_id}`", severity, metric, condition


def rows(template: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    """One row per alarm, pages first, each severity in template order."""
    values = TemplateValues(template)
    rendered = [
        row(logical_id, resource["Properties"], values)
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
    ]
    return sorted(rendered, key=lambda cells: cells[1] != "page")


if __name__ == "__main__":
    template = load_template(Path(__file__).resolve().parents[2] / "template.yaml")
    for cells in rows(template):
        print("| " + " | ".join([*cells, ""]) + " |")
