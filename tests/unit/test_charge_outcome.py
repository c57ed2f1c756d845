"""Classification of Stripe's answers into retry / dunning / stop / fatal."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from donation_processor.charge_outcome import (
    HARD_DECLINE_CODES,
    TRANSIENT_CODES,
    FailureKind,
    PaymentFailed,
    StripeFailure,
    classify_card_error,
    classify_http,
)

SOFT_DECLINE_CODES = ("insufficient_funds", "try_again_later", "generic_decline", "do_not_honor")


@pytest.mark.parametrize("decline_code", SOFT_DECLINE_CODES)
def test_retryable_decline_codes_are_soft_declines(decline_code: str) -> None:
    # GIVEN a card_declined error with a decline code the card may recover from
    # WHEN it is classified
    kind = classify_card_error("card_declined", decline_code)

    # THEN it goes to dunning, not to a stop
    assert kind is FailureKind.SOFT_DECLINE


def test_processing_error_as_error_code_is_a_soft_decline() -> None:
    # GIVEN a card error whose code (not decline code) is processing_error
    # WHEN it is classified
    kind = classify_card_error("processing_error", None)

    # THEN it is a soft decline
    assert kind is FailureKind.SOFT_DECLINE


@pytest.mark.parametrize("decline_code", ["stolen_card", "lost_card", "fraudulent", "invalid_account"])
def test_decline_codes_that_forbid_retrying_are_hard_declines(decline_code: str) -> None:
    # GIVEN a card_declined error with a decline code the networks forbid retrying
    # WHEN it is classified
    kind = classify_card_error("card_declined", decline_code)

    # THEN the schedule must stop
    assert kind is FailureKind.HARD_DECLINE


@pytest.mark.parametrize(
    ("code", "decline_code"),
    [
        ("expired_card", None),
        ("authentication_required", None),
        ("card_declined", "authentication_required"),
    ],
)
def test_hard_declines_are_found_in_the_error_code_as_well_as_the_decline_code(
    code: str, decline_code: str | None
) -> None:
    # GIVEN a card error whose hard reason is carried in the code or in the decline code
    # WHEN it is classified
    kind = classify_card_error(code, decline_code)

    # THEN it is a hard decline
    assert kind is FailureKind.HARD_DECLINE


@pytest.mark.parametrize("status", [500, 502, 503, 504, None])
def test_server_errors_and_lost_connections_are_transient(status: int | None) -> None:
    # GIVEN a 5xx, or no answer at all, even with Stripe-Should-Retry: false
    # WHEN it is classified
    kind = classify_http(status, None, False, "api_error")

    # THEN it is retried with the same key (the outcome is unknown)
    assert kind is FailureKind.TRANSIENT


@pytest.mark.parametrize(
    ("status", "code", "should_retry", "error_type"),
    [
        (429, "rate_limit", None, "invalid_request_error"),
        (429, None, False, "invalid_request_error"),
        (400, "lock_timeout", None, "invalid_request_error"),
        (400, "parameter_invalid_empty", True, "invalid_request_error"),
        (409, "idempotency_key_in_use", None, "idempotency_error"),
    ],
)
def test_rate_limits_lock_timeouts_and_should_retry_are_transient(
    status: int, code: str | None, should_retry: bool | None, error_type: str
) -> None:
    # GIVEN a 4xx that Stripe marks as retryable by status, code or header
    # WHEN it is classified
    kind = classify_http(status, code, should_retry, error_type)

    # THEN it is transient
    assert kind is FailureKind.TRANSIENT


@pytest.mark.parametrize("status", [401, 403])
def test_authentication_and_permission_errors_are_fatal(status: int) -> None:
    # GIVEN a 401 or 403, even with Stripe-Should-Retry: true
    # WHEN it is classified
    kind = classify_http(status, None, True, "authentication_error")

    # THEN the whole run must stop
    assert kind is FailureKind.FATAL


@pytest.mark.parametrize(
    ("code", "error_type"),
    [
        ("resource_missing", "invalid_request_error"),
        (None, "idempotency_error"),
        ("parameter_invalid_integer", "invalid_request_error"),
    ],
)
def test_bad_requests_are_invalid_requests(code: str | None, error_type: str) -> None:
    # GIVEN a 400 without any retry signal
    # WHEN it is classified
    kind = classify_http(400, code, None, error_type)

    # THEN our data is wrong for Stripe: stop and dead-letter
    assert kind is FailureKind.INVALID_REQUEST


@pytest.mark.parametrize(
    ("code", "expected"),
    [("expired_card", FailureKind.HARD_DECLINE), ("card_declined", FailureKind.SOFT_DECLINE)],
)
def test_a_402_without_a_card_error_type_is_classified_as_a_card_error(
    code: str, expected: FailureKind
) -> None:
    # GIVEN a 402 that did not arrive as a CardError
    # WHEN it is classified
    kind = classify_http(402, code, None, "invalid_request_error")

    # THEN it follows the card rules
    assert kind is expected


decline_codes = st.one_of(
    st.sampled_from(sorted(HARD_DECLINE_CODES) + list(SOFT_DECLINE_CODES)), st.text(max_size=40)
)


@settings(max_examples=400, deadline=None)
@given(code=st.one_of(st.none(), decline_codes), decline_code=st.one_of(st.none(), decline_codes))
def test_property_a_card_decline_is_never_transient(code: str | None, decline_code: str | None) -> None:
    # GIVEN any card error code and decline code, known or not
    # WHEN it is classified
    kind = classify_card_error(code, decline_code)

    # THEN it is a soft or hard decline, hard exactly when a known hard code is present
    assert kind in (FailureKind.SOFT_DECLINE, FailureKind.HARD_DECLINE)
    assert (kind is FailureKind.HARD_DECLINE) == bool({code, decline_code} & HARD_DECLINE_CODES)


@settings(max_examples=200, deadline=None)
@given(code=st.one_of(st.none(), decline_codes.filter(lambda code: code not in TRANSIENT_CODES)))
def test_property_a_402_card_error_without_retry_signal_is_never_transient(code: str | None) -> None:
    # GIVEN a 402 card_error with Stripe-Should-Retry: false and any card code
    # (Stripe's retryable API codes such as lock_timeout are not card codes)
    # WHEN it is classified over HTTP
    kind = classify_http(402, code, False, "card_error")

    # THEN it is a decline
    assert kind in (FailureKind.SOFT_DECLINE, FailureKind.HARD_DECLINE)


def test_reason_prefers_decline_code_then_code_then_type() -> None:
    # GIVEN failures with progressively less detail
    detailed = StripeFailure(
        FailureKind.SOFT_DECLINE, "card_error", code="card_declined", decline_code="do_not_honor"
    )
    coded = StripeFailure(FailureKind.INVALID_REQUEST, "invalid_request_error", code="resource_missing")
    bare = StripeFailure(FailureKind.TRANSIENT, "api_error")

    # WHEN their reasons are read
    # THEN the most specific one is used
    assert (detailed.reason, coded.reason, bare.reason) == ("do_not_honor", "resource_missing", "api_error")


def test_payment_failed_carries_the_failure_and_names_kind_and_reason() -> None:
    # GIVEN a classified hard decline
    failure = StripeFailure(FailureKind.HARD_DECLINE, "card_error", decline_code="stolen_card")

    # WHEN it is raised
    with pytest.raises(PaymentFailed, match="hard_decline: stolen_card") as raised:
        raise PaymentFailed(failure)

    # THEN the exception carries it unchanged
    assert raised.value.failure is failure
