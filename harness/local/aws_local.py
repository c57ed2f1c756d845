"""Local AWS for tests and demos: moto's server in-process, provisioned from template.yaml itself.

The lock table and the dead-letter queue are created from the `LockTable` and `DeadLetterQueue` resource
properties in template.yaml, so the local resources cannot drift from what CloudFormation deploys. A template
property this module does not know how to reproduce raises `UnsupportedTemplateProperty` instead of being
silently dropped.

moto 5.2.5 (checked against the in-process server):
- DynamoDB: KeySchema, AttributeDefinitions, BillingMode, SSESpecification, DeletionProtectionEnabled,
  TimeToLiveSpecification (update_time_to_live) and PointInTimeRecoverySpecification
  (update_continuous_backups) are all accepted and reported back by the describe calls. moto does not
  expire items whose TTL attribute is in the past and does not encrypt anything; the harness only mirrors
  the configuration.
- SQS: MessageRetentionPeriod, VisibilityTimeout and SqsManagedSseEnabled are accepted and returned by
  get_queue_attributes; moto does not delete messages when the retention period ends.
- moto's threaded server checks a DynamoDB condition and writes the item in two steps, so two concurrent
  conditional writes can both succeed. DynamoDB applies each one atomically, and the run lock relies on it;
  the server here applies DynamoDB requests one at a time (`DynamoDbOneAtATime`), as DynamoDB would.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import signal
import threading
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import boto3
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server

from harness.local.server_thread import ServingThread
from harness.project import PROJECT_ROOT

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.literals import QueueAttributeNameType

REGION = "us-east-1"
# moto accepts any credentials; fixed dummy ones keep a developer's real profile out of local runs.
DUMMY_ACCESS_KEY_ID = "testing"
DUMMY_SECRET_ACCESS_KEY = "testing"
DEFAULT_LOCK_TABLE_NAME = "scheduled-donations-lock"
DEFAULT_QUEUE_NAME = "scheduled-donations-dlq"
LOCK_TABLE_RESOURCE = "LockTable"
DEAD_LETTER_QUEUE_RESOURCE = "DeadLetterQueue"


class UnsupportedTemplateProperty(ValueError):
    """template.yaml uses a property (or an intrinsic function) the harness cannot reproduce locally."""


# --------------------------------------------------------------------------------------------------------
# template.yaml
# --------------------------------------------------------------------------------------------------------


# PyYAML ships no type stubs and types-PyYAML is not a dev dependency, so yaml is imported dynamically and
# handled as Any here rather than with `# type: ignore`s that would turn stale once stubs are installed.
_yaml: Any = importlib.import_module("yaml")


def _construct_intrinsic(loader: Any, tag_suffix: str, node: Any) -> dict[str, Any]:
    value: Any
    if isinstance(node, _yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, _yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if tag_suffix in ("Ref", "Condition"):
        return {tag_suffix: value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        # !GetAtt Resource.Attribute is the short form of {"Fn::GetAtt": ["Resource", "Attribute"]}.
        value = value.split(".", 1)
    return {f"Fn::{tag_suffix}": value}


# A SafeLoader subclass that turns CloudFormation's short-form tags (!Ref, !Sub, !GetAtt, !If, ...) into
# their long JSON form ({"Ref": ...}, {"Fn::Sub": ...}); everything else loads exactly as yaml.safe_load.
_CloudFormationLoader: Any = type("_CloudFormationLoader", (_yaml.SafeLoader,), {})
_CloudFormationLoader.add_multi_constructor("!", _construct_intrinsic)


def load_template(path: str | Path = "template.yaml") -> dict[str, Any]:
    """Parse a CloudFormation/SAM YAML template, turning short-form tags into their long JSON form.

    A relative path that does not exist from the current directory is looked up from the project root, so
    callers work from any working directory.
    """
    candidate = Path(path)
    if not candidate.is_absolute() and not candidate.exists():
        candidate = PROJECT_ROOT / candidate
    with candidate.open(encoding="utf-8") as handle:
        document = _yaml.load(handle, Loader=_CloudFormationLoader)  # a SafeLoader subclass
    if not isinstance(document, dict) or not isinstance(document.get("Resources"), dict):
        raise ValueError(f"{candidate} is not a CloudFormation template (no Resources mapping)")
    return document


def _resource_properties(template: dict[str, Any], logical_id: str, resource_type: str) -> dict[str, Any]:
    resource = template.get("Resources", {}).get(logical_id)
    if not isinstance(resource, dict) or resource.get("Type") != resource_type:
        raise UnsupportedTemplateProperty(f"template has no {resource_type} resource named {logical_id}")
    properties = resource.get("Properties", {})
    if not isinstance(properties, dict):
        raise UnsupportedTemplateProperty(f"{logical_id}.Properties must be a mapping")
    return properties


def _literal(value: Any, where: str) -> Any:
    """Return value unchanged if it holds no intrinsic function; the harness does not evaluate intrinsics."""
    if isinstance(value, dict):
        if any(key == "Ref" or key == "Condition" or key.startswith("Fn::") for key in value):
            raise UnsupportedTemplateProperty(
                f"{where} uses an intrinsic function the harness cannot resolve"
            )
        return {key: _literal(item, f"{where}.{key}") for key, item in value.items()}
    if isinstance(value, list):
        return [_literal(item, f"{where}[{index}]") for index, item in enumerate(value)]
    return value


def _reject_unknown(properties: dict[str, Any], known: frozenset[str], logical_id: str) -> None:
    unknown = sorted(set(properties) - known)
    if unknown:
        raise UnsupportedTemplateProperty(
            f"{logical_id} uses {', '.join(unknown)}; teach harness/local/aws_local.py to reproduce it"
        )


# --------------------------------------------------------------------------------------------------------
# moto server
# --------------------------------------------------------------------------------------------------------


class DynamoDbOneAtATime:
    """WSGI middleware: DynamoDB requests (JSON protocol, `X-Amz-Target: DynamoDB_…`) run one at a time, so
    each conditional write is atomic as in DynamoDB. Other services (an SQS long poll) are not held up."""

    def __init__(self, app: Any) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if not environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
            return self._app(environ, start_response)
        with self._lock:
            return list(self._app(environ, start_response))


class MotoServer(ServingThread):
    """A running in-process moto server. Use as a context manager, or call stop()."""

    def __init__(self, server: BaseWSGIServer) -> None:
        super().__init__(server, name="moto")
        self.host = str(server.server_address[0])
        self.endpoint_url = f"http://{self.host}:{self.port}"

    def reset(self) -> None:
        """Forget every resource the server holds (moto's /moto-api/reset)."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")  # noqa: S310
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - our own local server
            response.read()


def start_moto_server(port: int = 0) -> MotoServer:
    """Start moto's server on 127.0.0.1 in a daemon thread; port 0 lets the OS pick a free port."""
    # werkzeug logs every request (and the expected 400s of idempotent creates) to stderr; keep errors only.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    app = DynamoDbOneAtATime(DomainDispatcherApplication(create_backend_app))
    # Binds here, in the caller's thread: a taken port raises at once instead of hanging a start-up wait.
    return MotoServer(make_server("127.0.0.1", port, app, threaded=True, request_handler=MotoRequestHandler))


def client_kwargs(endpoint_url: str) -> dict[str, str]:
    """Keyword arguments for boto3.client(...) that talk to the local server with dummy credentials."""
    return {
        "endpoint_url": endpoint_url,
        "region_name": REGION,
        "aws_access_key_id": DUMMY_ACCESS_KEY_ID,
        "aws_secret_access_key": DUMMY_SECRET_ACCESS_KEY,
    }


def dynamodb_client(endpoint_url: str) -> DynamoDBClient:
    """A DynamoDB client for the local server."""
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id=DUMMY_ACCESS_KEY_ID,
        aws_secret_access_key=DUMMY_SECRET_ACCESS_KEY,
    )


def sqs_client(endpoint_url: str) -> SQSClient:
    """An SQS client for the local server."""
    return boto3.client(
        "sqs",
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id=DUMMY_ACCESS_KEY_ID,
        aws_secret_access_key=DUMMY_SECRET_ACCESS_KEY,
    )


def secretsmanager_client(endpoint_url: str) -> SecretsManagerClient:
    """A Secrets Manager client for the local server."""
    return boto3.client(
        "secretsmanager",
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id=DUMMY_ACCESS_KEY_ID,
        aws_secret_access_key=DUMMY_SECRET_ACCESS_KEY,
    )


# --------------------------------------------------------------------------------------------------------
# resources
# --------------------------------------------------------------------------------------------------------

# Properties of the LockTable resource the harness reproduces. Everything else raises, so a new property in
# template.yaml is either mirrored here or consciously listed as ignored.
_TABLE_CREATE_PROPERTIES = frozenset(
    {
        "KeySchema",
        "AttributeDefinitions",
        "BillingMode",
        "SSESpecification",
        "DeletionProtectionEnabled",
        "Tags",
    }
)
_TABLE_AFTER_CREATE_PROPERTIES = frozenset({"TimeToLiveSpecification", "PointInTimeRecoverySpecification"})
# TableName is replaced by the table_name argument (CloudFormation generates the real one).
_TABLE_IGNORED_PROPERTIES = frozenset({"TableName"})


def _table_create_kwargs(table_name: str, properties: dict[str, Any]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"TableName": table_name}
    for key in ("KeySchema", "AttributeDefinitions", "BillingMode", "DeletionProtectionEnabled", "Tags"):
        if key in properties:
            kwargs[key] = _literal(properties[key], f"{LOCK_TABLE_RESOURCE}.{key}")
    sse = _literal(properties.get("SSESpecification"), f"{LOCK_TABLE_RESOURCE}.SSESpecification")
    if sse:
        # CloudFormation says SSEEnabled/KMSMasterKeyId; the DynamoDB API says Enabled/KMSMasterKeyId.
        api_sse: dict[str, Any] = {"Enabled": bool(sse.get("SSEEnabled", False))}
        for key in ("SSEType", "KMSMasterKeyId"):
            if key in sse:
                api_sse[key] = sse[key]
        kwargs["SSESpecification"] = api_sse
    return kwargs


def create_lock_table(dynamodb_client: DynamoDBClient, table_name: str, template: dict[str, Any]) -> None:
    """Create (or leave in place) the lock table exactly as template.yaml's LockTable describes it."""
    properties = _resource_properties(template, LOCK_TABLE_RESOURCE, "AWS::DynamoDB::Table")
    _reject_unknown(
        properties,
        _TABLE_CREATE_PROPERTIES | _TABLE_AFTER_CREATE_PROPERTIES | _TABLE_IGNORED_PROPERTIES,
        LOCK_TABLE_RESOURCE,
    )
    with contextlib.suppress(dynamodb_client.exceptions.ResourceInUseException):  # exists: idempotent
        dynamodb_client.create_table(**_table_create_kwargs(table_name, properties))
    dynamodb_client.get_waiter("table_exists").wait(TableName=table_name, WaiterConfig={"Delay": 1})

    ttl = _literal(
        properties.get("TimeToLiveSpecification"), f"{LOCK_TABLE_RESOURCE}.TimeToLiveSpecification"
    )
    if ttl and ttl.get("Enabled"):
        current = dynamodb_client.describe_time_to_live(TableName=table_name)["TimeToLiveDescription"]
        already = current.get("TimeToLiveStatus") == "ENABLED" and current.get("AttributeName") == ttl.get(
            "AttributeName"
        )
        if not already:  # DynamoDB rejects enabling TTL twice
            dynamodb_client.update_time_to_live(
                TableName=table_name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": str(ttl["AttributeName"])},
            )

    pitr = _literal(
        properties.get("PointInTimeRecoverySpecification"),
        f"{LOCK_TABLE_RESOURCE}.PointInTimeRecoverySpecification",
    )
    if pitr and pitr.get("PointInTimeRecoveryEnabled"):
        dynamodb_client.update_continuous_backups(
            TableName=table_name,
            PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
        )


# CloudFormation AWS::SQS::Queue properties that are SetQueueAttributes attributes of the same name.
_QUEUE_ATTRIBUTE_PROPERTIES = frozenset(
    {
        "ContentBasedDeduplication",
        "DelaySeconds",
        "FifoQueue",
        "KmsDataKeyReusePeriodSeconds",
        "KmsMasterKeyId",
        "MaximumMessageSize",
        "MessageRetentionPeriod",
        "ReceiveMessageWaitTimeSeconds",
        "SqsManagedSseEnabled",
        "VisibilityTimeout",
    }
)
# QueueName is replaced by the queue_name argument (CloudFormation generates the real one).
_QUEUE_IGNORED_PROPERTIES = frozenset({"QueueName"})


def _attribute_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def create_dead_letter_queue(sqs_client: SQSClient, queue_name: str, template: dict[str, Any]) -> str:
    """Create (or find) the queue with template.yaml's DeadLetterQueue attributes; return its URL."""
    properties = _resource_properties(template, DEAD_LETTER_QUEUE_RESOURCE, "AWS::SQS::Queue")
    _reject_unknown(
        properties, _QUEUE_ATTRIBUTE_PROPERTIES | _QUEUE_IGNORED_PROPERTIES, DEAD_LETTER_QUEUE_RESOURCE
    )
    attributes = {
        key: _attribute_value(_literal(properties[key], f"{DEAD_LETTER_QUEUE_RESOURCE}.{key}"))
        for key in sorted(_QUEUE_ATTRIBUTE_PROPERTIES & set(properties))
    }
    # CreateQueue with identical attributes returns the existing queue, so this is idempotent.
    response = sqs_client.create_queue(
        QueueName=queue_name, Attributes=cast("dict[QueueAttributeNameType, str]", attributes)
    )
    return response["QueueUrl"]


def create_secret(secretsmanager_client: SecretsManagerClient, name: str, value: str) -> str:
    """Create the secret, or store value as its new current version if it exists; return its ARN."""
    try:
        return secretsmanager_client.create_secret(Name=name, SecretString=value)["ARN"]
    except secretsmanager_client.exceptions.ResourceExistsException:
        return secretsmanager_client.put_secret_value(SecretId=name, SecretString=value)["ARN"]


@dataclass(frozen=True)
class LocalStack:
    """Where the locally provisioned resources are."""

    lock_table_name: str
    queue_url: str
    endpoint_url: str


def provision_local_stack(
    endpoint_url: str,
    *,
    lock_table_name: str = DEFAULT_LOCK_TABLE_NAME,
    queue_name: str = DEFAULT_QUEUE_NAME,
    template_path: str | Path = "template.yaml",
) -> LocalStack:
    """Create the lock table and dead-letter queue from template.yaml on the server at endpoint_url.

    Safe to call again: existing resources are kept (their items and messages too).
    """
    template = load_template(template_path)
    create_lock_table(dynamodb_client(endpoint_url), lock_table_name, template)
    queue_url = create_dead_letter_queue(sqs_client(endpoint_url), queue_name, template)
    return LocalStack(lock_table_name=lock_table_name, queue_url=queue_url, endpoint_url=endpoint_url)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """`python -m harness.local.aws_local --port N`: this moto server in the foreground, until SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m harness.local.aws_local",
        description="moto's server, with DynamoDB requests applied one at a time as DynamoDB would.",
    )
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args(argv)
    server = start_moto_server(args.port)
    signal.signal(signal.SIGTERM, _interrupt)
    print(f"moto listening on {server.endpoint_url}", flush=True)
    try:
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
