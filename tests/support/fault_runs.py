"""Running the real engine in fault scenarios: an engine factory with crash points, and the real handler.

Not a conftest.py on purpose, like fault_injection: test modules import what they use from it by name.
The `engine_for` fixture is defined as `engine_for_fixture` (named "engine_for" for pytest), so a module
imports `engine_for_fixture` and its tests take `engine_for` without shadowing an imported name.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import app
from donation_processor.config import load_settings
from donation_processor.engine import DonationEngine
from donation_processor.wiring import build_engine
from harness.local.lambda_context import LocalLambdaContext
from harness.local.services import LocalServices
from tests.support.clock import TestClock
from tests.support.fault_injection import CrashingLock, CrashingStore, CrashSwitch, DyingPayments

SCHEDULED_EVENT = json.loads(Path("events/scheduled.json").read_text())
# Past the 15-minute claim lease. A dead run's lock is taken over by the next run after one lock lease of
# unchanged record version on its own clock (here the test clock, which that watch moves on).
LEASES_EXPIRED = {"minutes": 16}


@pytest.fixture(name="engine_for")
def engine_for_fixture(services: LocalServices, clock: TestClock) -> Iterator[Callable[..., DonationEngine]]:
    """Build an engine on the real adapters, optionally wrapped with crash points or a stall."""
    saved = dict(os.environ)

    def factory(
        switch: CrashSwitch | None = None, payments_wrapper: Callable[[Any], Any] | None = None, **env: str
    ) -> DonationEngine:
        environment = services.environment(**{"MAX_CONCURRENCY": "2", **env})
        os.environ.update(environment)
        # The lock watches a holder on the test clock: after a crash, the next run waits out the dead
        # run's lease (one lease of unchanged record version) at once, and the test clock moves on by it.
        real = build_engine(
            load_settings(environment),
            clock=clock,
            sleep=lambda _s: None,
            lock_monotonic=clock.monotonic,
            lock_sleep=clock.sleep,
        )
        deps = real._deps
        payments = deps.payments
        if payments_wrapper is not None:
            payments = payments_wrapper(payments)
        # The pause switch and donor events stay as configured (neither is unless its variable is set);
        # the Stripe rate limiter's pacing is left out, so concurrency follows MAX_CONCURRENCY alone.
        if switch is not None:
            deps = replace(
                deps,
                lock=CrashingLock(deps.lock, switch),
                store=CrashingStore(deps.store, switch),
                payments=DyingPayments(payments, switch),
                pacing=None,
            )
        else:
            deps = replace(deps, payments=payments, pacing=None)
        return DonationEngine(real._settings, deps, clock=clock, sleep=lambda _s: None)

    yield factory
    os.environ.clear()
    os.environ.update(saved)


def invoke(engine: DonationEngine, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The real handler, with this engine as the warm container's."""
    monkeypatch.setattr(app, "_engine", engine)
    result: dict[str, Any] = app.lambda_handler(SCHEDULED_EVENT, LocalLambdaContext())
    return result
