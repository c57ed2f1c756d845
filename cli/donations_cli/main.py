"""`donations`: the operator CLI. Exit codes: 0 ok, 1 operational failure, 2 usage or configuration error."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TextIO

from donations_cli.commands import completion, pause, preview, redrive, seed, show, status
from donations_cli.config import load_cli_config
from donations_cli.connections import Connections, describe_stack
from donations_cli.errors import EXIT_INTERRUPTED, EXIT_USAGE, CliError
from donations_cli.output import add_json_option

Command = Callable[[argparse.Namespace, Connections, TextIO, TextIO], int]

DESCRIPTION = """\
Operate the scheduled-donations job against AWS and MongoDB, or the local harness.

Configuration: the function's environment variables. MONGODB_URI or MONGODB_SECRET_NAME,
MONGODB_DATABASE, LOCK_TABLE_NAME, LOCK_NAME, DEAD_LETTER_QUEUE_URL, PAUSE_PARAMETER_NAME,
OVERDUE_AFTER_HOURS, and AWS_ENDPOINT_URL for moto. With --stack NAME, whatever the
environment leaves unset comes from the stack's outputs (LockTableName, DeadLetterQueueUrl,
PauseParameterName) and parameters (MongoDbSecretName, MongoDbDatabase). Secrets are never printed.
"""

EPILOG = "exit codes: 0 ok, 1 operational failure, 2 usage or configuration error"


def _common_options(suppress: bool) -> argparse.ArgumentParser:
    """Options accepted before or after the subcommand; the subcommand copies default to SUPPRESS so a
    value given before it is not overwritten."""
    parser = argparse.ArgumentParser(add_help=False)
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument(
        "--stack", default=default, metavar="NAME", help="read resource names from this stack"
    )
    parser.add_argument("--profile", default=default, help="AWS named profile")
    parser.add_argument("--region", default=default, help="AWS region")
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="donations",
        description=DESCRIPTION,
        epilog=EPILOG,
        parents=[_common_options(suppress=False)],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = _common_options(suppress=True)
    progress = argparse.ArgumentParser(add_help=False)
    progress.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: only when stderr is a terminal)",
    )
    output = argparse.ArgumentParser(add_help=False)
    add_json_option(output)
    entries: list[tuple[str, str, Callable[[argparse.ArgumentParser], None], Command, bool]] = [
        ("seed", "insert N due scheduled donations (test data)", seed.add_arguments, seed.run, True),
        ("status", "due, open charges, invalid, DLQ depth, pause switch, last run", status.add_arguments,
         status.run, False),
        ("show", "one donation: schedule, charge intents, attempts, parked letters", show.add_arguments,
         show.run, False),
        ("preview", "what a run would charge now, or why one donation is (not) due; writes nothing",
         preview.add_arguments, preview.run, False),
        ("redrive", "retry dead-lettered donations for the same period (dry run unless --yes)",
         redrive.add_arguments, redrive.run, True),
        ("pause", "set the kill switch: runs charge nothing", pause.add_arguments, pause.run_pause, False),
        ("resume", "clear the kill switch", pause.add_arguments, pause.run_resume, False),
    ]  # fmt: skip
    for name, summary, add_arguments, run, with_progress in entries:
        parents = [common, output, progress] if with_progress else [common, output]
        sub = subcommands.add_parser(
            name, help=summary, description=(sys.modules[run.__module__].__doc__ or summary), parents=parents,
            formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        )  # fmt: skip
        add_arguments(sub)
        sub.set_defaults(run=run)
    sub = subcommands.add_parser(
        "completion", help="print a bash or zsh completion script", description=completion.__doc__,
        parents=[output], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
    )  # fmt: skip
    completion.add_arguments(sub)
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    shared_process_database: bool = False,
) -> int:
    """Run one command. A mongomock:// URI is refused unless `shared_process_database`: only a caller that
    keeps the in-memory database alive across calls (the in-process tests) can use it."""
    out = out or sys.stdout
    err = err or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help (0) or a usage error (2, already printed by argparse)
        return stop.code if isinstance(stop.code, int) else EXIT_USAGE
    if args.command == "completion":  # needs the parser, and no configuration
        return completion.run(parser, args, out)
    environment = os.environ if env is None else env
    # botocore reads AWS_DEFAULT_REGION only; users and Lambda set AWS_REGION, which the AWS CLI reads first.
    region = args.region or environment.get("AWS_REGION", "").strip() or None
    try:
        stack = describe_stack(args.stack, profile=args.profile, region=region) if args.stack else None
        config = load_cli_config(environment, stack)
        connections = Connections(
            config, profile=args.profile, region=region, shared_process_database=shared_process_database
        )
        code: int = args.run(args, connections, out, err)
        return code
    except CliError as error:
        out.flush()
        err.write(f"donations {args.command}: error: {error}\n")
        return error.exit_code
    except KeyboardInterrupt:
        err.write(f"donations {args.command}: interrupted\n")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
