"""The CLI's configuration: the function's own environment variables, optionally completed from a stack.

The CLI needs no Stripe key, so it does not use `donation_processor.config.load_settings` (which requires
one); it reads the variables it needs through the same setting declarations, so each default and rule is
written once, in `donation_processor.config`. Every error names the variable.
Secrets (the MongoDB URI) are held here but never printed: `__repr__` leaves them out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from donation_processor import config as settings
from donation_processor.adapters.pause_switch import CACHE_SECONDS as PAUSE_CACHE_SECONDS
from donation_processor.exceptions import ConfigError
from donations_cli.errors import UsageError
from donations_cli.mongodb_uri import port_problem

__all__ = ["PAUSE_CACHE_SECONDS", "CliConfig", "StackInfo", "load_cli_config"]


# Where each setting comes from: environment variable, then the stack's output or parameter.
_STACK_OUTPUTS = {
    "LOCK_TABLE_NAME": "LockTableName",
    "DEAD_LETTER_QUEUE_URL": "DeadLetterQueueUrl",
    "PAUSE_PARAMETER_NAME": "PauseParameterName",
}
_STACK_PARAMETERS = {"MONGODB_SECRET_NAME": "MongoDbSecretName", "MONGODB_DATABASE": "MongoDbDatabase"}


@dataclass(frozen=True)
class StackInfo:
    """A deployed stack's Outputs and Parameters (describe_stacks), by key."""

    name: str
    outputs: Mapping[str, str] = field(default_factory=dict)
    parameters: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CliConfig:
    mongodb_uri: str | None
    mongodb_secret_name: str | None
    mongodb_database: str
    lock_table_name: str | None
    dead_letter_queue_url: str | None
    pause_parameter_name: str | None
    lock_name: str = settings.LOCK_NAME.default
    overdue_after_hours: int = settings.OVERDUE_AFTER_HOURS.default
    stack_name: str | None = None

    def __repr__(self) -> str:
        # The URI may carry a password: never let it reach a terminal or a log through repr().
        return (
            f"CliConfig(mongodb_database={self.mongodb_database!r}, "
            f"mongodb_source={self.mongodb_source!r}, lock_table_name={self.lock_table_name!r}, "
            f"dead_letter_queue_url={self.dead_letter_queue_url!r}, "
            f"pause_parameter_name={self.pause_parameter_name!r}, stack_name={self.stack_name!r})"
        )

    @property
    def mongodb_source(self) -> str:
        """Where the MongoDB URI comes from, safe to print."""
        if self.mongodb_secret_name is not None:
            return f"secret {self.mongodb_secret_name}"
        return "MONGODB_URI"

    def _require(self, value: str | None, variable: str) -> str:
        if value is None:
            output = _STACK_OUTPUTS.get(variable)
            hint = f" (or --stack NAME with the stack output {output})" if output else ""
            raise UsageError(f"{variable} is required for this command{hint}")
        return value

    @property
    def lock_table(self) -> str:
        return self._require(self.lock_table_name, "LOCK_TABLE_NAME")

    @property
    def queue_url(self) -> str:
        return self._require(self.dead_letter_queue_url, "DEAD_LETTER_QUEUE_URL")

    @property
    def pause_parameter(self) -> str:
        return self._require(self.pause_parameter_name, "PAUSE_PARAMETER_NAME")


def _value(env: Mapping[str, str], stack: StackInfo | None, variable: str) -> str | None:
    """The environment wins; a stack given with --stack fills in what the environment leaves unset."""
    value = env.get(variable, "").strip()
    if value:
        return value
    if stack is None:
        return None
    if variable in _STACK_OUTPUTS:
        value = stack.outputs.get(_STACK_OUTPUTS[variable], "").strip()
    elif variable in _STACK_PARAMETERS:
        value = stack.parameters.get(_STACK_PARAMETERS[variable], "").strip()
    return value or None


def _read(setting: Any, value: str | None) -> Any:
    """The engine's own reading of one variable (its default, pattern or bounds), as a usage error."""
    try:
        return setting.read({setting.env: value} if value is not None else {})
    except ConfigError as error:
        raise UsageError(str(error)) from None


def load_cli_config(env: Mapping[str, str], stack: StackInfo | None = None) -> CliConfig:
    """Read and check what the CLI needs; UsageError names the first bad variable."""
    uri = env.get("MONGODB_URI", "").strip() or None
    secret_name = env.get("MONGODB_SECRET_NAME", "").strip() or None
    if uri and secret_name:
        raise UsageError("set either MONGODB_URI or MONGODB_SECRET_NAME, not both")
    if uri is None and secret_name is None:
        secret_name = _value({}, stack, "MONGODB_SECRET_NAME")
    _read(settings.MONGODB_URI, uri)
    problem = port_problem(uri) if uri is not None else None
    if problem is not None:
        raise UsageError(f"MONGODB_URI: {problem}")
    _read(settings.MONGODB_SECRET_NAME, secret_name)
    database: str = _read(settings.MONGODB_DATABASE, _value(env, stack, "MONGODB_DATABASE"))
    queue_url = _value(env, stack, "DEAD_LETTER_QUEUE_URL")
    if queue_url is not None and not queue_url.startswith(("http://", "https://")):
        raise UsageError("DEAD_LETTER_QUEUE_URL must be an SQS queue URL (https://…)")
    return CliConfig(
        mongodb_uri=uri,
        mongodb_secret_name=secret_name,
        mongodb_database=database,
        lock_table_name=_value(env, stack, "LOCK_TABLE_NAME"),
        dead_letter_queue_url=queue_url,
        pause_parameter_name=_value(env, stack, "PAUSE_PARAMETER_NAME"),
        lock_name=_read(settings.LOCK_NAME, env.get("LOCK_NAME", "").strip() or None),
        overdue_after_hours=_read(settings.OVERDUE_AFTER_HOURS, env.get("OVERDUE_AFTER_HOURS")),
        stack_name=stack.name if stack else None,
    )
