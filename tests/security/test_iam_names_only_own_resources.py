"""Every IAM grant the stack makes names only this stack's own resources (and the two secrets it reads).

tests/template checks the function's inline statements; these tests close the gaps around them: the service
of each action matches the resource it is granted on, the secret-name parameters cannot smuggle a wildcard
into the secret ARNs, the pause switch's ARN names exactly the stack's one parameter, the role SAM generates
adds nothing but the two AWS managed policies SAM always attaches, the schedule's invoke permission is tied
to this stack's rule, the donor event bus carries no resource policy, and the topic key's policy trusts only
this account.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
from samtranslator.translator.transform import transform

from harness.local.aws_local import load_template

ROOT = Path(__file__).resolve().parents[2]
FUNCTION = "ScheduledDonationsFunction"
# The resource types of this stack a statement may name, and the only service whose actions fit each.
SERVICE_OF_TYPE = {
    "AWS::DynamoDB::Table": "dynamodb",
    "AWS::SQS::Queue": "sqs",
    "AWS::Events::EventBus": "events",
    "AWS::SSM::Parameter": "ssm",
}
SECRET_ARN = re.compile(
    r"^arn:\$\{AWS::Partition\}:secretsmanager:\$\{AWS::Region\}:\$\{AWS::AccountId\}:secret:"
    r"\$\{(?P<parameter>[A-Za-z0-9]+)\}-\?{6}$"
)
# An SSM parameter's ARN from its name (Ref); GetAtt cannot give it, and the name starts with "/".
PARAMETER_ARN = re.compile(
    r"^arn:\$\{AWS::Partition\}:ssm:\$\{AWS::Region\}:\$\{AWS::AccountId\}:parameter"
    r"\$\{(?P<resource>[A-Za-z0-9]+)\}$"
)
# Resource types that carry a grant of their own (resource policies, roles, users, invoke permissions).
GRANTING_TYPES = re.compile(
    r"^AWS::(IAM::.*|SQS::QueuePolicy|SNS::TopicPolicy|S3::BucketPolicy|Lambda::Permission"
    r"|SecretsManager::ResourcePolicy|KMS::Key|Events::EventBusPolicy)$"
)
# Attached by SAM to every function role it generates (CloudWatch Logs) and for Tracing: Active (X-Ray).
SAM_MANAGED_POLICIES = [
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
]


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(ROOT / "template.yaml")


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def inline_statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    policies = template["Resources"][FUNCTION]["Properties"]["Policies"]
    return [statement for policy in policies for statement in policy["Statement"]]


class _NoManagedPolicyLookups:
    """SAM asks IAM for managed policy ARNs only for names it cannot resolve; the template uses none."""

    def load(self) -> dict[str, str]:
        return {}


@pytest.fixture(scope="module")
def deployed(template: dict[str, Any]) -> dict[str, Any]:
    """The template as CloudFormation receives it after the SAM transform (code locations stubbed)."""
    document = copy.deepcopy(template)
    document["Resources"][FUNCTION]["Properties"]["CodeUri"] = "s3://artifacts/function.zip"
    document["Resources"]["SharedLayer"]["Properties"]["ContentUri"] = "s3://artifacts/layer.zip"
    transformed: dict[str, Any] = transform(document, {}, _NoManagedPolicyLookups())
    return transformed


def test_each_statement_acts_only_on_this_stacks_resources_of_its_own_service(
    template: dict[str, Any],
) -> None:
    # Given the function's inline statements
    resources = template["Resources"]
    for statement in inline_statements(template):
        sid = statement.get("Sid")
        # Then each is a plain Allow of listed actions on listed resources (no NotAction, NotResource,
        # Principal or Condition that would widen or obscure it)
        assert set(statement) <= {"Sid", "Effect", "Action", "Resource"}, sid
        assert statement["Effect"] == "Allow", sid
        services = {action.split(":", 1)[0] for action in as_list(statement["Action"])}
        for resource in as_list(statement["Resource"]):
            # And every resource is the ARN of a resource of this stack, or of a secret read by name
            if isinstance(resource, dict) and "Fn::GetAtt" in resource:
                logical_id, attribute = resource["Fn::GetAtt"]
                assert attribute == "Arn", f"{sid}: {logical_id}.{attribute} is not an ARN"
                expected = SERVICE_OF_TYPE.get(resources[logical_id]["Type"])
            elif isinstance(resource, dict) and (
                parameter := PARAMETER_ARN.match(resource.get("Fn::Sub", ""))
            ):
                expected = SERVICE_OF_TYPE.get(resources[parameter["resource"]]["Type"])
                assert expected == "ssm", f"{sid}: {parameter['resource']} is not an SSM parameter"
            else:
                assert isinstance(resource, dict), f"{sid}: literal resource {resource!r}"
                assert SECRET_ARN.match(resource.get("Fn::Sub", "")), f"{sid}: unexpected {resource!r}"
                expected = "secretsmanager"
            # And the actions belong to that resource's service only
            assert services == {expected}, f"{sid}: {sorted(services)} granted on a {expected} resource"


@pytest.mark.parametrize("parameter", ["MongoDbSecretName", "StripeSecretName"])
def test_secret_name_parameters_cannot_widen_the_secret_arns(
    template: dict[str, Any], parameter: str
) -> None:
    # Given a parameter spliced into a secret ARN of the policy
    definition = template["Parameters"][parameter]
    allowed = re.compile(definition["AllowedPattern"])
    # Then its default is a plain name
    assert allowed.fullmatch(definition["Default"])
    # And CloudFormation refuses any value that would turn the ARN into a wildcard or another ARN
    for value in ("*", "?", "scheduled-donations/*", "scheduled-donations/mongodb-uri?", "", "a:b", "a b"):
        assert not allowed.fullmatch(value), f"{parameter} accepts {value!r}"


def test_the_pause_parameter_arn_names_exactly_the_stacks_one_parameter(template: dict[str, Any]) -> None:
    # Given the SSM parameters the function's statements name
    resources = template["Resources"]
    named = [
        parameter["resource"]
        for statement in inline_statements(template)
        for resource in as_list(statement["Resource"])
        if isinstance(resource, dict) and (parameter := PARAMETER_ARN.match(resource.get("Fn::Sub", "")))
    ]
    assert named == ["PauseParameter"]
    # Then its name is fixed by the template: "/", the stack name (letters, digits, hyphens) and a literal
    # suffix, so "arn:...:parameter" + name can match no other parameter (no wildcard, no prefix match)
    name = resources["PauseParameter"]["Properties"]["Name"]
    assert name == {"Fn::Sub": "/${AWS::StackName}/charging"}
    assert "*" not in name["Fn::Sub"]
    assert "?" not in name["Fn::Sub"]


def test_the_only_granting_resources_are_the_topic_key_and_what_sam_generates(
    template: dict[str, Any],
) -> None:
    # Given the resources declared in the template
    granting = {
        logical_id
        for logical_id, resource in template["Resources"].items()
        if GRANTING_TYPES.match(resource["Type"])
    }
    # Then no role, user, resource policy or invoke permission is declared besides the topic key
    assert granting == {"AlarmTopicKey"}
    # And no event bus carries an inline resource policy (EventBus.Policy grants like an EventBusPolicy)
    buses = [value for value in template["Resources"].values() if value["Type"] == "AWS::Events::EventBus"]
    assert buses
    for bus in buses:
        assert "Policy" not in bus["Properties"]
    # And the function's role is the one SAM derives from its inline policies, with no boundary or role of
    # its own that would bring other statements
    properties = template["Resources"][FUNCTION]["Properties"]
    assert "Role" not in properties
    assert "PermissionsBoundary" not in properties


def test_the_generated_role_grants_the_inline_statements_and_the_two_sam_policies_only(
    template: dict[str, Any], deployed: dict[str, Any]
) -> None:
    # Given the IAM roles CloudFormation would create
    roles = {key: value for key, value in deployed["Resources"].items() if value["Type"] == "AWS::IAM::Role"}
    assert list(roles) == [f"{FUNCTION}Role"]
    role = roles[f"{FUNCTION}Role"]["Properties"]
    # Then only Lambda can assume it
    [trust] = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Effect"] == "Allow"
    assert trust["Principal"] == {"Service": ["lambda.amazonaws.com"]}
    assert as_list(trust["Action"]) == ["sts:AssumeRole"]
    assert "Condition" not in trust
    # And it holds exactly the template's inline statements
    statements = [s for policy in role["Policies"] for s in policy["PolicyDocument"]["Statement"]]
    assert statements == inline_statements(template)
    # And the only other grants are the AWS managed policies SAM attaches for logs and tracing
    assert role["ManagedPolicyArns"] == SAM_MANAGED_POLICIES
    assert set(role) <= {"AssumeRolePolicyDocument", "ManagedPolicyArns", "Policies", "Tags"}


def test_the_schedule_may_invoke_the_function_only_from_this_stacks_rule(deployed: dict[str, Any]) -> None:
    # Given the invoke permissions the transform generates
    resources = deployed["Resources"]
    permissions = [
        value["Properties"] for value in resources.values() if value["Type"] == "AWS::Lambda::Permission"
    ]
    assert permissions
    for permission in permissions:
        # Then each lets EventBridge invoke this function, and only from a rule of this stack
        assert permission["Action"] == "lambda:InvokeFunction"
        assert permission["FunctionName"] == {"Ref": FUNCTION}
        assert permission["Principal"] == "events.amazonaws.com"
        rule, attribute = permission["SourceArn"]["Fn::GetAtt"]
        assert (resources[rule]["Type"], attribute) == ("AWS::Events::Rule", "Arn")


def test_the_topic_key_trusts_only_this_account_and_its_cloudwatch_alarms(template: dict[str, Any]) -> None:
    # Given the key policy of the alarm topic's key
    statements = template["Resources"]["AlarmTopicKey"]["Properties"]["KeyPolicy"]["Statement"]
    account_root = {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}
    for statement in statements:
        sid = statement.get("Sid")
        assert statement["Effect"] == "Allow", sid
        # Then "*" is the key itself (the only meaning Resource has in a key policy)
        assert statement["Resource"] == "*", sid
        principal = statement["Principal"]
        if principal == {"AWS": account_root}:
            # And administration stays with this account's IAM
            continue
        # And the only service is CloudWatch, for alarms of this account, with just what publishing needs
        assert principal == {"Service": "cloudwatch.amazonaws.com"}, sid
        assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
        assert set(as_list(statement["Action"])) == {"kms:Decrypt", "kms:GenerateDataKey*"}
