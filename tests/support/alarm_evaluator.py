"""CloudWatch alarms, evaluated offline: template.yaml's alarm definitions against recorded datapoints.

What it models, after the CloudWatch user guide ("Evaluating an alarm", "Configuring how alarms treat
missing data", "Using metric math"):
- a datapoint is the alarm's statistic (Sum, Maximum, Minimum, Average, SampleCount) of its metric over one
  Period; an alarm reads its last EvaluationPeriods datapoints and goes to ALARM when DatapointsToAlarm of
  them breach (M of N), to OK otherwise;
- a period without data is missing: `breaching` counts it as breaching, `notBreaching` as not breaching;
  `ignore` and `missing` drop it, and when every datapoint is missing `ignore` keeps the state and
  `missing` goes to INSUFFICIENT_DATA;
- metric math: the returned expression over the queries' per-period values, with `IF`, `FILL`, `+ - * /`
  and comparisons (1 or 0). A missing operand makes the result missing, except inside `FILL`.

Where it is coarser than CloudWatch, it errs towards alarming: windows roll at every evaluation step (5
minutes) instead of sitting on the period's boundaries, so every run-aligned window CloudWatch could see
is among those evaluated.
"""

from __future__ import annotations

import ast
import bisect
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

ALARM = "ALARM"
OK = "OK"
INSUFFICIENT_DATA = "INSUFFICIENT_DATA"
EVALUATION_STEP = timedelta(minutes=5)

Dimensions = tuple[tuple[str, str], ...]


def dimensions(**values: str) -> Dimensions:
    return tuple(sorted(values.items()))


@dataclass(frozen=True)
class MetricId:
    namespace: str
    name: str
    dimensions: Dimensions


@dataclass(frozen=True)
class Datapoint:
    metric: MetricId
    at: datetime
    value: float


class MetricStore:
    """Recorded datapoints per metric, and the statistic of one metric over a time window."""

    def __init__(self) -> None:
        self._times: dict[MetricId, list[float]] = {}
        self._values: dict[MetricId, list[float]] = {}

    def add(self, point: Datapoint) -> None:
        times = self._times.setdefault(point.metric, [])
        values = self._values.setdefault(point.metric, [])
        at = point.at.timestamp()
        index = bisect.bisect_right(times, at)
        times.insert(index, at)
        values.insert(index, point.value)

    def add_all(self, points: Iterable[Datapoint]) -> None:
        for point in points:
            self.add(point)

    def metrics(self) -> set[MetricId]:
        return set(self._times)

    def statistic(self, metric: MetricId, stat: str, start: datetime, end: datetime) -> float | None:
        """The statistic over [start, end); None when the window holds no datapoint (missing)."""
        times = self._times.get(metric, [])
        low = bisect.bisect_left(times, start.timestamp())
        high = bisect.bisect_left(times, end.timestamp())
        window = self._values.get(metric, [])[low:high]
        if not window:
            return None
        if stat == "Sum":
            return sum(window)
        if stat == "Maximum":
            return max(window)
        if stat == "Minimum":
            return min(window)
        if stat == "Average":
            return sum(window) / len(window)
        if stat == "SampleCount":
            return float(len(window))
        raise ValueError(f"unsupported statistic {stat}")


def read_emf(output: str, at: datetime) -> list[Datapoint]:
    """Every metric of every EMF blob in `output` (one JSON object per line), as datapoints at `at`."""
    points: list[Datapoint] = []
    for line in output.splitlines():
        if '"_aws"' not in line:
            continue
        blob = json.loads(line)
        for directive in blob["_aws"]["CloudWatchMetrics"]:
            for dimension_set in directive["Dimensions"]:
                dims = tuple(sorted((name, str(blob[name])) for name in dimension_set))
                for metric in directive["Metrics"]:
                    raw = blob[metric["Name"]]
                    for value in raw if isinstance(raw, list) else [raw]:
                        points.append(
                            Datapoint(
                                MetricId(directive["Namespace"], metric["Name"], dims), at, float(value)
                            )
                        )
    return points


# -- metric math ------------------------------------------------------------------------------------------


def evaluate_expression(expression: str, values: Mapping[str, float | None]) -> float | None:
    """One period of a metric math expression; None when the result is missing."""
    return _Math(values).visit(ast.parse(expression, mode="eval").body)


class _Math(ast.NodeVisitor):
    def __init__(self, values: Mapping[str, float | None]) -> None:
        self._values = values

    def visit_Name(self, node: ast.Name) -> float | None:
        return self._values[node.id]

    def visit_Constant(self, node: ast.Constant) -> float:
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise ValueError(f"not a number: {node.value!r}")
        return float(node.value)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> float | None:
        operand = self.visit(node.operand)
        if not isinstance(node.op, ast.USub):
            raise ValueError("only unary minus")
        return None if operand is None else -operand

    def visit_BinOp(self, node: ast.BinOp) -> float | None:
        left, right = self.visit(node.left), self.visit(node.right)
        if left is None or right is None:
            return None
        if isinstance(node.op, ast.Add):
            return left + right
        if isinstance(node.op, ast.Sub):
            return left - right
        if isinstance(node.op, ast.Mult):
            return left * right
        if isinstance(node.op, ast.Div):
            return None if right == 0 else left / right
        raise ValueError(f"unsupported operator {type(node.op).__name__}")

    def visit_Compare(self, node: ast.Compare) -> float | None:
        [operator], [right_node] = node.ops, node.comparators
        left, right = self.visit(node.left), self.visit(right_node)
        if left is None or right is None:
            return None
        results = {ast.Gt: left > right, ast.GtE: left >= right, ast.Lt: left < right, ast.LtE: left <= right}
        results |= {ast.Eq: left == right, ast.NotEq: left != right}
        return 1.0 if results[type(operator)] else 0.0

    def visit_Call(self, node: ast.Call) -> float | None:
        assert isinstance(node.func, ast.Name), "only IF and FILL"
        if node.func.id == "FILL":
            series, default = node.args
            value = self.visit(series)
            return self.visit(default) if value is None else value
        if node.func.id == "IF":
            condition, then, otherwise = (self.visit(arg) for arg in node.args)
            if condition is None:
                return None
            return then if condition != 0 else otherwise
        raise ValueError(f"unsupported function {node.func.id}")

    def generic_visit(self, node: ast.AST) -> Any:
        raise ValueError(f"unsupported syntax {type(node).__name__}")


# -- alarms -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """One entry of an alarm's metrics: a metric statistic, or an expression over the other entries."""

    id: str
    period: int
    metric: MetricId | None = None
    stat: str | None = None
    expression: str | None = None


@dataclass(frozen=True)
class Alarm:
    name: str
    severity: str  # the topic its AlarmActions notify ("page", "ticket")
    queries: tuple[Query, ...]  # the last one is the one the alarm watches
    evaluation_periods: int
    datapoints_to_alarm: int
    threshold: float
    comparison: str
    treat_missing_data: str
    actions_enabled: bool = True

    @property
    def period(self) -> int:
        return max(query.period for query in self.queries)

    def value(self, store: MetricStore, end: datetime) -> float | None:
        """The alarm's datapoint for the period ending at `end`."""
        start = end - timedelta(seconds=self.period)
        values: dict[str, float | None] = {}
        for query in self.queries:
            if query.expression is not None:
                values[query.id] = evaluate_expression(query.expression, values)
            else:
                assert query.metric is not None
                assert query.stat is not None
                values[query.id] = store.statistic(query.metric, query.stat, start, end)
        return values[self.queries[-1].id]

    def breaches(self, value: float) -> bool:
        return {
            "GreaterThanThreshold": value > self.threshold,
            "GreaterThanOrEqualToThreshold": value >= self.threshold,
            "LessThanThreshold": value < self.threshold,
            "LessThanOrEqualToThreshold": value <= self.threshold,
        }[self.comparison]

    def next_state(self, datapoints: Sequence[float | None], state: str) -> str:
        """The state after one evaluation of the last N datapoints (oldest first)."""
        verdicts: list[bool] = []
        for value in datapoints:
            if value is not None:
                verdicts.append(self.breaches(value))
            elif self.treat_missing_data == "breaching":
                verdicts.append(True)
            elif self.treat_missing_data == "notBreaching":
                verdicts.append(False)
        if sum(verdicts) >= self.datapoints_to_alarm:
            return ALARM
        if not verdicts:
            return state if self.treat_missing_data == "ignore" else INSUFFICIENT_DATA
        return OK


@dataclass(frozen=True)
class Transition:
    alarm: str
    severity: str
    at: datetime
    state: str
    notifies: bool  # actions enabled: ALARM reaches the alarm's topic


@dataclass
class Evaluation:
    transitions: list[Transition] = field(default_factory=list)

    def raised(self, severity: str | None = None) -> list[Transition]:
        """Every notified move into ALARM, of one severity or of all."""
        return [
            transition
            for transition in self.transitions
            if transition.state == ALARM
            and transition.notifies
            and (severity is None or transition.severity == severity)
        ]

    def alarms_raised(self, severity: str | None = None) -> set[str]:
        return {transition.alarm for transition in self.raised(severity)}


def evaluate(
    alarms: Iterable[Alarm],
    store: MetricStore,
    start: datetime,
    end: datetime,
    step: timedelta = EVALUATION_STEP,
) -> Evaluation:
    """Run every alarm from `start` (data before it exists) to `end`, one evaluation per step.

    An alarm is first evaluated once its whole range (Period x EvaluationPeriods) lies after `start`: the
    stack is taken to have been running, in state OK, before the recording began.
    """
    evaluation = Evaluation()
    for alarm in alarms:
        state = OK
        period = timedelta(seconds=alarm.period)
        at = start + period * alarm.evaluation_periods
        while at <= end:
            points = [alarm.value(store, at - period * back) for back in range(alarm.evaluation_periods)]
            new_state = alarm.next_state(points[::-1], state)
            if new_state != state:
                evaluation.transitions.append(
                    Transition(alarm.name, alarm.severity, at, new_state, alarm.actions_enabled)
                )
                state = new_state
            at += step
    evaluation.transitions.sort(key=lambda transition: transition.at)
    return evaluation


# -- reading template.yaml --------------------------------------------------------------------------------


class TemplateValues:
    """Resolve the intrinsic functions an alarm uses, with every parameter at its default (or overridden).

    A resource stands in for itself: `!Ref ScheduledDonationsFunction` and `!GetAtt DeadLetterQueue.QueueName`
    become "ScheduledDonationsFunction" and "DeadLetterQueue", the names the recorded AWS metrics use.
    """

    def __init__(self, template: Mapping[str, Any], overrides: Mapping[str, object] | None = None) -> None:
        self._template = template
        self._parameters: dict[str, object] = {
            name: parameter.get("Default") for name, parameter in template.get("Parameters", {}).items()
        }
        self._parameters.update(overrides or {})

    def parameter(self, name: str) -> object:
        return self._parameters[name]

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, dict):
            return value
        [(function, argument)] = value.items()
        if function == "Ref":
            return self._parameters.get(argument, argument)
        if function == "Fn::GetAtt":
            return argument[0]
        if function == "Fn::Sub":
            return re.sub(r"\$\{([A-Za-z0-9:.]+)\}", lambda match: str(self.resolve_name(match[1])), argument)
        if function == "Fn::If":
            condition, then, otherwise = argument
            return self.resolve(then if self.condition(condition) else otherwise)
        raise ValueError(f"unsupported intrinsic function {function}")

    def resolve_name(self, name: str) -> object:
        return self._parameters.get(name, name.split(".")[0])

    def condition(self, name: str) -> bool:
        return self._truth(self._template["Conditions"][name])

    def _truth(self, expression: Mapping[str, Any]) -> bool:
        [(function, argument)] = expression.items()
        if function == "Fn::Equals":
            left, right = (self.resolve(item) for item in argument)
            return str(left) == str(right)
        if function == "Fn::Not":
            return not self._truth(argument[0])
        if function == "Fn::And":
            return all(self._truth(item) for item in argument)
        if function == "Fn::Or":
            return any(self._truth(item) for item in argument)
        if function == "Condition":
            return self.condition(argument)
        raise ValueError(f"unsupported condition function {function}")


def _metric(values: TemplateValues, definition: Mapping[str, Any]) -> MetricId:
    dims = {item["Name"]: str(values.resolve(item["Value"])) for item in definition.get("Dimensions", [])}
    return MetricId(
        str(values.resolve(definition["Namespace"])), definition["MetricName"], dimensions(**dims)
    )


def _number(value: object) -> float:
    assert isinstance(value, int | float | str), value
    return float(value)


def alarms_from_template(
    template: Mapping[str, Any],
    severity_of_topic: Mapping[str, str],
    overrides: Mapping[str, object] | None = None,
) -> list[Alarm]:
    """Every AWS::CloudWatch::Alarm of the template; its severity is that of the one topic it notifies."""
    values = TemplateValues(template, overrides)
    alarms: list[Alarm] = []
    for name, resource in template["Resources"].items():
        if resource["Type"] != "AWS::CloudWatch::Alarm":
            continue
        properties = resource["Properties"]
        topics = {str(values.resolve(action)) for action in properties.get("AlarmActions", [])}
        assert len(topics) == 1, f"{name} notifies {sorted(topics)}, not exactly one topic"
        [topic] = topics
        if "Metrics" in properties:
            queries = []
            for query in properties["Metrics"]:
                if "MetricStat" in query:
                    stat = query["MetricStat"]
                    queries.append(
                        Query(
                            query["Id"],
                            int(_number(values.resolve(stat["Period"]))),
                            metric=_metric(values, stat["Metric"]),
                            stat=stat["Stat"],
                        )
                    )
                else:
                    queries.append(Query(query["Id"], 0, expression=str(values.resolve(query["Expression"]))))
            returned = [query for query in properties["Metrics"] if query.get("ReturnData", True)]
            assert [query["Id"] for query in returned] == [queries[-1].id], f"{name}: return the last only"
        else:
            queries = [
                Query(
                    "m",
                    int(_number(values.resolve(properties["Period"]))),
                    metric=_metric(values, properties),
                    stat=properties["Statistic"],
                )
            ]
        evaluation_periods = int(properties["EvaluationPeriods"])
        alarms.append(
            Alarm(
                name=name,
                severity=severity_of_topic[topic],
                queries=tuple(queries),
                evaluation_periods=evaluation_periods,
                datapoints_to_alarm=int(properties.get("DatapointsToAlarm", evaluation_periods)),
                threshold=_number(values.resolve(properties["Threshold"])),
                comparison=properties["ComparisonOperator"],
                treat_missing_data=properties.get("TreatMissingData", "missing"),
                actions_enabled=bool(values.resolve(properties.get("ActionsEnabled", True))),
            )
        )
    return alarms
