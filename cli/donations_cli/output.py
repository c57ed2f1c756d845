"""`--json`: every command prints one JSON object on stdout; errors stay on stderr with the exit code."""

from __future__ import annotations

import argparse
import json
from typing import Any, TextIO


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object on stdout (amounts in minor units)"
    )


def write_json(out: TextIO, report: Any) -> None:
    out.write(json.dumps(report, indent=2, sort_keys=True, default=str) + "\n")
