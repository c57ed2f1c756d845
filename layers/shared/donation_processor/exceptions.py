"""The project's own exceptions: adapters turn SDK errors into these; the engine never imports an SDK."""

from __future__ import annotations


class DonationProcessorError(Exception):
    """Base class for every error this package raises on purpose."""


class ConfigError(DonationProcessorError):
    """A configuration value is missing or invalid; the message names the variable."""


class InvalidEventError(DonationProcessorError):
    """The invocation event is malformed; the message names the field. Nothing is charged."""


class LockContendedError(DonationProcessorError):
    """Another live run holds the job lock."""


class LockUnavailableError(DonationProcessorError):
    """The lock store cannot be reached or answered unexpectedly: the job must not run unlocked."""


class LockLostError(DonationProcessorError):
    """This run no longer owns the lock (its lease expired and another run took it)."""


class StoreError(DonationProcessorError):
    """MongoDB failed or could not be reached."""


class DeadLetterSendError(DonationProcessorError):
    """The dead-letter queue could not be reached; the letter stays parked in MongoDB."""


class SecretError(DonationProcessorError):
    """A secret could not be read from Secrets Manager."""


class PaymentsUnavailableError(DonationProcessorError):
    """Stripe rejected our credentials or permissions: no donation can be charged in this run."""


class PauseSwitchUnavailableError(DonationProcessorError):
    """The pause switch cannot be read: the job does not charge rather than ignore an operator's pause."""
