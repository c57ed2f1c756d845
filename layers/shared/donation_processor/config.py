"""Typed configuration, read from the environment and validated once per container."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from donation_processor.catch_up import MissedPeriods
from donation_processor.exceptions import ConfigError

DEFAULT_MONGODB_URI = "mongomock://localhost"
_NAME_PATTERN = re.compile(r"[A-Za-z0-9_.\-/+=@]{1,512}")


@dataclass(frozen=True)
class Settings:
    """Everything the job needs to know about its environment. Secrets are names, never values, in AWS."""

    mongodb_uri: str | None
    mongodb_secret_name: str | None
    mongodb_database: str
    stripe_secret_key: str | None
    stripe_secret_name: str | None
    stripe_api_base: str | None
    lock_table_name: str
    dead_letter_queue_url: str
    batch_size: int = 50
    max_concurrency: int = 128
    stripe_max_rps: float = 80.0
    max_attempts: int = 4
    dunning_schedule_days: tuple[int, ...] = (1, 3, 7)
    time_margin_seconds: int = 90
    circuit_breaker_threshold: int = 5
    circuit_cool_down_seconds: float = 1.0
    circuit_outage_window_seconds: int = 120
    systemic_failure_threshold: int = 3
    stripe_timeout_seconds: float = 20.0
    stripe_retry_attempts: int = 4
    claim_lease_seconds: int = 900
    lock_lease_seconds: int = 120
    lock_name: str = "scheduled-donations"
    pause_parameter_name: str | None = None
    donor_event_bus_name: str | None = None
    overdue_after_hours: int = 24
    missed_periods: MissedPeriods = MissedPeriods.LATEST
    catch_up_min_interval_hours: int = 24

    def __repr__(self) -> str:
        # Never let a secret reach a log line through repr().
        return (
            f"Settings(mongodb_database={self.mongodb_database!r}, lock_table_name={self.lock_table_name!r}, "
            f"batch_size={self.batch_size}, max_concurrency={self.max_concurrency}, "
            f"stripe_max_rps={self.stripe_max_rps}, max_attempts={self.max_attempts})"
        )


def _optional(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _required(env: Mapping[str, str], name: str) -> str:
    value = _optional(env, name)
    if value is None:
        raise ConfigError(f"{name} is required")
    return value


def _int(env: Mapping[str, str], name: str, default: int, minimum: int, maximum: int) -> int:
    raw = _optional(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name} must be between {minimum} and {maximum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, minimum: float, maximum: float) -> float:
    raw = _optional(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name} must be between {minimum} and {maximum}, got {value}")
    return value


def _days(env: Mapping[str, str], name: str, default: tuple[int, ...]) -> tuple[int, ...]:
    raw = _optional(env, name)
    if raw is None:
        return default
    try:
        days = tuple(int(part) for part in raw.split(","))
    except ValueError:
        raise ConfigError(f"{name} must be comma-separated whole days, e.g. 1,3,7; got {raw!r}") from None
    if not days or any(day < 1 or day > 60 for day in days):
        raise ConfigError(f"{name} days must each be between 1 and 60, got {raw!r}")
    return days


def _missed_periods(env: Mapping[str, str]) -> MissedPeriods:
    raw = _optional(env, "MISSED_PERIODS")
    if raw is None:
        return MissedPeriods.LATEST
    try:
        return MissedPeriods(raw)
    except ValueError:
        allowed = " or ".join(policy.value for policy in MissedPeriods)
        raise ConfigError(f"MISSED_PERIODS must be {allowed}, got {raw!r}") from None


def _secret_source(
    env: Mapping[str, str], value_name: str, secret_name: str
) -> tuple[str | None, str | None]:
    value, name = _optional(env, value_name), _optional(env, secret_name)
    if value and name:
        raise ConfigError(f"set either {value_name} or {secret_name}, not both")
    if name is not None and not _NAME_PATTERN.fullmatch(name):
        raise ConfigError(f"{secret_name} is not a valid Secrets Manager name")
    return value, name


def load_settings(env: Mapping[str, str]) -> Settings:
    """Read and validate every setting; the first problem raises ConfigError naming the variable."""
    mongodb_uri, mongodb_secret_name = _secret_source(env, "MONGODB_URI", "MONGODB_SECRET_NAME")
    if mongodb_uri is None and mongodb_secret_name is None:
        mongodb_uri = DEFAULT_MONGODB_URI
    if mongodb_uri is not None and not mongodb_uri.startswith(
        ("mongodb://", "mongodb+srv://", "mongomock://")
    ):
        raise ConfigError("MONGODB_URI must start with mongodb://, mongodb+srv:// or mongomock://")
    stripe_key, stripe_secret_name = _secret_source(env, "STRIPE_SECRET_KEY", "STRIPE_SECRET_NAME")
    if stripe_key is None and stripe_secret_name is None:
        raise ConfigError("STRIPE_SECRET_KEY or STRIPE_SECRET_NAME is required")
    if stripe_key is not None and not stripe_key.startswith(("sk_", "rk_")):
        raise ConfigError("STRIPE_SECRET_KEY must be a Stripe secret or restricted key (sk_… or rk_…)")
    api_base = _optional(env, "STRIPE_API_BASE")
    if api_base is not None and not api_base.startswith(("http://", "https://")):
        raise ConfigError("STRIPE_API_BASE must be an http(s) URL")
    database = _optional(env, "MONGODB_DATABASE") or "donations"
    if not re.fullmatch(r"[A-Za-z0-9_\-]{1,63}", database):
        raise ConfigError("MONGODB_DATABASE must be 1-63 letters, digits, '_' or '-'")
    queue_url = _required(env, "DEAD_LETTER_QUEUE_URL")
    if not queue_url.startswith(("http://", "https://")):
        raise ConfigError("DEAD_LETTER_QUEUE_URL must be an SQS queue URL")
    return Settings(
        mongodb_uri=mongodb_uri,
        mongodb_secret_name=mongodb_secret_name,
        mongodb_database=database,
        stripe_secret_key=stripe_key,
        stripe_secret_name=stripe_secret_name,
        stripe_api_base=api_base,
        lock_table_name=_required(env, "LOCK_TABLE_NAME"),
        dead_letter_queue_url=queue_url,
        batch_size=_int(env, "BATCH_SIZE", 50, 1, 1000),
        max_concurrency=_int(env, "MAX_CONCURRENCY", 128, 1, 256),
        stripe_max_rps=_float(env, "STRIPE_MAX_RPS", 80.0, 0.1, 10000.0),
        max_attempts=_int(env, "MAX_ATTEMPTS", 4, 1, 20),
        dunning_schedule_days=_days(env, "DUNNING_SCHEDULE_DAYS", (1, 3, 7)),
        time_margin_seconds=_int(env, "TIME_MARGIN_SECONDS", 90, 5, 600),
        circuit_breaker_threshold=_int(env, "CIRCUIT_BREAKER_THRESHOLD", 5, 1, 1000),
        circuit_cool_down_seconds=_float(env, "CIRCUIT_COOL_DOWN_SECONDS", 1.0, 0.05, 60.0),
        circuit_outage_window_seconds=_int(env, "CIRCUIT_OUTAGE_WINDOW_SECONDS", 120, 1, 900),
        systemic_failure_threshold=_int(env, "SYSTEMIC_FAILURE_THRESHOLD", 3, 2, 1000),
        stripe_timeout_seconds=_float(env, "STRIPE_TIMEOUT_SECONDS", 20.0, 0.5, 80.0),
        stripe_retry_attempts=_int(env, "STRIPE_RETRY_ATTEMPTS", 4, 0, 10),
        claim_lease_seconds=_int(env, "CLAIM_LEASE_SECONDS", 900, 60, 86400),
        lock_lease_seconds=_int(env, "LOCK_LEASE_SECONDS", 120, 10, 3600),
        lock_name=_optional(env, "LOCK_NAME") or "scheduled-donations",
        pause_parameter_name=_optional(env, "PAUSE_PARAMETER_NAME"),
        donor_event_bus_name=_optional(env, "DONOR_EVENT_BUS_NAME"),
        overdue_after_hours=_int(env, "OVERDUE_AFTER_HOURS", 24, 1, 24 * 30),
        missed_periods=_missed_periods(env),
        catch_up_min_interval_hours=_int(env, "CATCH_UP_MIN_INTERVAL_HOURS", 24, 1, 24 * 30),
    )
