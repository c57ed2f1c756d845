"""The local Stripe server, exercised through the real stripe SDK exactly as the job uses it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import stripe

from harness.local.stripe_server import FakeStripeState, Fault, RunningStripeServer, start_stripe_server

API_KEY = "sk_test_local"
DONATION_METADATA = {"scheduled_donation_id": "sd_1", "period": "2025-01"}


def make_client(url: str, api_key: str = API_KEY) -> stripe.StripeClient:
    # A short timeout keeps the dropped-connection tests fast if something regresses.
    return stripe.StripeClient(
        api_key,
        base_addresses={"api": url},
        max_network_retries=0,
        http_client=stripe.RequestsClient(timeout=2),
    )


@pytest.fixture
def server() -> Iterator[RunningStripeServer]:
    with start_stripe_server() as running:
        yield running


@pytest.fixture
def state(server: RunningStripeServer) -> FakeStripeState:
    return server.state


@pytest.fixture
def client(server: RunningStripeServer) -> stripe.StripeClient:
    return make_client(server.url)


@pytest.fixture
def customer(state: FakeStripeState) -> str:
    return state.create_customer()


def charge_params(customer: str, payment_method: str = "pm_card_visa", **overrides: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "amount": 2500,
        "currency": "usd",
        "customer": customer,
        "payment_method": payment_method,
        "confirm": True,
        "off_session": True,
        "metadata": dict(DONATION_METADATA),
        "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
    }
    params.update(overrides)
    return params


def charge(
    client: stripe.StripeClient, params: dict[str, Any], key: str | None = None
) -> stripe.PaymentIntent:
    options: stripe.RequestOptions = {"idempotency_key": key} if key else {}
    return client.v1.payment_intents.create(params=params, options=options)  # type: ignore[arg-type]


def test_successful_charge_is_recorded_once(
    client: stripe.StripeClient, state: FakeStripeState, customer: str
) -> None:
    # Given a customer with a working card
    # When the job charges it off-session
    intent = charge(client, charge_params(customer), key="sd_1:2025-01")

    # Then the PaymentIntent succeeded and the ledger holds exactly that one charge
    assert intent.status == "succeeded"
    assert intent.latest_charge is not None
    assert str(intent.latest_charge).startswith("ch_")
    assert intent.metadata["scheduled_donation_id"] == "sd_1"
    [record] = state.charges()
    assert (record.payment_intent_id, record.amount, record.currency) == (intent.id, 2500, "usd")
    assert (record.customer, record.idempotency_key) == (customer, "sd_1:2025-01")
    assert record.metadata == DONATION_METADATA
    assert state.charge_counts_by() == {("sd_1", "2025-01"): 1}


def test_customer_created_over_http_can_be_retrieved(client: stripe.StripeClient) -> None:
    # Given a customer created through the API (email is accepted but not kept)
    created = client.v1.customers.create(params={"email": "donor@example.org", "metadata": {"donor": "d1"}})

    # When it is fetched back
    fetched = client.v1.customers.retrieve(created.id)

    # Then it is the same customer with its metadata
    assert created.id.startswith("cus_")
    assert fetched.id == created.id
    assert fetched.metadata is not None
    assert fetched.metadata["donor"] == "d1"


def test_same_idempotency_key_replays_without_a_second_charge(
    client: stripe.StripeClient, state: FakeStripeState, customer: str
) -> None:
    # Given a charge made with an idempotency key
    first = charge(client, charge_params(customer), key="key-1")

    # When the identical request is retried with the same key
    second = charge(client, charge_params(customer), key="key-1")

    # Then Stripe's stored result is replayed and nothing new is charged
    assert second.id == first.id
    assert second.last_response is not None
    assert second.last_response.headers.get("Idempotent-Replayed") == "true"
    assert len(state.charges()) == 1
    assert state.replayed_count == 1


def test_same_key_with_different_params_is_an_idempotency_error(
    client: stripe.StripeClient, state: FakeStripeState, customer: str
) -> None:
    # Given a charge made with an idempotency key
    charge(client, charge_params(customer), key="key-1")

    # When the key is reused for a different amount
    # Then the SDK raises IdempotencyError and nothing else is charged
    with pytest.raises(stripe.IdempotencyError):
        charge(client, charge_params(customer, amount=9999), key="key-1")
    assert len(state.charges()) == 1


def test_forgotten_key_charges_again(
    client: stripe.StripeClient, state: FakeStripeState, customer: str
) -> None:
    # Given a charge made with a key, and Stripe's 24 h idempotency window has passed
    first = charge(client, charge_params(customer), key="key-1")
    state.forget_idempotency_keys()

    # When the same key is used again
    second = charge(client, charge_params(customer), key="key-1")

    # Then it is a brand-new charge
    assert second.id != first.id
    assert len(state.charges()) == 2


@pytest.mark.parametrize(
    ("payment_method", "code", "decline_code"),
    [
        ("pm_card_chargeDeclined", "card_declined", "generic_decline"),
        ("pm_card_chargeDeclinedInsufficientFunds", "card_declined", "insufficient_funds"),
        ("pm_card_chargeDeclinedLostCard", "card_declined", "lost_card"),
        ("pm_card_chargeDeclinedStolenCard", "card_declined", "stolen_card"),
        ("pm_card_chargeDeclinedFraudulent", "card_declined", "fraudulent"),
        ("pm_card_chargeDeclinedExpiredCard", "expired_card", "expired_card"),
        ("pm_card_chargeDeclinedProcessingError", "processing_error", "processing_error"),
        ("pm_card_chargeDeclinedIncorrectCvc", "incorrect_cvc", "incorrect_cvc"),
        ("pm_card_authenticationRequired", "authentication_required", "authentication_required"),
    ],
)
def test_declining_payment_methods_raise_card_error(
    client: stripe.StripeClient,
    state: FakeStripeState,
    customer: str,
    payment_method: str,
    code: str,
    decline_code: str,
) -> None:
    # Given a customer whose saved card declines
    # When the job charges it off-session
    with pytest.raises(stripe.CardError) as caught:
        charge(client, charge_params(customer, payment_method))

    # Then the SDK raises CardError carrying Stripe's codes and the failed PaymentIntent
    error = caught.value
    assert error.code == code
    assert error.error is not None
    assert error.error.decline_code == decline_code
    intent = error.error.payment_intent
    assert intent is not None
    assert intent.id.startswith("pi_")
    assert intent.status == "requires_payment_method"
    assert intent.last_payment_error is not None
    assert intent.last_payment_error.code == code
    assert state.charges() == []


def test_confirm_after_decline_with_new_card_succeeds_once(
    client: stripe.StripeClient, state: FakeStripeState, customer: str
) -> None:
    # Given a PaymentIntent that was declined, and a new card registered for the donor
    with pytest.raises(stripe.CardError) as caught:
        charge(client, charge_params(customer, "pm_card_chargeDeclinedInsufficientFunds"))
    assert caught.value.error is not None
    assert caught.value.error.payment_intent is not None
    intent_id = caught.value.error.payment_intent.id
    state.set_payment_method_behaviour("pm_new_card", "succeeded")

    # When the job confirms the same PaymentIntent with the new card
    confirmed = client.v1.payment_intents.confirm(
        intent_id, params={"payment_method": "pm_new_card", "off_session": True}
    )

    # Then it succeeds, and confirming it again is refused without a second charge
    assert confirmed.status == "succeeded"
    with pytest.raises(stripe.InvalidRequestError) as again:
        client.v1.payment_intents.confirm(intent_id, params={"payment_method": "pm_new_card"})
    assert again.value.code == "payment_intent_unexpected_state"
    assert [record.payment_method for record in state.charges()] == ["pm_new_card"]


def test_authentication_required_on_session_asks_for_action(
    client: stripe.StripeClient, state: FakeStripeState, customer: str
) -> None:
    # Given a card that needs 3DS
    # When it is charged with the customer present (not off-session)
    intent = charge(client, charge_params(customer, "pm_card_authenticationRequired", off_session=False))

    # Then Stripe asks for authentication instead of declining, and nothing is charged
    assert intent.status == "requires_action"
    assert state.charges() == []


def test_registered_decline_outcome(
    client: stripe.StripeClient, state: FakeStripeState, customer: str
) -> None:
    # Given a custom payment method registered to decline as do_not_honor
    state.set_payment_method_behaviour("pm_custom", ("card_declined", "do_not_honor"))

    # When it is charged
    with pytest.raises(stripe.CardError) as caught:
        charge(client, charge_params(customer, "pm_custom"))

    # Then the registered decline comes back
    assert caught.value.error is not None
    assert caught.value.error.decline_code == "do_not_honor"


def test_unknown_payment_method_is_resource_missing(client: stripe.StripeClient, customer: str) -> None:
    # Given a payment method id that is neither a test shortcut nor registered
    # When it is charged
    # Then Stripe reports it missing
    with pytest.raises(stripe.InvalidRequestError) as caught:
        charge(client, charge_params(customer, "pm_does_not_exist"))
    assert caught.value.code == "resource_missing"
    assert caught.value.param == "payment_method"


def test_unknown_customer_is_invalid_request(client: stripe.StripeClient, state: FakeStripeState) -> None:
    # Given a customer id Stripe has never seen
    # When it is charged
    # Then the SDK raises InvalidRequestError resource_missing and nothing is charged
    with pytest.raises(stripe.InvalidRequestError) as caught:
        charge(client, charge_params("cus_missing"))
    assert caught.value.code == "resource_missing"
    assert caught.value.param == "customer"
    assert state.charges() == []


def test_unknown_currency_is_invalid_request(client: stripe.StripeClient, customer: str) -> None:
    # Given a currency Stripe does not support
    # When it is charged
    # Then the error names the currency param
    with pytest.raises(stripe.InvalidRequestError) as caught:
        charge(client, charge_params(customer, currency="xyz"))
    assert caught.value.param == "currency"


def test_bad_api_key_is_authentication_error(server: RunningStripeServer, customer: str) -> None:
    # Given a client holding a live-looking key
    client = make_client(server.url, api_key="sk_live_not_allowed_here")

    # When it calls the API
    # Then the SDK raises AuthenticationError and nothing is charged
    with pytest.raises(stripe.AuthenticationError):
        charge(client, charge_params(customer))
    assert server.state.charges() == []


def test_rate_limit_is_rate_limit_error_and_counted(
    client: stripe.StripeClient, state: FakeStripeState, customer: str
) -> None:
    # Given a limit of one request per second
    state.set_rate_limit(1)

    # When two requests arrive back to back
    client.v1.customers.retrieve(customer)
    with pytest.raises(stripe.RateLimitError) as caught:
        client.v1.customers.retrieve(customer)

    # Then the second is rejected with Stripe's rate_limit error and counted
    assert caught.value.error is not None
    assert caught.value.error.code == "rate_limit"
    assert state.rate_limited_count == 1


def test_http_500_is_api_error_and_charges_nothing(
    client: stripe.StripeClient, state: FakeStripeState, customer: str
) -> None:
    # Given Stripe will fail the next PaymentIntent request with a 500
    state.inject_faults(Fault("http_500"))

    # When the job charges with a key
    with pytest.raises(stripe.APIError) as caught:
        charge(client, charge_params(customer), key="key-500")

    # Then nothing was charged, and the key was not burnt: a retry charges once
    assert caught.value.http_status == 500
    assert state.charges() == []
    charge(client, charge_params(customer), key="key-500")
    assert len(state.charges()) == 1


def test_lock_timeout_is_rate_limit_error_but_not_a_rate_limit(
    client: stripe.StripeClient, state: FakeStripeState, customer: str
) -> None:
    # Given a lock_timeout fault queued for the next charge
    state.inject_faults(Fault("lock_timeout"))

    # When the job charges
    with pytest.raises(stripe.RateLimitError) as caught:
        charge(client, charge_params(customer))

    # Then the SDK sees a 429 lock_timeout, nothing is charged and the rate-limit counter is untouched
    assert caught.value.error is not None
    assert caught.value.error.code == "lock_timeout"
    assert state.charges() == []
    assert state.rate_limited_count == 0


def test_drop_after_charges_but_client_sees_connection_error_then_replays(
    client: stripe.StripeClient, state: FakeStripeState, customer: str
) -> None:
    # Given Stripe will charge the next request but the response will be lost
    state.inject_faults(Fault("drop_after"))

    # When the job charges with a key
    with pytest.raises(stripe.APIConnectionError):
        charge(client, charge_params(customer), key="key-drop")

    # Then the charge did happen
    [record] = state.charges()

    # And a retry with the same key replays it instead of charging twice
    retried = charge(client, charge_params(customer), key="key-drop")
    assert retried.id == record.payment_intent_id
    assert retried.status == "succeeded"
    assert len(state.charges()) == 1


def test_drop_before_charges_nothing(
    client: stripe.StripeClient, state: FakeStripeState, customer: str
) -> None:
    # Given the next request will be lost before Stripe executes it
    state.inject_faults(Fault("drop_before"))

    # When the job charges
    # Then the client sees a connection error and nothing was charged
    with pytest.raises(stripe.APIConnectionError):
        charge(client, charge_params(customer), key="key-drop")
    assert state.charges() == []
    assert state.requests_log[-1].status == 0


def test_concurrent_request_with_key_in_flight_gets_409(
    server: RunningStripeServer, state: FakeStripeState, customer: str
) -> None:
    # Given a slow first request holding an idempotency key
    state.inject_faults(Fault("delay", delay_ms=400))
    first = threading.Thread(target=charge, args=(make_client(server.url), charge_params(customer), "key-1"))
    first.start()
    time.sleep(0.15)

    # When a duplicate with the same key arrives while the first is in flight
    with pytest.raises(stripe.APIError) as caught:
        charge(make_client(server.url), charge_params(customer), key="key-1")
    first.join(timeout=5)

    # Then it is told the key is in use, and only the first charges
    assert caught.value.http_status == 409
    assert caught.value.error is not None
    assert caught.value.error.code == "idempotency_key_in_use"
    assert len(state.charges()) == 1


def test_search_by_metadata_finds_the_payment_intent(client: stripe.StripeClient, customer: str) -> None:
    # Given two donations charged for different periods
    january = charge(client, charge_params(customer))
    charge(client, charge_params(customer, metadata={"scheduled_donation_id": "sd_1", "period": "2025-02"}))

    # When searching by donation id, and by donation id AND period (both quoting styles)
    by_donation = client.v1.payment_intents.search(
        params={"query": "metadata['scheduled_donation_id']:'sd_1'"}
    )
    by_period = client.v1.payment_intents.search(
        params={"query": 'metadata["scheduled_donation_id"]:"sd_1" AND metadata["period"]:"2025-01"'}
    )

    # Then both intents, or just January's, come back
    assert len(by_donation.data) == 2
    assert [intent.id for intent in by_period.data] == [january.id]


def test_list_by_customer(client: stripe.StripeClient, state: FakeStripeState, customer: str) -> None:
    # Given charges for two customers
    mine = charge(client, charge_params(customer))
    charge(client, charge_params(state.create_customer()))

    # When listing one customer's PaymentIntents
    listed = client.v1.payment_intents.list(params={"customer": customer, "limit": 10})

    # Then only theirs come back
    assert [intent.id for intent in listed.data] == [mine.id]


def test_latency_is_applied(client: stripe.StripeClient, state: FakeStripeState, customer: str) -> None:
    # Given 200 ms of simulated network latency
    state.set_latency(200)

    # When a request is made
    started = time.monotonic()
    client.v1.customers.retrieve(customer)

    # Then it took at least that long
    assert time.monotonic() - started >= 0.19
