"""The CLI's errors and exit codes: 0 ok, 1 operational failure, 2 usage or configuration, 130 interrupted."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C


class CliError(Exception):
    """An error the CLI reports in one line on stderr and turns into an exit code."""

    exit_code = EXIT_FAILURE


class UsageError(CliError):
    """Wrong arguments or configuration (a missing or invalid variable): the message names it."""

    exit_code = EXIT_USAGE


class OperationalError(CliError):
    """A service (MongoDB, AWS) failed or answered unexpectedly."""

    exit_code = EXIT_FAILURE


class Interrupted(CliError):
    """Ctrl-C during a command that has something to say about what it left behind."""

    exit_code = EXIT_INTERRUPTED


class NotFound(CliError):
    """What the operator named does not exist: the message names it."""

    exit_code = EXIT_FAILURE
