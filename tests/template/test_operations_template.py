"""Operations in template.yaml: alarms, dashboard, pause switch and donor event bus, against docs/RUNBOOK.md.

Proved statically, without deploying: every alarm notifies its severity's topic and links a runbook section
that exists; every metric an alarm or the dashboard reads is one the job emits; the dashboard body
CloudFormation would render is valid JSON with the widgets operators are told to look at.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from donation_processor.adapters import pause_switch
from donation_processor.dead_letter_reasons import DONOR_ACTIONABLE, OPERATOR_ACTIONABLE
from donation_processor.metric_names import ALL_METRICS, DEAD_LETTERS_BY_REASON
from harness.local.aws_local import load_template
from tests.support.alarm_evaluator import evaluate_expression

ROOT = Path(__file__).resolve().parents[2]
RUNBOOK_PATH = ROOT / "docs" / "RUNBOOK.md"
FUNCTION = "ScheduledDonationsFunction"
ALARM = "AWS::CloudWatch::Alarm"
CUSTOM_NAMESPACE = {"Ref": "MetricsNamespace"}
# What a rendered dashboard holds in place of the namespace parameter (see render_dashboard).
NAMESPACE_STAND_IN = "Namespace-Under-Test"
RUNBOOK_LINK = re.compile(r"Runbook: docs/RUNBOOK\.md#(?P<anchor>[a-z0-9-]+)$")
PLACEHOLDER = re.compile(r"\$\{(?P<name>[A-Za-z0-9:.]+)\}")
PSEUDO_PARAMETERS = {"AWS::Region", "AWS::StackName", "AWS::AccountId", "AWS::Partition", "AWS::URLSuffix"}
# The widgets docs/RUNBOOK.md sends operators to.
REQUIRED_WIDGETS = {
    "Charges succeeded and failed",
    "Amount charged per currency (minor units)",
    "Failure rate (% of due)",
    "Dead letters",
    "Run duration against the timeout",
    "Lock contention",
    "Runs: completed, partial, paused",
    "Donations overdue",
    "Errors, throttles and donor events",
    "Alarm states",
}
# Every alarm and its severity: page (act now, PageTopic) or ticket (look today, TicketTopic). docs/ALARMS.md
# says why each has the one it has.
EXPECTED_ALARMS = {
    "RunMissingAlarm": "PageTopic",
    "FunctionErrorsAlarm": "PageTopic",
    "CircuitOpenedAlarm": "PageTopic",
    "SystemicHaltAlarm": "PageTopic",
    "DonationFailureRateAlarm": "PageTopic",
    "DeadLettersDeferredAlarm": "PageTopic",
    "OperatorDeadLetterBurstAlarm": "PageTopic",
    "OperatorDeadLettersAlarm": "TicketTopic",
    "DonorDeadLetterRateAlarm": "TicketTopic",
    "DeadLetterQueueOldestMessageAlarm": "TicketTopic",
    "FunctionThrottlesAlarm": "TicketTopic",
    "DurationNearTimeoutAlarm": "TicketTopic",
    "LockContendedAlarm": "TicketTopic",
    "DonationsUnseenAlarm": "TicketTopic",
    "DonationsOverdueAlarm": "TicketTopic",
    "DonorEventsFailedAlarm": "TicketTopic",
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(ROOT / "template.yaml")


@pytest.fixture(scope="module")
def runbook() -> str:
    return RUNBOOK_PATH.read_text(encoding="utf-8")


def alarms_of(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource["Properties"]
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == ALARM
    }


def watched_metrics(properties: dict[str, Any]) -> list[dict[str, Any]]:
    if "Metrics" in properties:
        return [query["MetricStat"]["Metric"] for query in properties["Metrics"] if "MetricStat" in query]
    return [{key: properties[key] for key in ("Namespace", "MetricName", "Dimensions")}]


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def runbook_sections(runbook: str) -> dict[str, str]:
    """Anchor -> text of each heading's section, up to the next heading of any level."""
    sections: dict[str, str] = {}
    anchor = None
    for line in runbook.splitlines():
        heading = re.match(r"^#{1,6} (?P<text>.+)$", line)
        if heading:
            anchor = github_anchor(heading["text"])
            sections[anchor] = ""
        elif anchor is not None:
            sections[anchor] += line + "\n"
    return sections


def dummy_value(name: str, template: dict[str, Any]) -> str:
    """A stand-in CloudFormation could substitute for ${name}; None if it would fail the deploy."""
    parameters, resources = template["Parameters"], template["Resources"]
    if name == "MetricsNamespace":
        return NAMESPACE_STAND_IN
    if name in parameters:
        return "7" if parameters[name]["Type"] == "Number" else f"param-{name}"
    if name in PSEUDO_PARAMETERS:
        return "us-east-1" if name == "AWS::Region" else f"pseudo-{name.split('::')[1]}"
    logical_id, _, attribute = name.partition(".")
    assert logical_id in resources, f"${{{name}}} names no parameter or resource of the template"
    if resources[logical_id]["Type"] == ALARM:
        assert attribute == "Arn", name
        return f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{logical_id}"
    return f"resource-{logical_id}-{attribute or 'ref'}"


def render_dashboard(template: dict[str, Any]) -> dict[str, Any]:
    body = template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]
    assert set(body) == {"Fn::Sub"}, "DashboardBody must be a !Sub string"
    assert isinstance(body["Fn::Sub"], str), "DashboardBody must be a !Sub string"
    rendered = PLACEHOLDER.sub(lambda match: dummy_value(match["name"], template), body["Fn::Sub"])
    # What is left of "${" must be a !Sub literal, "${!...}", which CloudFormation renders as "${..."
    assert rendered.count("${") == rendered.count("${!"), "a ${...} that is neither a name nor a literal"
    rendered = rendered.replace("${!", "${")
    document: dict[str, Any] = json.loads(rendered)
    return document


def widgets_by_title(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        widget["properties"]["title"]: widget for widget in dashboard["widgets"] if widget["type"] != "text"
    }


# ---------------------------------------------------------------------------------------------------------
# alarms and the runbook
# ---------------------------------------------------------------------------------------------------------


def test_the_template_has_every_alarm_the_issue_asks_for_each_with_its_severity(
    template: dict[str, Any],
) -> None:
    # Given the alarms of the template
    alarms = alarms_of(template)
    # Then they are exactly the documented set (a new alarm needs a runbook section and a test first)
    assert set(alarms) == set(EXPECTED_ALARMS)
    # And each notifies the topic of its severity
    for logical_id, properties in alarms.items():
        assert properties["AlarmActions"] == [{"Ref": EXPECTED_ALARMS[logical_id]}], logical_id


def test_every_alarm_notifies_its_severity_and_links_its_runbook_section(
    template: dict[str, Any], runbook: str
) -> None:
    # Given every alarm and the runbook's headings
    anchors = set(runbook_sections(runbook))
    for logical_id, properties in alarms_of(template).items():
        # Then ALARM notifies the alarm's severity topic, and OK too for a page
        topic = [{"Ref": EXPECTED_ALARMS[logical_id]}]
        assert properties.get("AlarmActions") == topic, logical_id
        assert properties.get("OKActions") == (topic if topic[0]["Ref"] == "PageTopic" else None), logical_id
        # And the description ends with a link to the alarm's own section, which exists in the runbook
        link = RUNBOOK_LINK.search(properties["AlarmDescription"])
        assert link, f"{logical_id}: no runbook link at the end of its description"
        assert link["anchor"] == logical_id.lower(), logical_id
        assert link["anchor"] in anchors, f"docs/RUNBOOK.md has no heading for #{link['anchor']}"
        assert len(properties["AlarmDescription"]) <= 1024, logical_id


def test_each_runbook_alarm_section_says_what_it_means_how_to_confirm_and_what_to_do(
    template: dict[str, Any], runbook: str
) -> None:
    # Given the runbook section of every alarm and the dashboard's widget titles
    sections = runbook_sections(runbook)
    titles = set(widgets_by_title(render_dashboard(template)))
    for logical_id in alarms_of(template):
        section = sections[logical_id.lower()]
        # Then it has the three parts, in order
        positions = [section.find(part) for part in ("**Means.**", "**Confirm.**", "**Do.**")]
        assert -1 not in positions, logical_id
        assert positions == sorted(positions), logical_id
        confirm = section[positions[1] : positions[2]]
        # And confirming names an operator CLI command and a dashboard widget that exists
        assert "`donations " in confirm, f"{logical_id}: no `donations ...` command to confirm with"
        quoted = set(re.findall(r'"([^"\n]+)"', confirm.replace("\n  ", " ")))
        assert quoted & titles, f"{logical_id}: confirm names no dashboard widget ({sorted(quoted)})"
        # And what to do is a numbered list of steps
        assert re.search(r"^1\. ", section[positions[2] :], flags=re.MULTILINE), logical_id


def test_the_runbook_has_the_before_you_start_and_pausing_sections(runbook: str) -> None:
    # Given the runbook
    sections = runbook_sections(runbook)
    # Then it explains how to find the stack, the dashboard and a run's logs, and how to pause
    before = sections["before-you-start"]
    assert "describe-stacks" in before
    assert "DashboardUrl" in before
    assert 'fields @timestamp, message, donation_id\n| filter run_id = "run-..."' in before
    pausing = sections["pausing-charging"]
    for command in ("donations pause", "donations resume", "PauseParameterName"):
        assert command in pausing, command
    # And it never tells anyone to charge by hand
    assert "Never charge a donation by hand" in before


def test_every_custom_metric_an_alarm_or_the_dashboard_reads_is_emitted(template: dict[str, Any]) -> None:
    # Given the custom-namespace metrics the alarms read
    read = {
        metric["MetricName"]
        for properties in alarms_of(template).values()
        for metric in watched_metrics(properties)
        if metric["Namespace"] == CUSTOM_NAMESPACE
    }
    # And those the dashboard reads, as metric rows and inside SEARCH expressions
    dashboard = render_dashboard(template)
    for widget in dashboard["widgets"]:
        for row in widget["properties"].get("metrics", []):
            if isinstance(row[0], dict):
                expression = row[0]["expression"]
                if "SEARCH(" in expression:
                    assert f'"{NAMESPACE_STAND_IN}"' in expression, expression
                    read.update(re.findall(r'MetricName="([A-Za-z]+)"', expression))
                continue
            namespace, name, *dimensions = [part for part in row if not isinstance(part, dict)]
            assert namespace == NAMESPACE_STAND_IN or namespace.startswith("AWS/"), row
            if namespace == NAMESPACE_STAND_IN:
                assert dimensions == ["service", "scheduled-donations"], row
                read.add(name)
    # Then every one is in metric_names.ALL_METRICS, the names the job emits
    assert read - ALL_METRICS == set()
    # And the dashboard shows the amounts, the pause, the overdue gauge and the periods recorded as missed
    shown = {
        "AmountCharged",
        "RunPaused",
        "DonationsOverdue",
        "DonationsMissed",
        "LockContended",
        "DonationsSucceeded",
    }
    assert shown <= read


# ---------------------------------------------------------------------------------------------------------
# failure rate, duration, overdue
# ---------------------------------------------------------------------------------------------------------


def test_failure_rate_alarm_divides_failed_by_due_over_three_hours_above_a_volume_guard(
    template: dict[str, Any],
) -> None:
    # Given the failure-rate alarm's metric math
    properties = template["Resources"]["DonationFailureRateAlarm"]["Properties"]
    queries = {query["Id"]: query for query in properties["Metrics"]}
    # Then it reads 3-hour sums of DonationsFailed and DonationsDue and returns only the expression
    for query_id, metric in (("failed", "DonationsFailed"), ("due", "DonationsDue")):
        stat = queries[query_id]["MetricStat"]
        assert stat["Metric"]["MetricName"] == metric
        assert (stat["Stat"], stat["Period"]) == ("Sum", 10800)
        assert queries[query_id]["ReturnData"] is False
    [returned] = [query for query in queries.values() if query.get("ReturnData") is True]
    expression = returned["Expression"]["Fn::Sub"]
    parameters = template["Parameters"]
    minimum = parameters["FailureRateMinimumDue"]["Default"]
    assert minimum == 30
    rate = expression.replace("${FailureRateMinimumDue}", str(minimum))
    # When it is evaluated for a few windows
    # Then it is 100 x failed / due, and 0 when fewer than the minimum were due or nothing was reported
    assert evaluate_expression(rate, {"failed": 12, "due": 30}) == pytest.approx(40)
    assert evaluate_expression(rate, {"failed": 5, "due": 40}) == pytest.approx(12.5)
    assert evaluate_expression(rate, {"failed": 20, "due": 29}) == 0
    assert evaluate_expression(rate, {"failed": None, "due": None}) == 0
    assert evaluate_expression(rate, {"failed": None, "due": 50}) == 0
    # And it pages above FailureRatePercentThreshold, 40 % by default
    assert properties["Threshold"] == {"Ref": "FailureRatePercentThreshold"}
    assert properties["ComparisonOperator"] == "GreaterThanThreshold"
    assert parameters["FailureRatePercentThreshold"]["Default"] == 40
    # And the dashboard plots the very same expression over the same window
    widget = widgets_by_title(render_dashboard(template))["Failure rate (% of due)"]
    assert widget["properties"]["period"] == 10800
    rate_widget = template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    assert json.dumps(expression) in rate_widget


def _dead_letter_reasons(properties: dict[str, Any]) -> set[str]:
    return {
        dimension["Value"]
        for metric in watched_metrics(properties)
        if metric["MetricName"] == DEAD_LETTERS_BY_REASON
        for dimension in metric["Dimensions"]
        if dimension["Name"] == "reason"
    }


def test_donors_dead_letters_raise_only_tickets_and_every_operators_reason_can_page(
    template: dict[str, Any],
) -> None:
    # Given the dead-letter reasons each alarm reads, by severity
    read: dict[str, set[str]] = {"PageTopic": set(), "TicketTopic": set()}
    for logical_id, properties in alarms_of(template).items():
        read[EXPECTED_ALARMS[logical_id]] |= _dead_letter_reasons(properties)
    # Then a donor's decline never pages: it is the donor's to fix, and a ticket watches their rate
    assert read["PageTopic"] == set(OPERATOR_ACTIONABLE)
    assert read["TicketTopic"] == set(OPERATOR_ACTIONABLE) | set(DONOR_ACTIONABLE)
    # And the dead-letter widget splits the letters by the same reason dimension
    widget = widgets_by_title(render_dashboard(template))["Dead letters"]
    [search] = [row[0] for row in widget["properties"]["metrics"] if isinstance(row[0], dict)]
    assert f'MetricName="{DEAD_LETTERS_BY_REASON}"' in search["expression"]
    assert search["expression"].startswith(f'SEARCH(\'{{"{NAMESPACE_STAND_IN}",service,reason}}')


def test_duration_alarm_and_dashboard_use_80_percent_of_the_functions_timeout(
    template: dict[str, Any],
) -> None:
    # Given the function's timeout, the duration alarm and the duration widget
    timeout_ms = template["Resources"][FUNCTION]["Properties"]["Timeout"] * 1000
    alarm = template["Resources"]["DurationNearTimeoutAlarm"]["Properties"]
    widget = widgets_by_title(render_dashboard(template))["Run duration against the timeout"]
    # Then the alarm fires on the longest invocation above 80 % of the timeout
    assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"]) == (
        "AWS/Lambda",
        "Duration",
        "Maximum",
    )
    assert alarm["Threshold"] == timeout_ms * 0.8
    # And the widget draws the timeout and the alarm's threshold over the Lambda Duration maximum
    lines = {annotation["value"] for annotation in widget["properties"]["annotations"]["horizontal"]}
    assert lines == {timeout_ms, alarm["Threshold"]}
    rows = widget["properties"]["metrics"]
    assert any(row[:2] == ["AWS/Lambda", "Duration"] and row[-1]["stat"] == "Maximum" for row in rows)


def test_overdue_alarm_reads_the_gauge_and_keeps_its_state_when_no_run_reports(
    template: dict[str, Any],
) -> None:
    # Given the overdue alarm
    alarm = template["Resources"]["DonationsOverdueAlarm"]["Properties"]
    # Then it reads the gauge's maximum over a schedule-sized period and fires on one overdue donation
    assert alarm["MetricName"] == "DonationsOverdue"
    assert alarm["Statistic"] == "Maximum"
    assert alarm["Period"] == {"Ref": "HeartbeatPeriodSeconds"}
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
    # And periods without a report (paused, locked out, failed runs) neither raise nor clear it
    assert alarm["TreatMissingData"] == "ignore"
    # And the cut-off reaches the function from a parameter defaulting to one day
    variables = template["Resources"][FUNCTION]["Properties"]["Environment"]["Variables"]
    assert variables["OVERDUE_AFTER_HOURS"] == {"Ref": "OverdueAfterHours"}
    assert template["Parameters"]["OverdueAfterHours"]["Default"] == 24


# ---------------------------------------------------------------------------------------------------------
# dashboard
# ---------------------------------------------------------------------------------------------------------


def test_dashboard_body_is_valid_json_with_the_widgets_the_runbook_names(template: dict[str, Any]) -> None:
    # Given the dashboard body as CloudFormation would render it (placeholders resolved to stand-ins)
    dashboard = render_dashboard(template)
    widgets = widgets_by_title(dashboard)
    # Then every widget the runbook refers to is there, each title once
    titles = [
        widget["properties"].get("title") for widget in dashboard["widgets"] if widget["type"] != "text"
    ]
    assert len(titles) == len(set(titles))
    assert set(widgets) >= REQUIRED_WIDGETS
    # And every metric widget draws in the stack's region and fits the 24-column grid
    for title, widget in widgets.items():
        if widget["type"] == "metric":
            assert widget["properties"]["region"] == "us-east-1", title
            assert widget["properties"]["metrics"], title
        assert widget["x"] >= 0, title
        assert widget["x"] + widget["width"] <= 24, title
    # And amounts are split by currency through a SEARCH on the currency dimension
    [amounts] = widgets["Amount charged per currency (minor units)"]["properties"]["metrics"]
    assert amounts[0]["expression"].startswith(f'SEARCH(\'{{"{NAMESPACE_STAND_IN}",service,currency}}')
    # And each line is labelled with its currency (a CloudWatch dynamic label, escaped from !Sub)
    assert amounts[0]["label"] == "${PROP('Dim.currency')}"


def test_dashboard_alarm_widget_lists_every_alarm_of_the_template(template: dict[str, Any]) -> None:
    # Given the alarm status widget
    widget = widgets_by_title(render_dashboard(template))["Alarm states"]
    assert widget["type"] == "alarm"
    listed = widget["properties"]["alarms"]
    # Then it lists each alarm of the template exactly once, by ARN
    expected = {
        f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{logical_id}" for logical_id in alarms_of(template)
    }
    assert len(listed) == len(set(listed))
    assert set(listed) == expected


def test_dashboard_and_its_url_are_stack_outputs(template: dict[str, Any]) -> None:
    # Given the outputs
    outputs = {name: output["Value"] for name, output in template["Outputs"].items()}
    # Then the dashboard, the pause switch and the donor bus can be found from the stack
    assert outputs["DashboardName"] == {"Ref": "Dashboard"}
    assert outputs["DashboardUrl"]["Fn::Sub"].endswith("#dashboards:name=${Dashboard}")
    assert outputs["DashboardUrl"]["Fn::Sub"].startswith("https://${AWS::Region}.console.aws.amazon.com/")
    assert outputs["PauseParameterName"] == {"Ref": "PauseParameter"}
    assert outputs["DonorEventBusName"] == {"Ref": "DonorEventBus"}
    assert outputs["DonorEventBusArn"] == {"Fn::GetAtt": ["DonorEventBus", "Arn"]}


# ---------------------------------------------------------------------------------------------------------
# pause switch, donor event bus and their IAM
# ---------------------------------------------------------------------------------------------------------


def test_pause_parameter_defaults_to_running_and_accepts_only_running_or_paused(
    template: dict[str, Any],
) -> None:
    # Given the pause switch parameter
    parameter = template["Resources"]["PauseParameter"]
    properties = parameter["Properties"]
    assert parameter["Type"] == "AWS::SSM::Parameter"
    # Then a new stack charges, and SSM refuses any value the function would not understand
    assert properties["Type"] == "String"
    assert properties["Value"] == pause_switch.RUNNING
    allowed = re.compile(properties["AllowedPattern"])
    assert allowed.fullmatch(pause_switch.RUNNING)
    assert allowed.fullmatch(pause_switch.PAUSED)
    for value in ("", "Paused", "stopped", "running ", "paused\n", "true"):
        assert not allowed.fullmatch(value), value
    # And the function is told its name, which starts with "/" (the IAM ARN relies on it)
    variables = template["Resources"][FUNCTION]["Properties"]["Environment"]["Variables"]
    assert variables["PAUSE_PARAMETER_NAME"] == {"Ref": "PauseParameter"}
    assert properties["Name"]["Fn::Sub"].startswith("/")


def test_donor_event_bus_is_named_for_the_stack_and_wired_to_the_function(template: dict[str, Any]) -> None:
    # Given the donor event bus
    bus = template["Resources"]["DonorEventBus"]
    assert bus["Type"] == "AWS::Events::EventBus"
    # Then it is this stack's own bus, with no resource policy letting other accounts in
    assert bus["Properties"]["Name"] == {"Fn::Sub": "${AWS::StackName}-donor-events"}
    assert "Policy" not in bus["Properties"]
    # And the function is told its name
    variables = template["Resources"][FUNCTION]["Properties"]["Environment"]["Variables"]
    assert variables["DONOR_EVENT_BUS_NAME"] == {"Ref": "DonorEventBus"}


def test_ssm_and_events_permissions_name_only_the_switch_and_the_bus(template: dict[str, Any]) -> None:
    # Given the function's statements that grant SSM or EventBridge actions
    statements = [
        statement
        for policy in template["Resources"][FUNCTION]["Properties"]["Policies"]
        for statement in policy["Statement"]
    ]

    def granting(service: str) -> list[dict[str, Any]]:
        return [s for s in statements if any(a.startswith(f"{service}:") for a in _as_list(s["Action"]))]

    [ssm] = granting("ssm")
    [events] = granting("events")
    # Then SSM may only read the one switch parameter, by its exact ARN
    assert _as_list(ssm["Action"]) == ["ssm:GetParameter"]
    assert ssm["Resource"] == {
        "Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter${PauseParameter}"
    }
    # And EventBridge may only put events on the donor bus
    assert _as_list(events["Action"]) == ["events:PutEvents"]
    assert events["Resource"] == {"Fn::GetAtt": ["DonorEventBus", "Arn"]}
    assert ssm["Effect"] == events["Effect"] == "Allow"
    assert "Condition" not in ssm
    assert "Condition" not in events


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
