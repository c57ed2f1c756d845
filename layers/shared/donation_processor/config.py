"""Typed configuration, read from the environment and validated once per container.

Each setting is declared once, in the table below: its variable, default, allowed range and meaning.
`Settings` takes its defaults from the table, `load_settings` validates against it, and
docs/CONFIGURATION.md is rendered from it (tests/docs/test_configuration_doc.py); tests/template checks
that template.yaml's parameters carry the same defaults and bounds.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from donation_processor.catch_up import MissedPeriods
from donation_processor.exceptions import ConfigError

# ---------------------------------------------------------------------------------------------------------
# Kinds of setting: each knows how to read and check its variable, and how to describe itself.
# ---------------------------------------------------------------------------------------------------------


def _raw(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


@dataclass(frozen=True, kw_only=True)
class Setting:
    """One environment variable: its name and what it means (one line)."""

    env: str
    meaning: str

    def default_text(self) -> str:
        """The default, as the documentation shows it."""
        raise NotImplementedError

    def allowed_text(self) -> str:
        """The allowed values, as the documentation shows them."""
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True)
class _TextRule(Setting):
    """A string; `pattern` (matched in full) and its plain-words `rule` say what is allowed."""

    pattern: str | None = None
    rule: str | None = None

    def _given(self, env: Mapping[str, str]) -> str | None:
        value = _raw(env, self.env)
        if (
            value is not None
            and self.pattern is not None
            and not re.fullmatch(self.pattern, value, re.DOTALL)
        ):
            # The rule, never the value: the value may be a secret.
            raise ConfigError(f"{self.env} must be {self.rule}")
        return value

    def allowed_text(self) -> str:
        return self.rule or "any"


@dataclass(frozen=True, kw_only=True)
class TextSetting(_TextRule):
    """A string with a default."""

    default: str

    def read(self, env: Mapping[str, str]) -> str:
        value = self._given(env)
        return self.default if value is None else value

    def default_text(self) -> str:
        return f"`{self.default}`"


@dataclass(frozen=True, kw_only=True)
class OptionalTextSetting(_TextRule):
    """A string that may be unset (None)."""

    def read(self, env: Mapping[str, str]) -> str | None:
        return self._given(env)

    def default_text(self) -> str:
        return "unset"


@dataclass(frozen=True, kw_only=True)
class RequiredTextSetting(_TextRule):
    """A string that must be set."""

    def read(self, env: Mapping[str, str]) -> str:
        value = self._given(env)
        if value is None:
            raise ConfigError(f"{self.env} is required")
        return value

    def default_text(self) -> str:
        return "required"


def _bounded[N: (int, float)](
    name: str, raw: str, parse: Callable[[str], N], kind: str, low: N, high: N
) -> N:
    """raw parsed as a number within [low, high]; ConfigError names the variable and what is wrong."""
    try:
        value = parse(raw)
    except ValueError:
        raise ConfigError(f"{name} must be {kind}, got {raw!r}") from None
    if not low <= value <= high:  # also refuses nan
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
    return value


@dataclass(frozen=True, kw_only=True)
class IntSetting(Setting):
    default: int
    minimum: int
    maximum: int

    def read(self, env: Mapping[str, str]) -> int:
        raw = _raw(env, self.env)
        if raw is None:
            return self.default
        return _bounded(self.env, raw, int, "an integer", self.minimum, self.maximum)

    def default_text(self) -> str:
        return f"`{self.default}`"

    def allowed_text(self) -> str:
        return f"{self.minimum} to {self.maximum}"


@dataclass(frozen=True, kw_only=True)
class FloatSetting(Setting):
    default: float
    minimum: float
    maximum: float

    def read(self, env: Mapping[str, str]) -> float:
        raw = _raw(env, self.env)
        if raw is None:
            return self.default
        return _bounded(self.env, raw, float, "a number", self.minimum, self.maximum)

    def default_text(self) -> str:
        return f"`{self.default:g}`"

    def allowed_text(self) -> str:
        return f"{self.minimum:g} to {self.maximum:g}"


@dataclass(frozen=True, kw_only=True)
class DaysSetting(Setting):
    """Comma-separated whole days, each within the bounds."""

    default: tuple[int, ...]
    minimum: int
    maximum: int

    def read(self, env: Mapping[str, str]) -> tuple[int, ...]:
        raw = _raw(env, self.env)
        if raw is None:
            return self.default
        try:
            days = tuple(int(part) for part in raw.split(","))
        except ValueError:
            raise ConfigError(
                f"{self.env} must be comma-separated whole days, e.g. 1,3,7; got {raw!r}"
            ) from None
        if not days or any(not self.minimum <= day <= self.maximum for day in days):
            raise ConfigError(
                f"{self.env} days must each be between {self.minimum} and {self.maximum}, got {raw!r}"
            )
        return days

    def text(self) -> str:
        """The default as the variable spells it."""
        return ",".join(str(day) for day in self.default)

    def default_text(self) -> str:
        return f"`{self.text()}`"

    def allowed_text(self) -> str:
        return f"comma-separated, each {self.minimum} to {self.maximum}"


@dataclass(frozen=True, kw_only=True)
class ChoiceSetting[E: StrEnum](Setting):
    """One value of a StrEnum, spelled exactly."""

    default: E

    def choices(self) -> tuple[str, ...]:
        return tuple(choice.value for choice in type(self.default))

    def read(self, env: Mapping[str, str]) -> E:
        raw = _raw(env, self.env)
        if raw is None:
            return self.default
        try:
            return type(self.default)(raw)
        except ValueError:
            raise ConfigError(f"{self.env} must be {' or '.join(self.choices())}, got {raw!r}") from None

    def default_text(self) -> str:
        return f"`{self.default.value}`"

    def allowed_text(self) -> str:
        return " or ".join(f"`{choice}`" for choice in self.choices())


# ---------------------------------------------------------------------------------------------------------
# The settings: the one place each default and range is written.
# ---------------------------------------------------------------------------------------------------------

_SM_NAME_PATTERN = r"[A-Za-z0-9_.\-/+=@]{1,512}"
_SM_NAME_RULE = "a Secrets Manager name: 1-512 letters, digits or _.-/+=@"

MONGODB_SECRET_NAME = OptionalTextSetting(
    env="MONGODB_SECRET_NAME",
    pattern=_SM_NAME_PATTERN,
    rule=_SM_NAME_RULE,
    meaning="Secrets Manager secret holding the MongoDB URI (a plain string). Set this or MONGODB_URI.",
)
MONGODB_URI = TextSetting(
    env="MONGODB_URI",
    default="mongomock://localhost",
    pattern=r"(mongodb|mongodb\+srv|mongomock)://.*",
    rule="a mongodb://, mongodb+srv:// or mongomock:// URI",
    meaning="The MongoDB URI itself, for local use; the default applies if MONGODB_SECRET_NAME is unset.",
)
MONGODB_DATABASE = TextSetting(
    env="MONGODB_DATABASE",
    default="donations",
    pattern=r"[A-Za-z0-9_\-]{1,63}",
    rule="1-63 letters, digits, '_' or '-'",
    meaning="Database holding scheduled_donations and donations.",
)
STRIPE_SECRET_NAME = OptionalTextSetting(
    env="STRIPE_SECRET_NAME",
    pattern=_SM_NAME_PATTERN,
    rule=_SM_NAME_RULE,
    meaning=(
        "Secrets Manager secret holding the Stripe secret (sk_) or restricted (rk_) key."
        " This or STRIPE_SECRET_KEY is required."
    ),
)
STRIPE_SECRET_KEY = OptionalTextSetting(
    env="STRIPE_SECRET_KEY",
    pattern=r"(sk|rk)_.*",
    rule="a Stripe secret or restricted key (sk_… or rk_…)",
    meaning="The Stripe key itself, for local use.",
)
STRIPE_API_BASE = OptionalTextSetting(
    env="STRIPE_API_BASE",
    pattern=r"https?://.*",
    rule="an http(s) URL",
    meaning="Another Stripe API base URL (e.g. the local Stripe server); unset: Stripe's own.",
)
LOCK_TABLE_NAME = RequiredTextSetting(env="LOCK_TABLE_NAME", meaning="DynamoDB table of the run lock.")
LOCK_NAME = TextSetting(
    env="LOCK_NAME",
    default="scheduled-donations",
    meaning="lockId of the lock item (the CLI reads it too); runs under different names are not serialised.",
)
DEAD_LETTER_QUEUE_URL = RequiredTextSetting(
    env="DEAD_LETTER_QUEUE_URL",
    pattern=r"https?://.*",
    rule="an SQS queue URL",
    meaning="SQS queue that receives dead letters.",
)
PAUSE_PARAMETER_NAME = OptionalTextSetting(
    env="PAUSE_PARAMETER_NAME",
    meaning="SSM parameter holding running or paused; unset: no pause switch.",
)
DONOR_EVENT_BUS_NAME = OptionalTextSetting(
    env="DONOR_EVENT_BUS_NAME",
    meaning="EventBridge bus for donor events; unset: no donor events.",
)
BATCH_SIZE = IntSetting(
    env="BATCH_SIZE", default=50, minimum=1, maximum=1000, meaning="Donations claimed per MongoDB claim."
)
MAX_CONCURRENCY = IntSetting(
    env="MAX_CONCURRENCY",
    default=128,
    minimum=1,
    maximum=256,
    meaning="Ceiling on charges in flight; below it, the number in flight follows Little's law.",
)
STRIPE_MAX_RPS = FloatSetting(
    env="STRIPE_MAX_RPS",
    default=80.0,
    minimum=0.1,
    maximum=10000.0,
    meaning="Ceiling of the shared, adaptive Stripe request rate (requests per second).",
)
MAX_ATTEMPTS = IntSetting(
    env="MAX_ATTEMPTS",
    default=4,
    minimum=1,
    maximum=20,
    meaning="Attempts per period before a soft-declined donation is stopped.",
)
DUNNING_SCHEDULE_DAYS = DaysSetting(
    env="DUNNING_SCHEDULE_DAYS",
    default=(1, 3, 7),
    minimum=1,
    maximum=60,
    meaning="Days to wait after attempt n fails; the last entry repeats.",
)
TIME_MARGIN_SECONDS = IntSetting(
    env="TIME_MARGIN_SECONDS",
    default=90,
    minimum=5,
    maximum=600,
    meaning="Stop claiming when less time than this remains before the Lambda timeout.",
)
CIRCUIT_BREAKER_THRESHOLD = IntSetting(
    env="CIRCUIT_BREAKER_THRESHOLD",
    default=5,
    minimum=1,
    maximum=1000,
    meaning="Consecutive Stripe availability failures (no answer, 5xx) that open the circuit breaker.",
)
CIRCUIT_COOL_DOWN_SECONDS = FloatSetting(
    env="CIRCUIT_COOL_DOWN_SECONDS",
    default=1.0,
    minimum=0.05,
    maximum=60.0,
    meaning="An open breaker's wait before one probe request; doubles after each failed probe, up to 30 s.",
)
CIRCUIT_OUTAGE_WINDOW_SECONDS = IntSetting(
    env="CIRCUIT_OUTAGE_WINDOW_SECONDS",
    default=120,
    minimum=1,
    maximum=900,
    meaning="How long the breaker may stay open before the run ends as circuit_open, the rest still due.",
)
SYSTEMIC_FAILURE_THRESHOLD = IntSetting(
    env="SYSTEMIC_FAILURE_THRESHOLD",
    default=3,
    minimum=2,
    maximum=1000,
    meaning="The same non-card Stripe error on this many donations in a row halts the run as systemic_halt.",
)
STRIPE_TIMEOUT_SECONDS = FloatSetting(
    env="STRIPE_TIMEOUT_SECONDS",
    default=20.0,
    minimum=0.5,
    maximum=80.0,
    meaning="HTTP timeout of one Stripe request.",
)
STRIPE_RETRY_ATTEMPTS = IntSetting(
    env="STRIPE_RETRY_ATTEMPTS",
    default=4,
    minimum=0,
    maximum=10,
    meaning="In-run retries (same key) after the first Stripe attempt of a transient failure.",
)
CLAIM_LEASE_SECONDS = IntSetting(
    env="CLAIM_LEASE_SECONDS",
    default=900,
    minimum=60,
    maximum=86400,
    meaning="How long a claim on a donation blocks other runs.",
)
LOCK_LEASE_SECONDS = IntSetting(
    env="LOCK_LEASE_SECONDS",
    default=120,
    minimum=10,
    maximum=3600,
    meaning="Lease of the run lock, renewed every third of it; a run finding the lock held waits up to one.",
)
OVERDUE_AFTER_HOURS = IntSetting(
    env="OVERDUE_AFTER_HOURS",
    default=24,
    minimum=1,
    maximum=24 * 30,
    meaning="An active donation due for longer than this counts as overdue (DonationsOverdue).",
)
MISSED_PERIODS = ChoiceSetting(
    env="MISSED_PERIODS",
    default=MissedPeriods.LATEST,
    meaning=(
        "A schedule behind by whole periods: latest charges the latest due period once and records the"
        " earlier ones as missed; all charges each, oldest first."
    ),
)
CATCH_UP_MIN_INTERVAL_HOURS = IntSetting(
    env="CATCH_UP_MIN_INTERVAL_HOURS",
    default=24,
    minimum=1,
    maximum=24 * 30,
    meaning="With MISSED_PERIODS=all, the least time between two catch-up charges of one donation.",
)

SETTINGS: tuple[Setting, ...] = (
    MONGODB_SECRET_NAME,
    MONGODB_URI,
    MONGODB_DATABASE,
    STRIPE_SECRET_NAME,
    STRIPE_SECRET_KEY,
    STRIPE_API_BASE,
    LOCK_TABLE_NAME,
    LOCK_NAME,
    DEAD_LETTER_QUEUE_URL,
    PAUSE_PARAMETER_NAME,
    DONOR_EVENT_BUS_NAME,
    BATCH_SIZE,
    MAX_CONCURRENCY,
    STRIPE_MAX_RPS,
    MAX_ATTEMPTS,
    DUNNING_SCHEDULE_DAYS,
    TIME_MARGIN_SECONDS,
    CIRCUIT_BREAKER_THRESHOLD,
    CIRCUIT_COOL_DOWN_SECONDS,
    CIRCUIT_OUTAGE_WINDOW_SECONDS,
    SYSTEMIC_FAILURE_THRESHOLD,
    STRIPE_TIMEOUT_SECONDS,
    STRIPE_RETRY_ATTEMPTS,
    CLAIM_LEASE_SECONDS,
    LOCK_LEASE_SECONDS,
    OVERDUE_AFTER_HOURS,
    MISSED_PERIODS,
    CATCH_UP_MIN_INTERVAL_HOURS,
)
"""Every variable load_settings reads, in the order the documentation lists them."""

DEFAULT_MONGODB_URI = MONGODB_URI.default


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
    batch_size: int = BATCH_SIZE.default
    max_concurrency: int = MAX_CONCURRENCY.default
    stripe_max_rps: float = STRIPE_MAX_RPS.default
    max_attempts: int = MAX_ATTEMPTS.default
    dunning_schedule_days: tuple[int, ...] = DUNNING_SCHEDULE_DAYS.default
    time_margin_seconds: int = TIME_MARGIN_SECONDS.default
    circuit_breaker_threshold: int = CIRCUIT_BREAKER_THRESHOLD.default
    circuit_cool_down_seconds: float = CIRCUIT_COOL_DOWN_SECONDS.default
    circuit_outage_window_seconds: int = CIRCUIT_OUTAGE_WINDOW_SECONDS.default
    systemic_failure_threshold: int = SYSTEMIC_FAILURE_THRESHOLD.default
    stripe_timeout_seconds: float = STRIPE_TIMEOUT_SECONDS.default
    stripe_retry_attempts: int = STRIPE_RETRY_ATTEMPTS.default
    claim_lease_seconds: int = CLAIM_LEASE_SECONDS.default
    lock_lease_seconds: int = LOCK_LEASE_SECONDS.default
    lock_name: str = LOCK_NAME.default
    pause_parameter_name: str | None = None
    donor_event_bus_name: str | None = None
    overdue_after_hours: int = OVERDUE_AFTER_HOURS.default
    missed_periods: MissedPeriods = MISSED_PERIODS.default
    catch_up_min_interval_hours: int = CATCH_UP_MIN_INTERVAL_HOURS.default

    def __repr__(self) -> str:
        # Never let a secret reach a log line through repr().
        return (
            f"Settings(mongodb_database={self.mongodb_database!r}, lock_table_name={self.lock_table_name!r}, "
            f"batch_size={self.batch_size}, max_concurrency={self.max_concurrency}, "
            f"stripe_max_rps={self.stripe_max_rps}, max_attempts={self.max_attempts})"
        )


def _either(
    env: Mapping[str, str], value: TextSetting | OptionalTextSetting, secret_name: OptionalTextSetting
) -> tuple[str | None, str | None]:
    """A secret given as a value (local use) or as a Secrets Manager name (AWS), never both, or neither."""
    given, name = _raw(env, value.env), _raw(env, secret_name.env)
    if given and name:
        raise ConfigError(f"set either {value.env} or {secret_name.env}, not both")
    return (value.read(env) if given else None), secret_name.read(env)


def load_settings(env: Mapping[str, str]) -> Settings:
    """Read and validate every setting; the first problem raises ConfigError naming the variable."""
    mongodb_uri, mongodb_secret_name = _either(env, MONGODB_URI, MONGODB_SECRET_NAME)
    if mongodb_uri is None and mongodb_secret_name is None:
        mongodb_uri = MONGODB_URI.default
    stripe_key, stripe_secret_name = _either(env, STRIPE_SECRET_KEY, STRIPE_SECRET_NAME)
    if stripe_key is None and stripe_secret_name is None:
        raise ConfigError(f"{STRIPE_SECRET_KEY.env} or {STRIPE_SECRET_NAME.env} is required")
    return Settings(
        mongodb_uri=mongodb_uri,
        mongodb_secret_name=mongodb_secret_name,
        mongodb_database=MONGODB_DATABASE.read(env),
        stripe_secret_key=stripe_key,
        stripe_secret_name=stripe_secret_name,
        stripe_api_base=STRIPE_API_BASE.read(env),
        lock_table_name=LOCK_TABLE_NAME.read(env),
        dead_letter_queue_url=DEAD_LETTER_QUEUE_URL.read(env),
        batch_size=BATCH_SIZE.read(env),
        max_concurrency=MAX_CONCURRENCY.read(env),
        stripe_max_rps=STRIPE_MAX_RPS.read(env),
        max_attempts=MAX_ATTEMPTS.read(env),
        dunning_schedule_days=DUNNING_SCHEDULE_DAYS.read(env),
        time_margin_seconds=TIME_MARGIN_SECONDS.read(env),
        circuit_breaker_threshold=CIRCUIT_BREAKER_THRESHOLD.read(env),
        circuit_cool_down_seconds=CIRCUIT_COOL_DOWN_SECONDS.read(env),
        circuit_outage_window_seconds=CIRCUIT_OUTAGE_WINDOW_SECONDS.read(env),
        systemic_failure_threshold=SYSTEMIC_FAILURE_THRESHOLD.read(env),
        stripe_timeout_seconds=STRIPE_TIMEOUT_SECONDS.read(env),
        stripe_retry_attempts=STRIPE_RETRY_ATTEMPTS.read(env),
        claim_lease_seconds=CLAIM_LEASE_SECONDS.read(env),
        lock_lease_seconds=LOCK_LEASE_SECONDS.read(env),
        lock_name=LOCK_NAME.read(env),
        pause_parameter_name=PAUSE_PARAMETER_NAME.read(env),
        donor_event_bus_name=DONOR_EVENT_BUS_NAME.read(env),
        overdue_after_hours=OVERDUE_AFTER_HOURS.read(env),
        missed_periods=MISSED_PERIODS.read(env),
        catch_up_min_interval_hours=CATCH_UP_MIN_INTERVAL_HOURS.read(env),
    )
