"""The CLI's errors and exit codes: 0 ok, 1 operational failure, 2 usage or configuration error."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class CliError(Exception):
    """An error the CLI reports in one line on stderr and turns into an exit code."""

    exit_code = EXIT_FAILURE


class UsageError(CliError):
    """Wrong arguments or configuration (a missing or invalid variable): the message names it."""

    exit_code = EXIT_USAGE


class OperationalError(CliError):
    """A service (MongoDB, AWS) failed or answered unexpectedly."""

    exit_code = EXIT_FAILURE
