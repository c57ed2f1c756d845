"""The offline alarm evaluator follows CloudWatch's rules: breaching or not, missing data, M of N, math."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.support.alarm_evaluator import (
    ALARM,
    INSUFFICIENT_DATA,
    OK,
    Alarm,
    Datapoint,
    MetricId,
    MetricStore,
    Query,
    alarms_from_template,
    dimensions,
    evaluate,
    evaluate_expression,
    read_emf,
)

T0 = datetime(2026, 4, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
RUNS = MetricId("NS", "RunCompleted", dimensions(service="svc"))


def hourly_alarm(**overrides: Any) -> Alarm:
    fields: dict[str, Any] = {
        "name": "Test",
        "severity": "page",
        "queries": (Query("m", 3600, metric=RUNS, stat="Sum"),),
        "evaluation_periods": 1,
        "datapoints_to_alarm": 1,
        "threshold": 1,
        "comparison": "GreaterThanOrEqualToThreshold",
        "treat_missing_data": "notBreaching",
    }
    return Alarm(**(fields | overrides))


def store_with(*values: tuple[int, float]) -> MetricStore:
    """One datapoint per (hours after T0, value)."""
    store = MetricStore()
    for hours, value in values:
        store.add(Datapoint(RUNS, T0 + timedelta(hours=hours, minutes=5), value))
    return store


def test_a_period_whose_statistic_crosses_the_threshold_breaches_and_one_below_does_not() -> None:
    # GIVEN an alarm on the hourly sum, at least 3
    alarm = hourly_alarm(threshold=3)
    store = store_with((0, 1), (0, 2), (1, 2))
    # WHEN the two hours are read
    first, second = alarm.value(store, T0 + HOUR), alarm.value(store, T0 + 2 * HOUR)
    # THEN the first sums to 3 and breaches, the second sums to 2 and does not
    assert (first, second) == (3, 2)
    assert alarm.breaches(first or 0)
    assert not alarm.breaches(second or 0)


@pytest.mark.parametrize(
    ("treat", "state_before", "expected"),
    [
        ("breaching", OK, ALARM),
        ("notBreaching", ALARM, OK),
        ("ignore", ALARM, ALARM),
        ("ignore", OK, OK),
        ("missing", OK, INSUFFICIENT_DATA),
    ],
)
def test_a_range_with_no_data_follows_treat_missing_data(
    treat: str, state_before: str, expected: str
) -> None:
    # GIVEN an alarm over 3 periods that all lack data
    alarm = hourly_alarm(evaluation_periods=3, datapoints_to_alarm=3, treat_missing_data=treat)
    # WHEN it is evaluated
    # THEN missing data counts as the alarm says, or keeps the state, or leaves it without data
    assert alarm.next_state([None, None, None], state_before) == expected


def test_m_of_n_alarms_on_m_breaching_datapoints_in_the_last_n_and_not_on_fewer() -> None:
    # GIVEN a 2-of-3 alarm
    alarm = hourly_alarm(evaluation_periods=3, datapoints_to_alarm=2)
    # THEN two breaching of three alarm, in any order; one does not
    assert alarm.next_state([5, 0, 5], OK) == ALARM
    assert alarm.next_state([0, 5, 5], OK) == ALARM
    assert alarm.next_state([0, 0, 5], ALARM) == OK
    # AND a missing datapoint treated as breaching makes up the second one
    breaching = hourly_alarm(evaluation_periods=3, datapoints_to_alarm=2, treat_missing_data="breaching")
    assert breaching.next_state([0, None, 5], OK) == ALARM


def test_a_heartbeat_alarm_raises_once_after_three_silent_hours_and_recovers_with_the_next_run() -> None:
    # GIVEN runs every hour for 5 hours, none for the next 4, then runs again
    alarm = hourly_alarm(
        comparison="LessThanThreshold",
        evaluation_periods=3,
        datapoints_to_alarm=3,
        treat_missing_data="breaching",
    )
    store = store_with(*[(hour, 1) for hour in [*range(5), *range(9, 14)]])
    # WHEN it is evaluated over those 14 hours
    evaluation = evaluate([alarm], store, T0, T0 + 14 * HOUR)
    # THEN it goes to ALARM once, at the first step 3 hours after the last run (4:05 + 3 h, rolling windows
    # on 5-minute steps), and back to OK at the first step whose last hour holds a run (9:05)
    assert [(t.state, t.at) for t in evaluation.transitions] == [
        (ALARM, T0 + 7 * HOUR + timedelta(minutes=10)),
        (OK, T0 + 9 * HOUR + timedelta(minutes=10)),
    ]
    assert evaluation.alarms_raised("page") == {"Test"}
    assert evaluation.alarms_raised("ticket") == set()


def test_metric_math_fills_missing_values_and_propagates_them_elsewhere() -> None:
    # GIVEN the failure-rate expression of the template
    rate = "IF(FILL(due, 0) >= 30, 100 * FILL(failed, 0) / FILL(due, 1), 0)"
    # THEN it is the percentage above the volume guard, 0 below it or without data
    assert evaluate_expression(rate, {"failed": 12, "due": 40}) == pytest.approx(30)
    assert evaluate_expression(rate, {"failed": 12, "due": 20}) == 0
    assert evaluate_expression(rate, {"failed": None, "due": None}) == 0
    assert evaluate_expression(rate, {"failed": None, "due": 40}) == 0
    # AND without FILL a missing operand makes the result missing
    assert evaluate_expression("a + b", {"a": 1, "b": None}) is None
    with pytest.raises(ValueError, match="unsupported function"):
        evaluate_expression("RATE(a)", {"a": 1})


def test_emf_blobs_become_datapoints_with_each_dimension_set() -> None:
    # GIVEN a Powertools blob with two metrics and one with an extra dimension
    output = "\n".join(
        [
            '{"_aws": {"Timestamp": 1, "CloudWatchMetrics": [{"Namespace": "NS", "Dimensions": [["service"]],'
            ' "Metrics": [{"Name": "A", "Unit": "Count"}, {"Name": "B", "Unit": "Count"}]}]},'
            ' "service": "svc", "A": [1.0, 2.0], "B": 0}',
            "a log line",
            '{"_aws": {"Timestamp": 1, "CloudWatchMetrics": [{"Namespace": "NS",'
            ' "Dimensions": [["service", "reason"]], "Metrics": [{"Name": "C", "Unit": "Count"}]}]},'
            ' "service": "svc", "reason": "hard_decline", "C": 3}',
        ]
    )
    # WHEN it is read
    points = read_emf(output, T0)
    # THEN every value is a datapoint of its metric, dimensions included
    assert sorted((p.metric.name, p.metric.dimensions, p.value) for p in points) == [
        ("A", (("service", "svc"),), 1.0),
        ("A", (("service", "svc"),), 2.0),
        ("B", (("service", "svc"),), 0.0),
        ("C", (("reason", "hard_decline"), ("service", "svc")), 3.0),
    ]


def test_alarms_are_read_from_a_template_with_their_topic_parameters_and_conditions() -> None:
    # GIVEN a template with a parameterised single-metric alarm and a metric math alarm
    template = {
        "Parameters": {"Period": {"Default": 3600}, "Limit": {"Default": 5}, "On": {"Default": "true"}},
        "Conditions": {"IsOn": {"Fn::Equals": [{"Ref": "On"}, "true"]}},
        "Resources": {
            "Pager": {"Type": "AWS::SNS::Topic"},
            "Single": {
                "Type": "AWS::CloudWatch::Alarm",
                "Properties": {
                    "ActionsEnabled": {"Fn::If": ["IsOn", False, True]},
                    "Namespace": "AWS/Lambda",
                    "MetricName": "Errors",
                    "Dimensions": [{"Name": "FunctionName", "Value": {"Ref": "Fn"}}],
                    "Statistic": "Sum",
                    "Period": {"Ref": "Period"},
                    "EvaluationPeriods": 2,
                    "Threshold": {"Ref": "Limit"},
                    "ComparisonOperator": "GreaterThanThreshold",
                    "AlarmActions": [{"Ref": "Pager"}],
                },
            },
            "Math": {
                "Type": "AWS::CloudWatch::Alarm",
                "Properties": {
                    "Metrics": [
                        {
                            "Id": "a",
                            "ReturnData": False,
                            "MetricStat": {
                                "Metric": {"Namespace": "NS", "MetricName": "A"},
                                "Period": 600,
                                "Stat": "Sum",
                            },
                        },
                        {"Id": "e", "Expression": {"Fn::Sub": "a * ${Limit}"}, "ReturnData": True},
                    ],
                    "EvaluationPeriods": 1,
                    "Threshold": 1,
                    "ComparisonOperator": "GreaterThanOrEqualToThreshold",
                    "TreatMissingData": "notBreaching",
                    "AlarmActions": [{"Ref": "Pager"}],
                },
            },
        },
    }
    # WHEN its alarms are read
    single, math = alarms_from_template(template, {"Pager": "page"}, overrides={"Limit": 7})
    # THEN parameters (and overrides), resources, conditions and topics are resolved
    assert single.queries == (
        Query("m", 3600, metric=MetricId("AWS/Lambda", "Errors", dimensions(FunctionName="Fn")), stat="Sum"),
    )
    assert (single.threshold, single.datapoints_to_alarm, single.actions_enabled) == (7, 2, False)
    assert (single.severity, single.treat_missing_data) == ("page", "missing")
    assert math.queries[-1] == Query("e", 0, expression="a * 7")
    assert math.period == 600
