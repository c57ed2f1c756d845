"""AWS clients and the MongoDB database, opened lazily, with SDK errors turned into one-line messages.

boto3 honours AWS_ENDPOINT_URL (moto locally) and the usual credential chain; --profile and --region pick
a named profile or region. The MongoDB URI is read from MONGODB_URI or from Secrets Manager and never
printed; MongoDB errors name the hosts (from the URI, credentials stripped) and the error's type, never the
driver's text.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
)
from pymongo.errors import PyMongoError

from donation_processor.adapters.mongo_connection import get_database
from donation_processor.exceptions import ConfigError, StoreError
from donations_cli.config import CliConfig, StackInfo
from donations_cli.errors import OperationalError, UsageError
from donations_cli.mongodb_uri import port_problem, where

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_sqs.client import SQSClient
    from mypy_boto3_ssm.client import SSMClient
    from pymongo.database import Database

# Long enough for a 1-second long poll, short enough that an unreachable endpoint fails fast.
AWS_CLIENT_CONFIG = Config(
    connect_timeout=5, read_timeout=30, retries={"max_attempts": 3, "mode": "standard"}
)


IN_MEMORY_REFUSED = (
    "{source} is a mongomock:// URI: a database in memory that lives only as long as one process, so every "
    "donations command would start with an empty one (seed 500, then status, shows 0). Run `make local-up` "
    "and use the mongodb://127.0.0.1:PORT URI it writes to .local/env, or set MONGODB_URI to any MongoDB"
)


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", "Unknown"))


@contextlib.contextmanager
def aws_errors(action: str) -> Iterator[None]:
    """Turn an SDK error into a UsageError (credentials, region, profile) or an OperationalError."""
    try:
        yield
    except (NoCredentialsError, PartialCredentialsError) as error:
        raise UsageError(f"{action}: no usable AWS credentials ({type(error).__name__})") from error
    except NoRegionError as error:
        raise UsageError(
            f"{action}: no AWS region; set AWS_REGION (or AWS_DEFAULT_REGION) or pass --region"
        ) from error
    except ProfileNotFound as error:
        raise UsageError(f"{action}: {error}") from error
    except ClientError as error:
        message = str(error.response.get("Error", {}).get("Message", ""))[:200]
        raise OperationalError(f"{action} failed: {error_code(error)}: {message}".rstrip(": ")) from error
    except BotoCoreError as error:
        raise OperationalError(f"{action} failed: {type(error).__name__}: {error}") from error


@contextlib.contextmanager
def mongo_errors(action: str, server: str = "MongoDB") -> Iterator[None]:
    """Turn a store or driver error into an OperationalError naming `server` (see mongodb_uri.where)."""
    try:
        yield
    except StoreError as error:
        # The store's own message: what failed and the error's type, never its text.
        raise OperationalError(f"{server}: {action}: {error}") from error
    except PyMongoError as error:
        # The type is enough to act on; the driver's text is not ours to vouch for.
        raise OperationalError(f"{server}: {action} failed: {type(error).__name__}") from error


class Connections:
    """Everything a command talks to, opened on first use and reused."""

    def __init__(
        self,
        config: CliConfig,
        *,
        profile: str | None = None,
        region: str | None = None,
        shared_process_database: bool = False,
    ) -> None:
        self.config = config
        self._in_memory_allowed = shared_process_database
        if config.mongodb_uri is not None:
            self._usable(config.mongodb_uri)  # refuse before any command prints a thing
        self._profile = profile
        self._region = region
        self._session: boto3.session.Session | None = None
        self._clients: dict[str, Any] = {}
        self._database: Database[Any] | None = None
        self._server = "MongoDB"

    @property
    def session(self) -> boto3.session.Session:
        if self._session is None:
            with aws_errors("opening the AWS session"):
                self._session = boto3.session.Session(profile_name=self._profile, region_name=self._region)
        return self._session

    def client(self, service: str) -> Any:
        if service not in self._clients:
            with aws_errors(f"creating the {service} client"):
                self._clients[service] = self.session.client(service, config=AWS_CLIENT_CONFIG)  # type: ignore[call-overload]
        return self._clients[service]

    @property
    def sqs(self) -> SQSClient:
        client: SQSClient = self.client("sqs")
        return client

    @property
    def ssm(self) -> SSMClient:
        client: SSMClient = self.client("ssm")
        return client

    @property
    def dynamodb(self) -> DynamoDBClient:
        client: DynamoDBClient = self.client("dynamodb")
        return client

    def mongodb_uri(self) -> str:
        """The URI, from MONGODB_URI or Secrets Manager. Never print it."""
        config = self.config
        if config.mongodb_uri is not None:
            return self._usable(config.mongodb_uri)
        if config.mongodb_secret_name is None:
            raise UsageError(
                "MONGODB_URI or MONGODB_SECRET_NAME is required (or --stack with MongoDbSecretName)"
            )
        name = config.mongodb_secret_name
        with aws_errors(f"reading secret {name!r}"):
            answer = self.client("secretsmanager").get_secret_value(SecretId=name)
        value = answer.get("SecretString")
        if not isinstance(value, str) or not value.strip():
            raise OperationalError(f"secret {name!r} is empty or not a string")
        uri = value.strip()
        if not uri.startswith(("mongodb://", "mongodb+srv://", "mongomock://")):
            raise UsageError(f"secret {name!r} does not hold a MongoDB URI")
        problem = port_problem(uri)
        if problem is not None:
            raise UsageError(f"secret {name!r}: the MongoDB URI's {problem}")
        return self._usable(uri)

    def _usable(self, uri: str) -> str:
        if uri.startswith("mongomock://") and not self._in_memory_allowed:
            raise UsageError(IN_MEMORY_REFUSED.format(source=self.config.mongodb_source))
        self._server = where(uri)
        return uri

    def mongo_errors(self, action: str) -> contextlib.AbstractContextManager[None]:
        """`mongo_errors` naming this connection's hosts once the URI is known."""
        return mongo_errors(action, self._server)

    @property
    def database(self) -> Database[Any]:
        if self._database is None:
            uri = self.mongodb_uri()
            try:
                with self.mongo_errors("connecting"):
                    self._database = get_database(uri, self.config.mongodb_database, pool_size=8)
            except ConfigError as error:
                raise UsageError(str(error)) from error
            except ValueError as error:
                # The driver's own check of an option the URI spells wrong; its text may quote the URI.
                raise UsageError(f"{self.config.mongodb_source}: the driver refused the URI") from error
        return self._database


def describe_stack(name: str, *, profile: str | None, region: str | None) -> StackInfo:
    """A stack's Outputs and Parameters: where the deployed lock table, queue and switch are."""
    with aws_errors(f"describing stack {name!r}"):
        session = boto3.session.Session(profile_name=profile, region_name=region)
        client: Any = session.client("cloudformation", config=AWS_CLIENT_CONFIG)
        stacks = client.describe_stacks(StackName=name).get("Stacks", [])
    if not stacks:
        raise UsageError(f"stack {name!r} not found")
    stack = stacks[0]
    outputs = {
        str(item["OutputKey"]): str(item.get("OutputValue", ""))
        for item in stack.get("Outputs", [])
        if "OutputKey" in item
    }
    parameters = {
        str(item["ParameterKey"]): str(item.get("ParameterValue", ""))
        for item in stack.get("Parameters", [])
        if "ParameterKey" in item
    }
    return StackInfo(name=name, outputs=outputs, parameters=parameters)
