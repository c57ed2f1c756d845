"""Read CloudWatch EMF metrics back out of captured output (Powertools prints one JSON blob per flush)."""

from __future__ import annotations

import json


def emitted_metrics(output: str) -> dict[str, float]:
    """Metric name -> value for every EMF blob in output; a later blob overrides an earlier one."""
    values: dict[str, float] = {}
    for line in output.splitlines():
        if '"_aws"' not in line:
            continue
        blob = json.loads(line)
        for directive in blob["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                raw = blob[metric["Name"]]
                values[metric["Name"]] = float(sum(raw) if isinstance(raw, list) else raw)
    return values


def namespaces(output: str) -> set[str]:
    """Every namespace the EMF blobs in output were written to."""
    found: set[str] = set()
    for line in output.splitlines():
        if '"_aws"' in line:
            for directive in json.loads(line)["_aws"]["CloudWatchMetrics"]:
                found.add(directive["Namespace"])
    return found
