"""`donations pause` / `donations resume`: the kill switch, an SSM String parameter.

The function reads it through Powertools Parameters cached for `pause_switch.CACHE_SECONDS`, before taking
the lock and again before every claim batch; a paused run charges nothing and returns status "paused".
"""

from __future__ import annotations

import argparse
from typing import TextIO

from donation_processor.adapters.pause_switch import CACHE_SECONDS, PAUSED, RUNNING
from donations_cli.connections import Connections, aws_errors
from donations_cli.errors import EXIT_OK
from donations_cli.output import write_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # no options of their own


def _current(connections: Connections, name: str) -> str | None:
    ssm = connections.ssm
    with aws_errors(f"reading pause switch {name!r}"):
        try:
            return ssm.get_parameter(Name=name)["Parameter"].get("Value", "").strip()
        except ssm.exceptions.ParameterNotFound:
            return None


def set_switch(connections: Connections, value: str, out: TextIO, as_json: bool) -> int:
    name = connections.config.pause_parameter
    before = _current(connections, name)
    with aws_errors(f"writing pause switch {name!r}"):
        connections.ssm.put_parameter(Name=name, Value=value, Type="String", Overwrite=True)
    if as_json:
        write_json(
            out, {"parameter": name, "before": before, "after": value, "visibleWithinSeconds": CACHE_SECONDS}
        )
        return EXIT_OK
    out.write(f"pause switch {name}: {before or '(missing)'} -> {value}\n")
    if value == PAUSED:
        out.write(
            f"Charging is paused. Running functions see it within {CACHE_SECONDS} s (their parameter cache); "
            "a run in progress stops before its next claim batch, charges already sent finish.\n"
        )
    else:
        out.write(
            f"Charging resumes. Functions see it within {CACHE_SECONDS} s; the next scheduled run charges "
            "what is due.\n"
        )
    return EXIT_OK


def run_pause(args: argparse.Namespace, connections: Connections, out: TextIO, err: TextIO) -> int:
    return set_switch(connections, PAUSED, out, args.json)


def run_resume(args: argparse.Namespace, connections: Connections, out: TextIO, err: TextIO) -> int:
    return set_switch(connections, RUNNING, out, args.json)
