"""The kill switch: an SSM parameter an operator sets to "paused"; the job reads it with a short cache."""

from __future__ import annotations

from typing import Any

from donation_processor.exceptions import PauseSwitchUnavailableError

PAUSED = "paused"
RUNNING = "running"
CACHE_SECONDS = 30


class SsmPauseSwitch:
    """Reads the parameter through Powertools Parameters (cached CACHE_SECONDS).

    Fails closed: a switch that cannot be read, or holds anything but "running" or "paused", stops the job,
    because charging through an operator's pause is worse than a late run.
    """

    def __init__(self, parameter_name: str, provider: Any = None) -> None:
        self._name = parameter_name
        self._provider = provider

    def _read(self) -> str:
        from aws_lambda_powertools.utilities import parameters

        try:
            if self._provider is not None:
                value = self._provider.get(self._name, max_age=CACHE_SECONDS)
            else:
                value = parameters.get_parameter(self._name, max_age=CACHE_SECONDS)
        except parameters.exceptions.GetParameterError as error:
            raise PauseSwitchUnavailableError(f"pause switch {self._name!r} could not be read") from error
        return str(value).strip().lower()

    def is_paused(self) -> bool:
        value = self._read()
        if value not in (PAUSED, RUNNING):
            raise PauseSwitchUnavailableError(
                f"pause switch {self._name!r} must be 'running' or 'paused', got {value[:20]!r}"
            )
        return value == PAUSED
