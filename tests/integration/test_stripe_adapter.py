"""The Stripe adapter, through the real SDK against the Stripe-compatible server."""

from __future__ import annotations

import gc
import types
from collections.abc import Iterator
from typing import Any

import pytest

from donation_processor.adapters.stripe_payments import StripePayments, build_stripe_client
from donation_processor.charge_outcome import FailureKind, PaymentFailed
from donation_processor.rate_limiter import RateLimiter
from harness.bench.stripe_process import create_customers, stripe_client
from harness.local.stripe_server import RunningStripeServer

API_KEY = "sk_test_adapter"


@pytest.fixture
def gc_paused() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _left_by_a_charge(thing: Any) -> bool:
    """Garbage a charge could leave: an exception, its traceback and frames, or anything of the SDK's.
    (Other threads' garbage, such as a pymongo monitor a finished test left stopping, is not a charge's.)"""
    kind = type(thing)  # not isinstance: a dead weak proxy raises on attribute access
    return issubclass(
        kind, BaseException | types.TracebackType | types.FrameType
    ) or kind.__module__.startswith("stripe")


def _cyclic_garbage_of_charges() -> list[Any]:
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        return [thing for thing in gc.garbage if _left_by_a_charge(thing)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


def test_declines_leave_no_reference_cycles_behind(
    stripe_server: RunningStripeServer, gc_paused: None
) -> None:
    # GIVEN the adapter on the real SDK, a customer, and the cyclic garbage collector paused
    stripe_server.state.reset()
    customer = create_customers(stripe_client(stripe_server.url, API_KEY), 1, 1)[0]
    payments = StripePayments(build_stripe_client(API_KEY, stripe_server.url, 10), RateLimiter(1000))
    failures = []

    # WHEN 20 charges are declined
    for number in range(20):
        params = {
            "amount": 500,
            "currency": "usd",
            "customer": customer,
            "payment_method": "pm_card_chargeDeclined",
            "confirm": True,
            "off_session": True,
        }
        with pytest.raises(PaymentFailed) as raised:
            payments.create_payment_intent(params, f"adapter-decline-{number}")
        failures.append(raised.value.failure)
        del raised

    # THEN each was classified as a decline, and reference counting alone freed everything the calls made:
    # no SDK exception, traceback or frame (with its parameters) waits for the garbage collector
    assert {(failure.kind, failure.code) for failure in failures} == {
        (FailureKind.SOFT_DECLINE, "card_declined")
    }
    assert _cyclic_garbage_of_charges() == []
