"""template.yaml and config.py agree: each setting reaches the function with config.py's default and bounds.

config.py's table of settings is the one place each default and range is written; a template parameter that
feeds a setting repeats them only because CloudFormation needs them, and this file keeps the two equal.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from donation_processor.config import (
    DUNNING_SCHEDULE_DAYS,
    SETTINGS,
    ChoiceSetting,
    DaysSetting,
    FloatSetting,
    IntSetting,
    OptionalTextSetting,
    RequiredTextSetting,
    Setting,
    TextSetting,
    load_settings,
)
from donation_processor.exceptions import ConfigError
from harness.local.aws_local import load_template
from harness.project import PROJECT_ROOT

FUNCTION = "ScheduledDonationsFunction"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(PROJECT_ROOT / "template.yaml")


def environment(template: dict[str, Any]) -> dict[str, Any]:
    variables: dict[str, Any] = dict(template["Globals"]["Function"]["Environment"]["Variables"])
    variables |= template["Resources"][FUNCTION]["Properties"]["Environment"]["Variables"]
    return variables


def parameter_of(template: dict[str, Any], setting: Setting) -> dict[str, Any] | None:
    """The template parameter that feeds `setting`, if its variable is a Ref to one."""
    value = environment(template).get(setting.env)
    if isinstance(value, dict) and value.get("Ref") in template["Parameters"]:
        parameter: dict[str, Any] = template["Parameters"][value["Ref"]]
        return parameter
    return None


def fed_by_parameters(template: dict[str, Any]) -> list[tuple[Setting, dict[str, Any]]]:
    pairs = [(setting, parameter_of(template, setting)) for setting in SETTINGS]
    return [(setting, parameter) for setting, parameter in pairs if parameter is not None]


def test_the_function_environment_passes_every_setting(template: dict[str, Any]) -> None:
    # GIVEN the variables the template sets on the function (its own and the globals)
    variables = environment(template)

    # WHEN each setting of config.py is looked up there
    missing = [setting.env for setting in SETTINGS if setting.env not in variables]

    # THEN none is missing: every setting can be changed by a deploy or by sam local --env-vars
    assert missing == []


def test_each_setting_comes_from_a_parameter_a_resource_or_is_empty_or_its_default(
    template: dict[str, Any],
) -> None:
    # GIVEN the value the template gives each setting
    variables = environment(template)
    for setting in SETTINGS:
        value = variables[setting.env]
        # WHEN it is not a Ref to a parameter or to one of the stack's resources
        if isinstance(value, dict):
            assert set(value) == {"Ref"}, setting.env
            assert value["Ref"] in template["Parameters"] or value["Ref"] in template["Resources"], (
                setting.env
            )
            continue
        # THEN it is empty (a local-only variable, unset in AWS) or config.py's own default, nothing else
        assert value == "" or (isinstance(setting, TextSetting) and value == setting.default), setting.env
        # AND a required setting is never left empty
        assert not (value == "" and isinstance(setting, RequiredTextSetting)), setting.env


def test_every_parameter_fed_setting_has_config_py_default(template: dict[str, Any]) -> None:
    # GIVEN each setting a template parameter feeds
    pairs = fed_by_parameters(template)
    assert len(pairs) >= 20, "fewer parameter-fed settings than expected: is the Environment mapping read?"

    for setting, parameter in pairs:
        # WHEN the parameter's default is read as the function would read it
        default = parameter["Default"]
        # THEN it is config.py's default
        if isinstance(setting, (IntSetting, FloatSetting)):
            assert parameter["Type"] == "Number", setting.env
            assert float(default) == setting.default, setting.env
        elif isinstance(setting, DaysSetting):
            assert default == setting.text(), setting.env
        elif isinstance(setting, ChoiceSetting):
            assert default == setting.default.value, setting.env
        elif isinstance(setting, TextSetting):
            assert default == setting.default, setting.env
        else:
            # An optional or required text (a secret's name): config.py has no default, any valid one will do
            assert isinstance(setting, (OptionalTextSetting, RequiredTextSetting)), setting.env
            assert setting.read({setting.env: default}) == default, setting.env


def test_every_parameter_fed_setting_has_config_py_bounds(template: dict[str, Any]) -> None:
    for setting, parameter in fed_by_parameters(template):
        # GIVEN a parameter that feeds a bounded or enumerated setting
        # WHEN its constraints are compared with config.py's
        # THEN the template states the same bounds, choices and pattern, no tighter and no looser
        if isinstance(setting, (IntSetting, FloatSetting)):
            assert float(parameter["MinValue"]) == setting.minimum, setting.env
            assert float(parameter["MaxValue"]) == setting.maximum, setting.env
        if isinstance(setting, ChoiceSetting):
            assert parameter["AllowedValues"] == list(setting.choices()), setting.env
        if isinstance(setting, (TextSetting, OptionalTextSetting, RequiredTextSetting)) and setting.pattern:
            assert parameter["AllowedPattern"] == f"^{setting.pattern}$", setting.env


@pytest.mark.parametrize(
    "value",
    ["1", "9", "10", "59", "60", "61", "0", "00", "1,3,7", "7,3,1", "1,,3", "1,", ",1", "100", "-1", "1.5"],
)
def test_the_dunning_days_pattern_accepts_what_config_py_accepts(
    template: dict[str, Any], value: str
) -> None:
    # GIVEN the template's pattern for the dunning schedule, and config.py's reader of the same variable
    pattern = template["Parameters"]["DunningScheduleDays"]["AllowedPattern"]

    # WHEN both judge the same value
    try:
        DUNNING_SCHEDULE_DAYS.read({DUNNING_SCHEDULE_DAYS.env: value})
    except ConfigError:
        accepted = False
    else:
        accepted = True

    # THEN they agree (CloudFormation refuses at deploy what the function would refuse at run time)
    assert bool(re.fullmatch(pattern, value)) == accepted, value


def test_parameter_defaults_load_as_config_py_defaults(template: dict[str, Any]) -> None:
    # GIVEN the environment CloudFormation would set with every parameter at its default
    env = {setting.env: str(parameter["Default"]) for setting, parameter in fed_by_parameters(template)}
    env |= {"LOCK_TABLE_NAME": "stack-LockTable-ABC", "DEAD_LETTER_QUEUE_URL": "https://sqs.example/1/q"}

    # WHEN the function validates it
    settings = load_settings(env)

    # THEN it starts with config.py's defaults
    for setting in SETTINGS:
        if isinstance(setting, (IntSetting, FloatSetting, DaysSetting, ChoiceSetting)):
            assert getattr(settings, setting.env.lower()) == setting.default, setting.env
