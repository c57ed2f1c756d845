"""load_settings: defaults from a minimal environment, and a ConfigError naming each bad variable."""

from __future__ import annotations

import dataclasses

import pytest

from donation_processor.catch_up import MissedPeriods
from donation_processor.config import (
    DEFAULT_MONGODB_URI,
    DUNNING_SCHEDULE_DAYS,
    SETTINGS,
    ChoiceSetting,
    DaysSetting,
    FloatSetting,
    IntSetting,
    Settings,
    TextSetting,
    load_settings,
)
from donation_processor.exceptions import ConfigError

MINIMAL = {
    "STRIPE_SECRET_KEY": "sk_test_x",
    "LOCK_TABLE_NAME": "t",
    "DEAD_LETTER_QUEUE_URL": "http://localhost/q",
}
DEFAULTED = (IntSetting, FloatSetting, DaysSetting, ChoiceSetting, TextSetting)


def _env(**changes: str | None) -> dict[str, str]:
    env = dict(MINIMAL)
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def test_a_minimal_environment_gives_the_documented_defaults() -> None:
    # GIVEN only the three required variables
    # WHEN the settings are loaded
    settings = load_settings(MINIMAL)

    # THEN every other setting has its default, and MongoDB falls back to mongomock
    assert settings == Settings(
        mongodb_uri=DEFAULT_MONGODB_URI,
        mongodb_secret_name=None,
        mongodb_database="donations",
        stripe_secret_key="sk_test_x",
        stripe_secret_name=None,
        stripe_api_base=None,
        lock_table_name="t",
        dead_letter_queue_url="http://localhost/q",
    )
    assert settings.mongodb_uri == "mongomock://localhost"
    assert (settings.batch_size, settings.max_concurrency, settings.stripe_max_rps) == (50, 128, 80.0)
    assert (settings.max_attempts, settings.dunning_schedule_days) == (4, (1, 3, 7))
    assert (settings.missed_periods, settings.catch_up_min_interval_hours) == (MissedPeriods.LATEST, 24)


def test_valid_overrides_are_parsed_into_their_types() -> None:
    # GIVEN every tunable set to a valid value
    env = _env(
        BATCH_SIZE="1000",
        MAX_CONCURRENCY="1",
        STRIPE_MAX_RPS="0.5",
        MAX_ATTEMPTS="20",
        DUNNING_SCHEDULE_DAYS=" 2, 5 ,60",
        MONGODB_URI="mongodb+srv://cluster.example",
        STRIPE_API_BASE="https://stripe.local",
        MISSED_PERIODS="all",
        CATCH_UP_MIN_INTERVAL_HOURS="720",
    )

    # WHEN the settings are loaded
    settings = load_settings(env)

    # THEN each value is parsed
    assert (settings.batch_size, settings.max_concurrency, settings.stripe_max_rps) == (1000, 1, 0.5)
    assert (settings.max_attempts, settings.dunning_schedule_days) == (20, (2, 5, 60))
    assert settings.mongodb_uri == "mongodb+srv://cluster.example"
    assert settings.stripe_api_base == "https://stripe.local"
    assert (settings.missed_periods, settings.catch_up_min_interval_hours) == (MissedPeriods.ALL, 720)


def test_a_secret_name_instead_of_a_key_is_accepted() -> None:
    # GIVEN the Stripe key's Secrets Manager name instead of the key
    env = _env(STRIPE_SECRET_KEY=None, STRIPE_SECRET_NAME="prod/stripe-key")

    # WHEN the settings are loaded
    settings = load_settings(env)

    # THEN the name is kept and no key value is held
    assert (settings.stripe_secret_key, settings.stripe_secret_name) == (None, "prod/stripe-key")


@pytest.mark.parametrize(
    ("changes", "variable"),
    [
        ({"BATCH_SIZE": "abc"}, "BATCH_SIZE"),
        ({"BATCH_SIZE": "0"}, "BATCH_SIZE"),
        ({"BATCH_SIZE": "5000"}, "BATCH_SIZE"),
        ({"BATCH_SIZE": "1.5"}, "BATCH_SIZE"),
        ({"MAX_CONCURRENCY": "0"}, "MAX_CONCURRENCY"),
        ({"MAX_CONCURRENCY": "257"}, "MAX_CONCURRENCY"),
        ({"MAX_CONCURRENCY": "many"}, "MAX_CONCURRENCY"),
        ({"STRIPE_MAX_RPS": "-1"}, "STRIPE_MAX_RPS"),
        ({"STRIPE_MAX_RPS": "fast"}, "STRIPE_MAX_RPS"),
        ({"STRIPE_MAX_RPS": "nan"}, "STRIPE_MAX_RPS"),
        ({"STRIPE_MAX_RPS": "inf"}, "STRIPE_MAX_RPS"),
        ({"MAX_ATTEMPTS": "0"}, "MAX_ATTEMPTS"),
        ({"MAX_ATTEMPTS": "21"}, "MAX_ATTEMPTS"),
        ({"DUNNING_SCHEDULE_DAYS": "1,x"}, "DUNNING_SCHEDULE_DAYS"),
        ({"DUNNING_SCHEDULE_DAYS": "0"}, "DUNNING_SCHEDULE_DAYS"),
        ({"DUNNING_SCHEDULE_DAYS": "1,,3"}, "DUNNING_SCHEDULE_DAYS"),
        ({"DUNNING_SCHEDULE_DAYS": "61"}, "DUNNING_SCHEDULE_DAYS"),
        ({"STRIPE_SECRET_NAME": "prod/stripe"}, "STRIPE_SECRET_NAME"),
        ({"STRIPE_SECRET_KEY": None, "STRIPE_SECRET_NAME": "prod stripe"}, "STRIPE_SECRET_NAME"),
        ({"MONGODB_SECRET_NAME": "prod/mongo\nx"}, "MONGODB_SECRET_NAME"),
        ({"STRIPE_SECRET_KEY": None}, "STRIPE_SECRET_KEY"),
        ({"STRIPE_SECRET_KEY": "pk_live_public"}, "STRIPE_SECRET_KEY"),
        ({"MONGODB_URI": "http://x"}, "MONGODB_URI"),
        ({"MONGODB_URI": "mongodb://a", "MONGODB_SECRET_NAME": "prod/mongo"}, "MONGODB_SECRET_NAME"),
        ({"STRIPE_API_BASE": "ftp://stripe.local"}, "STRIPE_API_BASE"),
        ({"LOCK_TABLE_NAME": None}, "LOCK_TABLE_NAME"),
        ({"LOCK_TABLE_NAME": "   "}, "LOCK_TABLE_NAME"),
        ({"DEAD_LETTER_QUEUE_URL": None}, "DEAD_LETTER_QUEUE_URL"),
        ({"DEAD_LETTER_QUEUE_URL": "sqs-queue"}, "DEAD_LETTER_QUEUE_URL"),
        ({"MONGODB_DATABASE": "bad name"}, "MONGODB_DATABASE"),
        ({"MISSED_PERIODS": "some"}, "MISSED_PERIODS"),
        ({"MISSED_PERIODS": "LATEST"}, "MISSED_PERIODS"),
        ({"CATCH_UP_MIN_INTERVAL_HOURS": "0"}, "CATCH_UP_MIN_INTERVAL_HOURS"),
        ({"CATCH_UP_MIN_INTERVAL_HOURS": "721"}, "CATCH_UP_MIN_INTERVAL_HOURS"),
        ({"CATCH_UP_MIN_INTERVAL_HOURS": "a day"}, "CATCH_UP_MIN_INTERVAL_HOURS"),
    ],
)
def test_each_bad_variable_raises_a_config_error_naming_it(
    changes: dict[str, str | None], variable: str
) -> None:
    # GIVEN a minimal environment with one bad or missing variable
    env = _env(**changes)

    # WHEN the settings are loaded
    # THEN a ConfigError names that variable
    with pytest.raises(ConfigError, match=variable):
        load_settings(env)


def test_setting_both_the_stripe_key_and_its_secret_name_is_refused() -> None:
    # GIVEN both a Stripe key and a Secrets Manager name
    env = _env(STRIPE_SECRET_NAME="prod/stripe")

    # WHEN the settings are loaded
    # THEN the error names both and says to choose one
    with pytest.raises(ConfigError, match="set either STRIPE_SECRET_KEY or STRIPE_SECRET_NAME, not both"):
        load_settings(env)


def test_setting_neither_stripe_source_is_refused_naming_both() -> None:
    # GIVEN neither a Stripe key nor its secret name
    env = _env(STRIPE_SECRET_KEY=None)

    # WHEN the settings are loaded
    # THEN the error names both variables
    with pytest.raises(ConfigError, match="STRIPE_SECRET_KEY or STRIPE_SECRET_NAME is required"):
        load_settings(env)


def test_repr_never_shows_the_stripe_key_or_the_mongodb_uri() -> None:
    # GIVEN settings holding a Stripe key and a MongoDB URI with a password
    key = "sk_live_S3cretValue"
    uri = "mongodb://admin:hunter2@db.example:27017"
    settings = load_settings(_env(STRIPE_SECRET_KEY=key, MONGODB_URI=uri))

    # WHEN it is rendered as a log line would render it
    rendered = (repr(settings), str(settings), f"{settings}")

    # THEN neither secret appears, in whole or in part
    for text in rendered:
        assert key not in text
        assert "S3cretValue" not in text
        assert uri not in text
        assert "hunter2" not in text
    assert "lock_table_name='t'" in rendered[0]


def test_a_bad_mongodb_uri_error_does_not_echo_the_uri() -> None:
    # GIVEN an invalid MongoDB URI that carries a password
    env = _env(MONGODB_URI="http://admin:hunter2@db.example")

    # WHEN the settings are loaded
    with pytest.raises(ConfigError, match="MONGODB_URI") as raised:
        load_settings(env)

    # THEN the message does not leak the password
    assert "hunter2" not in str(raised.value)


def test_a_bad_missed_periods_policy_names_the_allowed_values() -> None:
    # GIVEN a policy that does not exist
    env = _env(MISSED_PERIODS="skip")

    # WHEN the settings are loaded
    # THEN the error names the variable and both policies
    with pytest.raises(ConfigError, match="MISSED_PERIODS must be latest or all, got 'skip'"):
        load_settings(env)


# ---------------------------------------------------------------------------------------------------------
# The table of settings: one place for each default and range, and load_settings follows it.
# ---------------------------------------------------------------------------------------------------------

BOUNDED = [setting for setting in SETTINGS if isinstance(setting, (IntSetting, FloatSetting))]


def test_the_table_declares_exactly_the_fields_of_settings() -> None:
    # GIVEN the table of settings and the Settings dataclass
    declared = [setting.env.lower() for setting in SETTINGS]

    # WHEN the two are compared
    fields = [field.name for field in dataclasses.fields(Settings)]

    # THEN each field is read from the variable of the same name, and no variable is declared twice
    assert sorted(declared) == sorted(fields)
    assert len(set(declared)) == len(declared)


def test_a_minimal_environment_gives_each_default_the_table_declares() -> None:
    # GIVEN only the three required variables
    # WHEN the settings are loaded
    settings = load_settings(MINIMAL)

    # THEN every setting with a default has exactly that default
    with_default = [setting for setting in SETTINGS if isinstance(setting, DEFAULTED)]
    assert with_default, "no setting declares a default"
    for setting in with_default:
        assert getattr(settings, setting.env.lower()) == setting.default, setting.env


@pytest.mark.parametrize("setting", BOUNDED, ids=lambda setting: setting.env)
def test_each_bounded_setting_accepts_its_bounds_and_refuses_beyond_them(
    setting: IntSetting | FloatSetting,
) -> None:
    # GIVEN the bounds the table declares, and values just outside them
    step = 1 if isinstance(setting, IntSetting) else setting.minimum / 2
    below, above = setting.minimum - step, setting.maximum + step

    # WHEN each bound is loaded
    # THEN it is accepted as is
    for bound in (setting.minimum, setting.maximum):
        assert getattr(load_settings(_env(**{setting.env: str(bound)})), setting.env.lower()) == bound

    # AND a value beyond either bound is refused with a message naming the variable and its range
    for outside in (below, above):
        with pytest.raises(ConfigError) as raised:
            load_settings(_env(**{setting.env: str(outside)}))
        assert str(raised.value).startswith(
            f"{setting.env} must be between {setting.minimum} and {setting.maximum}, got "
        )


def test_the_dunning_days_bounds_come_from_the_table() -> None:
    # GIVEN the dunning schedule's bounds per day
    low, high = DUNNING_SCHEDULE_DAYS.minimum, DUNNING_SCHEDULE_DAYS.maximum

    # WHEN a schedule spanning both bounds is loaded
    settings = load_settings(_env(DUNNING_SCHEDULE_DAYS=f"{low},{high}"))

    # THEN it is accepted, and one day beyond the upper bound is refused naming the range
    assert settings.dunning_schedule_days == (low, high)
    with pytest.raises(
        ConfigError, match=f"DUNNING_SCHEDULE_DAYS days must each be between {low} and {high}"
    ):
        load_settings(_env(DUNNING_SCHEDULE_DAYS=f"{low},{high + 1}"))


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("STRIPE_SECRET_KEY", "pk_live_S3cretValue"),
        ("MONGODB_URI", "postgres://admin:hunter2@db"),
        ("STRIPE_SECRET_NAME", "prod stripe hunter2"),
    ],
)
def test_a_text_setting_that_breaks_its_rule_is_named_with_the_rule_never_the_value(
    variable: str, value: str
) -> None:
    # GIVEN a value that breaks the rule of its variable, and no conflicting source
    changes: dict[str, str | None] = {variable: value}
    if variable == "STRIPE_SECRET_NAME":
        changes["STRIPE_SECRET_KEY"] = None

    # WHEN the settings are loaded
    with pytest.raises(ConfigError) as raised:
        load_settings(_env(**changes))

    # THEN the message is the variable and its rule, and holds nothing of the value
    rule = next(setting.allowed_text() for setting in SETTINGS if setting.env == variable)
    assert str(raised.value) == f"{variable} must be {rule}"
    assert "hunter2" not in str(raised.value)
    assert "S3cret" not in str(raised.value)


def test_every_setting_describes_its_default_its_range_and_its_meaning() -> None:
    # GIVEN the table
    # WHEN each setting is described as the documentation shows it
    described = {
        setting.env: (setting.default_text(), setting.allowed_text(), setting.meaning) for setting in SETTINGS
    }

    # THEN no description is empty, and a few read as the reader expects
    assert all(all(part.strip() for part in parts) for parts in described.values())
    assert described["BATCH_SIZE"][:2] == ("`50`", "1 to 1000")
    assert described["STRIPE_MAX_RPS"][:2] == ("`80`", "0.1 to 10000")
    assert described["DUNNING_SCHEDULE_DAYS"][:2] == ("`1,3,7`", "comma-separated, each 1 to 60")
    assert described["MISSED_PERIODS"][:2] == ("`latest`", "`latest` or `all`")
    assert described["LOCK_TABLE_NAME"][0] == "required"
    assert described["PAUSE_PARAMETER_NAME"][0] == "unset"
