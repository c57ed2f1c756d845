"""`make local-invoke`: run the real handler once, in this process, against the stack of `make local-up`.

Reads .local/env into the environment, invokes `app.lambda_handler` with the event (default
events/scheduled.json; `EVENT=events/manual_dry_run.json make local-invoke`) and a LocalLambdaContext, and
prints the run summary as JSON. The function's own output (structured logs, EMF metrics) goes to
.local/invoke.log, as CloudWatch Logs would hold it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.local.lambda_context import LocalLambdaContext
from harness.local.local_env import ENV_FILE_NAME, local_dir, read_env_file
from harness.project import PROJECT_ROOT

DEFAULT_EVENT = "events/scheduled.json"
LOG_FILE_NAME = "invoke.log"


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m harness.local.local_invoke", description=__doc__)
    parser.add_argument("--event", default=os.environ.get("EVENT") or DEFAULT_EVENT, help="event JSON file")
    return parser.parse_args(argv)


def _event(path: str) -> dict[str, Any]:
    candidate = Path(path)
    if not candidate.is_absolute() and not candidate.exists():
        candidate = PROJECT_ROOT / candidate
    event: dict[str, Any] = json.loads(candidate.read_text(encoding="utf-8"))
    return event


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    directory = local_dir()
    env_file = directory / ENV_FILE_NAME
    if not env_file.exists():
        print(f"local-invoke: {env_file} not found; run `make local-up` first", file=sys.stderr)
        return 2
    os.environ.update(read_env_file(env_file))
    os.environ.setdefault("LOG_LEVEL", "INFO")
    event = _event(args.event)
    os.chdir(PROJECT_ROOT)
    log_file = directory / LOG_FILE_NAME
    with log_file.open("a", encoding="utf-8") as log, contextlib.redirect_stdout(log):
        import app  # here: Powertools' logger binds to the stdout of its import

        summary = app.lambda_handler(event, LocalLambdaContext(aws_request_id="local-invoke"))
    print(json.dumps(summary, indent=2, sort_keys=True))
    print(f"logs and metrics of the run: {log_file}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
