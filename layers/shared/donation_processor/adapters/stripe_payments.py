"""Stripe adapter: PaymentIntents through the SDK's StripeClient; errors become StripeFailure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import stripe

from donation_processor.charge_outcome import (
    FailureKind,
    PaymentFailed,
    StripeFailure,
    classify_card_error,
    classify_http,
)
from donation_processor.ports import PaymentIntentResult
from donation_processor.rate_limiter import RateLimiter

_MESSAGE_LIMIT = 300


def build_stripe_client(api_key: str, api_base: str | None, timeout_seconds: float) -> stripe.StripeClient:
    """One client per container. Network retries are 0 on purpose: the engine retries with the same
    idempotency key under the shared rate limiter, counts each retry and feeds the circuit breaker;
    SDK retries would bypass all three."""
    base_addresses: dict[str, str] = {"api": api_base} if api_base else {}
    return stripe.StripeClient(
        api_key,
        base_addresses=base_addresses,  # type: ignore[arg-type]
        max_network_retries=0,
        http_client=stripe.RequestsClient(timeout=timeout_seconds),
    )


def _header(error: stripe.StripeError, name: str) -> str | None:
    headers = error.headers or {}
    for key, value in headers.items():
        if key.lower() == name:
            return str(value)
    return None


def _failure_from(error: stripe.StripeError) -> StripeFailure:
    error_object = error.error
    decline_code = getattr(error_object, "decline_code", None) if error_object else None
    intent = getattr(error_object, "payment_intent", None) if error_object else None
    intent_id = getattr(intent, "id", None) if intent is not None else None
    message = (error.user_message or str(error._message or ""))[:_MESSAGE_LIMIT]
    error_type = getattr(error_object, "type", None) or type(error).__name__
    if isinstance(error, stripe.APIConnectionError):
        return StripeFailure(
            FailureKind.TRANSIENT, "api_connection_error", message=message, availability=True
        )
    if isinstance(error, stripe.CardError):
        kind = classify_card_error(error.code, decline_code)
    else:
        should_retry_header = _header(error, "stripe-should-retry")
        should_retry = None if should_retry_header is None else should_retry_header == "true"
        kind = classify_http(error.http_status, error.code, should_retry, error_type)
    status = error.http_status
    return StripeFailure(
        kind=kind,
        error_type=error_type,
        code=error.code,
        decline_code=decline_code,
        message=message,
        http_status=status,
        payment_intent_id=intent_id,
        availability=status is None or status >= 500,
    )


def _result(intent: stripe.PaymentIntent) -> PaymentIntentResult:
    replayed = (intent.last_response is not None) and (
        intent.last_response.headers.get("Idempotent-Replayed") == "true"
    )
    return PaymentIntentResult(
        payment_intent_id=intent.id,
        status=intent.status,
        replayed=replayed,
        amount=getattr(intent, "amount", None),
        currency=getattr(intent, "currency", None),
    )


class StripePayments:
    """Every call waits for the shared rate limiter first; one HTTP request per call, no hidden retries."""

    def __init__(self, client: stripe.StripeClient, limiter: RateLimiter) -> None:
        self._intents = client.v1.payment_intents
        self._limiter = limiter

    def _request(self, operation: Any, *args: Any, **kwargs: Any) -> Any:
        """One SDK call under the shared limiter; its answer fed back to the limiter either way."""
        self._limiter.acquire()
        try:
            response = operation(*args, **kwargs)
        except stripe.StripeError as error:
            failure = self._classify(error)
        else:
            self._limiter.on_success()
            return response
        raise PaymentFailed(failure)  # outside the except block: no reference to the SDK's exception

    def _call(self, operation: Any, *args: Any, **kwargs: Any) -> PaymentIntentResult:
        return _result(self._request(operation, *args, **kwargs))

    def _classify(self, error: stripe.StripeError) -> StripeFailure:
        """Feed the limiter and classify; then drop the SDK's traceback.

        The SDK's exception sits in a reference cycle with its traceback's frames (about 80 objects a
        decline, measured), which would keep our frames and their parameters alive until the cyclic
        garbage collector runs, later the larger the heap. Everything we use from it is in the failure.
        """
        self._feed_back(error)
        failure = _failure_from(error)
        error.__traceback__ = None
        return failure

    def _feed_back(self, error: stripe.StripeError) -> None:
        """Tell the shared limiter what Stripe's answer says about the rate (lock_timeout is per object)."""
        if error.http_status == 429 and error.code != "lock_timeout":
            self._limiter.on_throttled()
        elif error.http_status is not None and error.http_status < 500:
            self._limiter.on_success()  # a decline or a 4xx still proves the rate was acceptable

    def create_payment_intent(self, params: Mapping[str, Any], idempotency_key: str) -> PaymentIntentResult:
        return self._call(
            self._intents.create, params=dict(params), options={"idempotency_key": idempotency_key}
        )

    def confirm_payment_intent(
        self, payment_intent_id: str, params: Mapping[str, Any], idempotency_key: str
    ) -> PaymentIntentResult:
        return self._call(
            self._intents.confirm,
            payment_intent_id,
            params=dict(params),
            options={"idempotency_key": idempotency_key},
        )

    def retrieve_payment_intent(self, payment_intent_id: str) -> PaymentIntentResult:
        return self._call(self._intents.retrieve, payment_intent_id)

    def find_payment_intent(self, scheduled_donation_id: str, period: str) -> PaymentIntentResult | None:
        """Search by metadata; ids and periods are validated to [A-Za-z0-9_-], so quoting is safe."""
        query = (
            f"metadata['scheduled_donation_id']:'{scheduled_donation_id}' AND metadata['period']:'{period}'"
        )
        found = self._request(self._intents.search, params={"query": query, "limit": 10})
        intents = [_result(intent) for intent in found.data]
        # A period has at most one PaymentIntent by design; if an operator made more, trust a success.
        for wanted in ("succeeded", "processing"):
            for intent in intents:
                if intent.status == wanted:
                    return intent
        return next((intent for intent in intents if intent.status != "canceled"), None)
