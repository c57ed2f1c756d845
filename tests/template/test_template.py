"""Static checks of template.yaml: what CloudFormation would deploy, proved without deploying it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from donation_processor.config import load_settings
from donation_processor.dead_letter_reasons import DeadLetterReason
from donation_processor.metric_names import ALL_METRICS, DEAD_LETTERS_BY_REASON
from harness.local.aws_local import load_template

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "template.yaml"
FUNCTION = "ScheduledDonationsFunction"
AT_LEAST = "GreaterThanOrEqualToThreshold"
ABOVE = "GreaterThanThreshold"
SEVERITY_TOPICS = {"PageTopic": "page", "TicketTopic": "ticket"}
SECRET_ARN = re.compile(
    r"^arn:\$\{AWS::Partition\}:secretsmanager:\$\{AWS::Region\}:\$\{AWS::AccountId\}:secret:"
    r"\$\{(?P<parameter>[A-Za-z0-9]+)\}-\?{6}$"
)
# The ARN of an SSM parameter of this stack, built from its name (Ref), which starts with "/".
PARAMETER_ARN = re.compile(
    r"^arn:\$\{AWS::Partition\}:ssm:\$\{AWS::Region\}:\$\{AWS::AccountId\}:parameter"
    r"\$\{(?P<resource>[A-Za-z0-9]+)\}$"
)
RUNBOOK_LINK = re.compile(r"Runbook: docs/RUNBOOK\.md#(?P<anchor>[a-z0-9-]+)$")
# Parameter-backed settings of the function: env var -> parameter. Their defaults and bounds are config.py's,
# checked in test_template_settings.py.
PARAMETER_SETTINGS: dict[str, str] = {
    "MONGODB_SECRET_NAME": "MongoDbSecretName",
    "MONGODB_DATABASE": "MongoDbDatabase",
    "STRIPE_SECRET_NAME": "StripeSecretName",
    "BATCH_SIZE": "BatchSize",
    "MAX_CONCURRENCY": "MaxConcurrency",
    "STRIPE_MAX_RPS": "StripeMaxRps",
    "MAX_ATTEMPTS": "MaxAttempts",
    "DUNNING_SCHEDULE_DAYS": "DunningScheduleDays",
    "TIME_MARGIN_SECONDS": "TimeMarginSeconds",
    "CIRCUIT_BREAKER_THRESHOLD": "CircuitBreakerThreshold",
    "CIRCUIT_COOL_DOWN_SECONDS": "CircuitCoolDownSeconds",
    "CIRCUIT_OUTAGE_WINDOW_SECONDS": "CircuitOutageWindowSeconds",
    "SYSTEMIC_FAILURE_THRESHOLD": "SystemicFailureThreshold",
    "OVERDUE_AFTER_HOURS": "OverdueAfterHours",
    "MISSED_PERIODS": "MissedPeriods",
    "CATCH_UP_MIN_INTERVAL_HOURS": "CatchUpMinIntervalHours",
    "STRIPE_TIMEOUT_SECONDS": "StripeTimeoutSeconds",
    "STRIPE_RETRY_ATTEMPTS": "StripeRetryAttempts",
    "CLAIM_LEASE_SECONDS": "ClaimLeaseSeconds",
    "LOCK_LEASE_SECONDS": "LockLeaseSeconds",
}
LOCAL_ONLY_VARIABLES = ("MONGODB_URI", "STRIPE_SECRET_KEY", "STRIPE_API_BASE", "AWS_ENDPOINT_URL")


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(TEMPLATE_PATH)


def resources_of_type(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == resource_type
    }


def function_properties(template: dict[str, Any]) -> dict[str, Any]:
    resource = template["Resources"][FUNCTION]
    assert resource["Type"] == "AWS::Serverless::Function"
    properties: dict[str, Any] = resource["Properties"]
    return properties


def service_name(template: dict[str, Any]) -> str:
    name: str = template["Globals"]["Function"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]
    return name


def policy_statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    statements: list[dict[str, Any]] = []
    for policy in function_properties(template)["Policies"]:
        # Given only inline policy documents are allowed (no managed policy names, no SAM policy templates)
        assert isinstance(policy, dict), f"managed policy {policy!r} grants more than this stack needs"
        assert "Statement" in policy, f"SAM policy template {sorted(policy)} is broader than needed"
        statements.extend(policy["Statement"])
    return statements


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def watched_metrics(properties: dict[str, Any]) -> list[dict[str, Any]]:
    """The metrics an alarm reads: its single metric, or each MetricStat of its metric math."""
    if "Metrics" in properties:
        return [query["MetricStat"]["Metric"] for query in properties["Metrics"] if "MetricStat" in query]
    return [{key: properties[key] for key in ("Namespace", "MetricName", "Dimensions")}]


# ---------------------------------------------------------------------------------------------------------
# alarms
# ---------------------------------------------------------------------------------------------------------


def test_custom_metric_alarms_watch_only_emitted_metrics_with_the_service_dimension(
    template: dict[str, Any],
) -> None:
    # Given every metric every alarm reads (single-metric alarms and metric-math alarms alike)
    alarms = resources_of_type(template, "AWS::CloudWatch::Alarm")
    watched = [
        (logical_id, metric)
        for logical_id, alarm in alarms.items()
        for metric in watched_metrics(alarm["Properties"])
    ]
    custom = [
        (logical_id, metric)
        for logical_id, metric in watched
        if metric["Namespace"] == {"Ref": "MetricsNamespace"}
    ]
    # Then every metric is either in the job's own namespace or in an AWS/ service namespace
    for logical_id, metric in watched:
        namespace = metric["Namespace"]
        assert namespace == {"Ref": "MetricsNamespace"} or str(namespace).startswith("AWS/"), logical_id
    # And each custom metric is one the job emits, with the service dimension Powertools adds (and, for the
    # dead letters by reason, a reason the job writes on its letters)
    assert custom, "no alarm watches the job's own metrics"
    service = {"Name": "service", "Value": service_name(template)}
    for logical_id, metric in custom:
        assert metric["MetricName"] in ALL_METRICS, f"{logical_id} watches a metric nobody emits"
        extra = [dimension for dimension in metric["Dimensions"] if dimension != service]
        assert len(metric["Dimensions"]) == len(extra) + 1, logical_id
        if metric["MetricName"] == DEAD_LETTERS_BY_REASON:
            [reason] = extra
            assert reason["Name"] == "reason", logical_id
            assert reason["Value"] in set(DeadLetterReason), logical_id
        else:
            assert extra == [], logical_id


@pytest.mark.parametrize(
    ("logical_id", "metric", "comparison", "threshold"),
    [
        ("FunctionErrorsAlarm", "Errors", AT_LEAST, 1),
        ("RunMissingAlarm", "RunCompleted", "LessThanThreshold", 1),
        ("CircuitOpenedAlarm", "CircuitOpened", AT_LEAST, 1),
        ("SystemicHaltAlarm", "RunSystemicHalt", AT_LEAST, 1),
        ("DonationsUnseenAlarm", "DonationsUnseen", AT_LEAST, 1),
        ("DeadLettersDeferredAlarm", "DeadLettersDeferred", AT_LEAST, 1),
        ("LockContendedAlarm", "LockContended", AT_LEAST, 1),
        ("DeadLetterQueueOldestMessageAlarm", "ApproximateAgeOfOldestMessage", ABOVE, 4 * 86400),
        ("FunctionThrottlesAlarm", "Throttles", AT_LEAST, 1),
        ("DurationNearTimeoutAlarm", "Duration", ABOVE, 720000),
        ("DonationsOverdueAlarm", "DonationsOverdue", AT_LEAST, 1),
        ("DonorEventsFailedAlarm", "DonorEventsFailed", AT_LEAST, 1),
    ],
)
def test_required_alarm_watches_its_metric(
    template: dict[str, Any], logical_id: str, metric: str, comparison: str, threshold: object
) -> None:
    # Given the alarm the runbook (docs/RUNBOOK.md) documents
    resource = template["Resources"].get(logical_id)
    assert resource is not None, f"{logical_id} is missing"
    properties = resource["Properties"]
    # Then it fires on the documented condition and ends with a link to its own runbook section
    assert resource["Type"] == "AWS::CloudWatch::Alarm"
    assert properties["MetricName"] == metric
    assert properties["ComparisonOperator"] == comparison
    assert properties["Threshold"] == threshold
    link = RUNBOOK_LINK.search(properties["AlarmDescription"])
    assert link, f"{logical_id} does not end with its runbook link"
    assert link["anchor"] == logical_id.lower()


def test_aws_metric_alarms_are_dimensioned_on_this_stacks_resources(template: dict[str, Any]) -> None:
    # Given the alarms on AWS service metrics
    expected_dimensions = {
        "AWS/SQS": [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]}}],
        "AWS/Lambda": [{"Name": "FunctionName", "Value": {"Ref": FUNCTION}}],
    }
    watched = {
        logical_id: metric
        for logical_id, alarm in resources_of_type(template, "AWS::CloudWatch::Alarm").items()
        for metric in watched_metrics(alarm["Properties"])
        if str(metric["Namespace"]).startswith("AWS/")
    }
    assert {metric["Namespace"] for metric in watched.values()} == set(expected_dimensions)
    # Then each watches this stack's queue or function, not an account-wide aggregate
    for logical_id, metric in watched.items():
        assert metric["Dimensions"] == expected_dimensions[metric["Namespace"]], logical_id


def test_every_alarm_notifies_exactly_one_severity_and_pages_also_report_recovery(
    template: dict[str, Any],
) -> None:
    # Given every alarm
    alarms = resources_of_type(template, "AWS::CloudWatch::Alarm")
    assert len(alarms) >= 14
    severities = set()
    for logical_id, alarm in alarms.items():
        properties = alarm["Properties"]
        # Then it notifies one severity's topic on ALARM
        [action] = properties["AlarmActions"]
        assert action["Ref"] in SEVERITY_TOPICS, logical_id
        severities.add(SEVERITY_TOPICS[action["Ref"]])
        # And a page also says when it is over; a ticket stays open until someone closes it
        if action["Ref"] == "PageTopic":
            assert properties.get("OKActions") == [action], logical_id
        else:
            assert "OKActions" not in properties, logical_id
        assert "InsufficientDataActions" not in properties, logical_id
    assert severities == {"page", "ticket"}


@pytest.mark.parametrize(
    ("topic", "subscriptions"),
    [
        ("PageTopic", {"PageEmailSubscription": "email", "PageHttpsSubscription": "https"}),
        ("TicketTopic", {"TicketEmailSubscription": "email", "TicketHttpsSubscription": "https"}),
    ],
)
def test_each_severity_can_be_mailed_or_wired_to_a_pager_and_an_empty_parameter_subscribes_nothing(
    template: dict[str, Any], topic: str, subscriptions: dict[str, str]
) -> None:
    # Given the topic's subscriptions
    resources = template["Resources"]
    for logical_id, protocol in subscriptions.items():
        subscription = resources[logical_id]
        properties = subscription["Properties"]
        # Then each delivers the topic by its protocol to the endpoint a parameter names
        assert subscription["Type"] == "AWS::SNS::Subscription"
        assert (properties["TopicArn"], properties["Protocol"]) == ({"Ref": topic}, protocol)
        parameter = properties["Endpoint"]["Ref"]
        assert template["Parameters"][parameter]["Default"] == ""
        # And it exists only when that parameter is not empty
        condition = template["Conditions"][subscription["Condition"]]
        assert condition == {"Fn::Not": [{"Fn::Equals": [{"Ref": parameter}, ""]}]}
        pattern = re.compile(template["Parameters"][parameter]["AllowedPattern"])
        assert pattern.fullmatch("")
        example = "oncall@example.org" if protocol == "email" else "https://events.example.org/integration/k1"
        assert pattern.fullmatch(example), parameter


def test_only_the_heartbeat_alarm_treats_missing_data_as_breaching(template: dict[str, Any]) -> None:
    # Given every alarm
    alarms = resources_of_type(template, "AWS::CloudWatch::Alarm")
    special = {
        "RunMissingAlarm": "breaching",
        "DonationsOverdueAlarm": "ignore",
        "DonationsUnseenAlarm": "ignore",
    }
    assert set(special) <= set(alarms)
    for logical_id, alarm in alarms.items():
        treat = alarm["Properties"].get("TreatMissingData")
        # Then silence means "no run" for RunMissingAlarm; for the DonationsOverdue gauge, which only runs
        # that looked at the queue report, it keeps the last state; for every other alarm it means "nothing
        # happened"
        assert treat == special.get(logical_id, "notBreaching"), logical_id


def test_heartbeat_alarms_span_three_schedule_sized_periods(template: dict[str, Any]) -> None:
    # Given the alarms that must not fire on a single slow or contended run
    for logical_id in ("RunMissingAlarm", "LockContendedAlarm"):
        properties = template["Resources"][logical_id]["Properties"]
        # Then they need 3 consecutive breaching periods of HeartbeatPeriodSeconds (default one hour)
        assert properties["Period"] == {"Ref": "HeartbeatPeriodSeconds"}, logical_id
        assert properties["EvaluationPeriods"] == 3, logical_id
        assert properties.get("DatapointsToAlarm", 3) == 3, logical_id
    assert template["Parameters"]["HeartbeatPeriodSeconds"]["Default"] == 3600


def test_no_alarm_fires_on_a_single_donors_decline_or_on_a_queue_that_merely_holds_letters(
    template: dict[str, Any],
) -> None:
    # Given every alarm and the metrics it reads
    alarms = resources_of_type(template, "AWS::CloudWatch::Alarm")
    read = {
        logical_id: [metric["MetricName"] for metric in watched_metrics(alarm["Properties"])]
        for logical_id, alarm in alarms.items()
    }
    # Then none counts every failure or every letter: donors' declines are theirs to fix (issue 11)
    for logical_id, names in read.items():
        assert "DonationsDeadLettered" not in names, logical_id
        assert "ApproximateNumberOfMessagesVisible" not in names, logical_id
        assert names != ["DonationsFailed"], f"{logical_id} counts failures without the volume beside them"


# ---------------------------------------------------------------------------------------------------------
# IAM
# ---------------------------------------------------------------------------------------------------------


def test_function_policies_name_only_resources_of_this_stack(template: dict[str, Any]) -> None:
    # Given the function's inline policy statements
    resources = template["Resources"]
    secret_parameters: set[str] = set()
    for statement in policy_statements(template):
        assert statement["Effect"] == "Allow"
        for action in as_list(statement["Action"]):
            assert "*" not in action, f"wildcard action {action}"
        # Then every resource is a resource of this stack or one of the two named secrets, never "*"
        for resource in as_list(statement["Resource"]):
            assert resource != "*", f"statement {statement.get('Sid')} grants on every resource"
            assert isinstance(resource, dict), f"literal resource {resource!r}"
            if "Fn::GetAtt" in resource:
                assert resource["Fn::GetAtt"][0] in resources
                assert resource["Fn::GetAtt"][1] == "Arn"
            elif "Ref" in resource:
                assert resource["Ref"] in resources
            elif parameter_arn := PARAMETER_ARN.match(resource.get("Fn::Sub", "")):
                # the ARN of an SSM parameter of this stack, named with a leading "/"
                parameter = resources[parameter_arn["resource"]]
                assert parameter["Type"] == "AWS::SSM::Parameter"
                assert parameter["Properties"]["Name"]["Fn::Sub"].startswith("/")
            else:
                match = SECRET_ARN.match(resource.get("Fn::Sub", ""))
                assert match, f"unexpected resource {resource!r}"
                secret_parameters.add(match["parameter"])
    # And the secrets are exactly the two the function is told to read
    assert secret_parameters == {"MongoDbSecretName", "StripeSecretName"}
    variables = function_properties(template)["Environment"]["Variables"]
    assert variables["MONGODB_SECRET_NAME"] == {"Ref": "MongoDbSecretName"}
    assert variables["STRIPE_SECRET_NAME"] == {"Ref": "StripeSecretName"}


def test_function_gets_item_level_lock_access_and_send_only_queue_access(template: dict[str, Any]) -> None:
    # Given the statements per resource
    by_resource: dict[str, set[str]] = {}
    for statement in policy_statements(template):
        for resource in as_list(statement["Resource"]):
            key = json.dumps(resource, sort_keys=True)
            by_resource.setdefault(key, set()).update(as_list(statement["Action"]))
    lock = by_resource[json.dumps({"Fn::GetAtt": ["LockTable", "Arn"]}, sort_keys=True)]
    queue = by_resource[json.dumps({"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}, sort_keys=True)]
    pause_arn = "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter${PauseParameter}"
    pause = by_resource[json.dumps({"Fn::Sub": pause_arn}, sort_keys=True)]
    bus = by_resource[json.dumps({"Fn::GetAtt": ["DonorEventBus", "Arn"]}, sort_keys=True)]
    # Then the lock table allows no Scan/Query/Batch* and the queue cannot be read or purged
    assert lock == {"dynamodb:GetItem", "dynamodb:UpdateItem"}
    assert queue == {"sqs:SendMessage"}
    # And the pause switch can only be read (not switched) and the bus only written to
    assert pause == {"ssm:GetParameter"}
    assert bus == {"events:PutEvents"}
    secret_actions = {
        action for key, actions in by_resource.items() if "secretsmanager" in key for action in actions
    }
    assert secret_actions == {"secretsmanager:GetSecretValue"}


# ---------------------------------------------------------------------------------------------------------
# data at rest, secrets
# ---------------------------------------------------------------------------------------------------------


def test_queue_table_and_topic_are_encrypted(template: dict[str, Any]) -> None:
    # Given the resources that hold donation data or alarm text
    resources = template["Resources"]
    table = resources["LockTable"]["Properties"]
    queue = resources["DeadLetterQueue"]["Properties"]
    topics = [resources[topic]["Properties"] for topic in SEVERITY_TOPICS]
    # Then each is encrypted at rest
    assert table["SSESpecification"]["SSEEnabled"] is True
    assert queue.get("SqsManagedSseEnabled") is True or "KmsMasterKeyId" in queue
    for topic in topics:
        assert topic.get("KmsMasterKeyId")


@pytest.mark.parametrize("topic_id", sorted(SEVERITY_TOPICS))
def test_alarm_topic_key_lets_cloudwatch_publish(template: dict[str, Any], topic_id: str) -> None:
    # Given the topic's key: CloudWatch cannot use the AWS managed alias/aws/sns key
    topic = template["Resources"][topic_id]["Properties"]
    assert topic["KmsMasterKeyId"] != "alias/aws/sns"
    key_id = topic["KmsMasterKeyId"]["Ref"]
    key = template["Resources"][key_id]
    assert key["Type"] == "AWS::KMS::Key"
    # Then the key policy grants the CloudWatch service what publishing to an encrypted topic needs
    grants = [
        statement
        for statement in key["Properties"]["KeyPolicy"]["Statement"]
        if statement.get("Principal", {}).get("Service") == "cloudwatch.amazonaws.com"
    ]
    assert grants
    actions = {action for statement in grants for action in as_list(statement["Action"])}
    assert {"kms:Decrypt", "kms:GenerateDataKey*"} <= actions


def test_template_contains_no_secret_values() -> None:
    # Given the raw template text
    text = TEMPLATE_PATH.read_text(encoding="utf-8")
    # Then no Stripe key and no MongoDB URI with credentials appears in it
    assert not re.search(r"\b[sr]k_(live|test)_", text)
    assert not re.search(r"mongodb(\+srv)?://[^\s/@]+:[^\s/@]+@", text)
    assert not re.search(r"whsec_|-----BEGIN", text)


def test_secrets_are_read_by_name_and_local_only_variables_are_empty(template: dict[str, Any]) -> None:
    # Given the function's environment
    variables = function_properties(template)["Environment"]["Variables"]
    # Then the variables that would carry a value locally are empty in AWS
    for name in LOCAL_ONLY_VARIABLES:
        assert variables.get(name) == "", name
    # And no secret resource is created by the template (operators create them once)
    assert not resources_of_type(template, "AWS::SecretsManager::Secret")


# ---------------------------------------------------------------------------------------------------------
# function, layer, schedule
# ---------------------------------------------------------------------------------------------------------


def test_function_runs_python_313_on_arm64_for_fifteen_minutes(template: dict[str, Any]) -> None:
    # Given the function and the globals it inherits
    globals_ = template["Globals"]["Function"]
    properties = function_properties(template)
    # Then it is the runtime and architecture the layer is built for, with the maximum timeout
    assert properties.get("Runtime", globals_["Runtime"]) == "python3.13"
    assert properties.get("Architectures", globals_["Architectures"]) == ["arm64"]
    assert properties.get("Tracing", globals_.get("Tracing")) == "Active"
    assert properties["Timeout"] == 900
    assert properties["Handler"] == "app.lambda_handler"
    assert properties["CodeUri"] == "functions/scheduled_donations/"
    # And no reserved concurrency throttles manual invokes (the DynamoDB lock prevents overlap)
    assert "ReservedConcurrentExecutions" not in properties
    assert properties["Layers"] == [{"Ref": "SharedLayer"}]


def test_layer_is_built_for_the_function_runtime(template: dict[str, Any]) -> None:
    # Given the shared layer
    layer = template["Resources"]["SharedLayer"]
    # Then sam build pip-installs its requirements for python3.13 on arm64
    assert layer["Type"] == "AWS::Serverless::LayerVersion"
    assert layer["Metadata"] == {"BuildMethod": "python3.13", "BuildArchitecture": "arm64"}
    assert layer["Properties"]["ContentUri"] == "layers/shared/"
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.13"]
    assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]


def test_schedule_event_is_wired_to_parameters(template: dict[str, Any]) -> None:
    # Given the function's events
    events = function_properties(template)["Events"]
    schedules = [event["Properties"] for event in events.values() if event["Type"] == "Schedule"]
    assert len(schedules) == 1
    schedule = schedules[0]
    # Then the expression and the on/off switch come from parameters
    assert schedule["Schedule"] == {"Ref": "ScheduleExpression"}
    assert schedule["State"] == {"Fn::If": ["IsScheduleEnabled", "ENABLED", "DISABLED"]}
    assert template["Conditions"]["IsScheduleEnabled"] == {"Fn::Equals": [{"Ref": "ScheduleEnabled"}, "true"]}
    assert template["Parameters"]["ScheduleExpression"]["Default"] == "rate(1 hour)"
    assert template["Parameters"]["ScheduleEnabled"]["AllowedValues"] == ["true", "false"]
    # And EventBridge sends its own Scheduled Event (no Input overrides it)
    assert "Input" not in schedule


def test_function_environment_is_wired_to_parameters_and_resources(template: dict[str, Any]) -> None:
    # Given the function's and the global environment
    variables = function_properties(template)["Environment"]["Variables"]
    globals_ = template["Globals"]["Function"]["Environment"]["Variables"]
    parameters = template["Parameters"]
    # Then resources and parameters feed it
    assert variables["LOCK_TABLE_NAME"] == {"Ref": "LockTable"}
    assert variables["DEAD_LETTER_QUEUE_URL"] == {"Ref": "DeadLetterQueue"}
    assert variables["PAUSE_PARAMETER_NAME"] == {"Ref": "PauseParameter"}
    assert variables["DONOR_EVENT_BUS_NAME"] == {"Ref": "DonorEventBus"}
    for name, parameter in PARAMETER_SETTINGS.items():
        assert variables[name] == {"Ref": parameter}, name
        assert parameter in parameters, parameter
    assert globals_["POWERTOOLS_SERVICE_NAME"] == "scheduled-donations"
    assert globals_["POWERTOOLS_METRICS_NAMESPACE"] == {"Ref": "MetricsNamespace"}
    assert globals_["LOG_LEVEL"] == {"Ref": "LogLevel"}
    assert parameters["MetricsNamespace"]["Default"] == "ScheduledDonations"


def test_parameter_defaults_are_settings_the_function_accepts(template: dict[str, Any]) -> None:
    # Given the environment CloudFormation would set with every parameter at its default
    variables = function_properties(template)["Environment"]["Variables"]
    parameters = template["Parameters"]
    env = {name: str(parameters[parameter]["Default"]) for name, parameter in PARAMETER_SETTINGS.items()}
    env |= {name: "" for name in LOCAL_ONLY_VARIABLES}
    env |= {"LOCK_TABLE_NAME": "stack-LockTable-ABC", "DEAD_LETTER_QUEUE_URL": "https://sqs.example/1/q"}
    assert set(env) <= set(variables) | set(template["Globals"]["Function"]["Environment"]["Variables"])
    # When the function validates it
    settings = load_settings(env)
    # Then it starts with those values
    assert settings.batch_size == 50
    assert settings.stripe_max_rps == 80
    assert settings.dunning_schedule_days == (1, 3, 7)
    assert settings.stripe_secret_name == "scheduled-donations/stripe-secret-key"
    assert settings.overdue_after_hours == 24
    assert (settings.missed_periods, settings.catch_up_min_interval_hours) == ("latest", 24)


def test_outputs_expose_what_operators_need(template: dict[str, Any]) -> None:
    # Given the stack outputs
    outputs = {name: output["Value"] for name, output in template["Outputs"].items()}
    # Then every resource an operator or the README refers to is reachable
    values = [json.dumps(value, sort_keys=True) for value in outputs.values()]
    for expected in (
        {"Ref": FUNCTION},
        {"Fn::GetAtt": [FUNCTION, "Arn"]},
        {"Ref": "LockTable"},
        {"Ref": "DeadLetterQueue"},
        {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]},
        {"Ref": "PageTopic"},
        {"Ref": "TicketTopic"},
        {"Ref": "SharedLayer"},
        {"Ref": "PauseParameter"},
        {"Ref": "DonorEventBus"},
        {"Fn::GetAtt": ["DonorEventBus", "Arn"]},
        {"Ref": "Dashboard"},
    ):
        assert json.dumps(expected, sort_keys=True) in values, expected


# ---------------------------------------------------------------------------------------------------------
# events/
# ---------------------------------------------------------------------------------------------------------


def test_local_env_file_overrides_only_variables_the_template_declares(template: dict[str, Any]) -> None:
    # Given the --env-vars file for sam local invoke
    overrides = json.loads((ROOT / "events" / "env.local.example.json").read_text(encoding="utf-8"))
    declared = set(function_properties(template)["Environment"]["Variables"])
    declared |= set(template["Globals"]["Function"]["Environment"]["Variables"])
    # Then it targets the function, and sam local would not silently drop any of its variables
    assert set(overrides) == {FUNCTION}
    assert set(overrides[FUNCTION]) <= declared, set(overrides[FUNCTION]) - declared
    # And it reads secrets from values, not Secrets Manager names
    assert overrides[FUNCTION]["MONGODB_SECRET_NAME"] == ""
    assert overrides[FUNCTION]["STRIPE_SECRET_NAME"] == ""


def test_sample_scheduled_event_is_an_eventbridge_scheduled_event() -> None:
    # Given the sample event
    event = json.loads((ROOT / "events" / "scheduled.json").read_text(encoding="utf-8"))
    # Then it has the shape EventBridge sends for a schedule rule
    assert event["version"] == "0"
    assert event["detail-type"] == "Scheduled Event"
    assert event["source"] == "aws.events"
    assert event["detail"] == {}
    assert event["resources"][0].startswith(f"arn:aws:events:{event['region']}:{event['account']}:rule/")
