"""Lambda entry point: parse the event, wire the engine once per container, run it, return the summary."""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from donation_processor.config import load_settings
from donation_processor.engine import DonationEngine
from donation_processor.exceptions import PaymentsUnavailableError, StoreError
from donation_processor.invocation import parse_event
from donation_processor.observability import logger, metrics, publish_failed_run, publish_run_metrics, tracer
from donation_processor.wiring import build_engine

_engine: DonationEngine | None = None


def get_engine() -> DonationEngine:
    """Settings are validated and clients built on the first invocation, then reused by the container."""
    global _engine
    if _engine is None:
        _engine = build_engine(load_settings(os.environ))
    return _engine


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    global _engine
    try:
        request = parse_event(event)
        summary = get_engine().run(request, context.get_remaining_time_in_millis)
    except BaseException as error:
        if isinstance(error, PaymentsUnavailableError | StoreError):
            _engine = None  # rebuilt next time, re-reading the secrets (a rotated key or URI takes effect)
        publish_failed_run()  # the invocation fails; its metric says so (and the EMF flush is not empty)
        raise
    publish_run_metrics(summary)
    return summary.to_dict()
