"""Hostile input: broken scheduled-donation documents and broken invocation events, end to end.

Every test drives the real adapters against the local services (moto's server, mongomock, the
Stripe-compatible server). The requirement under test: the run never crashes, never charges an invalid
document, and dead-letters each invalid document with a reason that names the bad field; a malformed
invocation event is refused with an InvalidEventError naming the field before anything is read or charged.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bson
import pytest
from bson import Decimal128
from hypothesis import HealthCheck, given, settings
from hypothesis import event as hypothesis_event
from hypothesis import strategies as st

import app
from donation_processor.currencies import STRIPE_CURRENCIES
from donation_processor.engine import DonationEngine
from donation_processor.exceptions import InvalidEventError
from donation_processor.invocation import RunRequest
from donation_processor.summary import RunSummary
from harness.local.lambda_context import LocalLambdaContext
from harness.local.seed import naive_utc, scheduled_donation
from harness.local.services import LocalServices
from tests.support.clock import TestClock
from tests.support.dead_letters import read_dead_letters

pytestmark = pytest.mark.faults

SCHEDULED = RunRequest(source="schedule")
PLENTY_OF_TIME: Callable[[], int] = lambda: 900_000  # noqa: E731
ENGINE_SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
HANDLER_SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# Every field the validator may name; a reason is checked against this list by substring.
VALIDATED_FIELDS = (
    "_id",
    "stripeCustomerId",
    "stripePaymentMethodId",
    "amount",
    "currency",
    "frequency",
    "nextRunAt",
    "periodStart",
    "attempts",
    "anchorDay",
    "paymentIntentId",
)
FREQUENCIES = frozenset({"weekly", "monthly", "quarterly", "yearly"})
VALID_AMOUNT, VALID_CURRENCY = 2500, "usd"
OVERSIZED = 10_000
MISSING = object()  # a corruption value that deletes the field
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # BSON refuses wider ints at insert, so they never reach a run
INJECTIONS: tuple[dict[str, Any], ...] = ({"$gt": ""}, {"$ne": None})

# The event contract as docs/ARCHITECTURE.md states it ("Invocation events and the run summary"), written
# independently of donation_processor.invocation so that a parser accepting a malformed event makes the test
# fail.
MANUAL_FIELDS = frozenset({"dryRun", "donationIds", "limit"})
EVENT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_IDS, MAX_LIMIT = 1000, 1_000_000
SUMMARY_KEYS = frozenset(
    {
        "runId",
        "status",
        "due",
        "succeeded",
        "failed",
        "retried",
        "deadLettered",
        "invalid",
        "skipped",
        "missed",
        "deadLettersDeferred",
        "overdue",
        "donorEventsFailed",
        "systemicCode",
        "unseen",
        "durationMs",
        "amountByCurrency",
    }
)
SCHEDULED_EVENT: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[2] / "events" / "scheduled.json").read_text(encoding="utf-8")
)


# -- shared helpers -----------------------------------------------------------------------------------------


def _fresh_state(services: LocalServices) -> None:
    """Function-scoped fixtures live across hypothesis examples: start each example from nothing."""
    services.database["scheduled_donations"].delete_many({})
    services.database["donations"].delete_many({})
    services.stripe.state.reset()
    read_dead_letters(services)  # drain whatever an earlier example left in the queue


def _snapshot(services: LocalServices) -> dict[str, list[bytes]]:
    """Both collections as BSON bytes (NaN-safe, order- and type-exact) to prove nothing changed."""
    return {
        name: sorted(bson.encode(document) for document in services.database[name].find())
        for name in ("scheduled_donations", "donations")
    }


def _named_fields(text: str) -> set[str]:
    return {field for field in VALIDATED_FIELDS if field in text}


def _charged_ids(services: LocalServices) -> list[str]:
    return sorted(
        charge.metadata.get("scheduled_donation_id", "") for charge in services.stripe.state.charges()
    )


# -- broken scheduled-donation documents ---------------------------------------------------------------------


@dataclass(frozen=True)
class Corruption:
    field: str
    value: Any  # MISSING deletes the field
    keeps_due: bool = True  # False when the corruption takes the document out of the due query


@dataclass(frozen=True)
class BrokenDonation:
    document: dict[str, Any]
    fields: frozenset[str]  # the fields made invalid (junk fields are not in here: they are harmless)
    due: bool


def _shapes(field: str, *values: Any, keeps_due: bool = True) -> list[Corruption]:
    return [Corruption(field, value, keeps_due) for value in values]


def _stripe_id_shapes(field: str, prefix: str, tail: str) -> list[Corruption]:
    return _shapes(
        field,
        MISSING,
        None,
        42,
        *INJECTIONS,
        [f"{prefix}{tail}", f"{prefix}other"],
        prefix + "A" * OVERSIZED,  # right prefix, 10k characters
        f"{prefix}{tail}\n",
        f"{prefix}{tail}\nX-Injected: 1",
        f" {prefix}{tail}",
        "",
        prefix.upper() + tail,
        "tok_visa",
        "pi_123",
    )


def corruption_catalog(index: int) -> list[Corruption]:
    """Every broken shape the requirement lists, once. `index` keeps corrupted `_id`s unique per document
    (and unique in their first 256 characters, which is what a dead letter keeps of an id)."""
    return [
        *_shapes(
            "_id",
            f"bad id {index}",  # spaces
            f"{index}-" + "a" * 200,  # 200+ characters
            f"d\u00f6n-{index}",  # non-ASCII letter
            f"\u2603-snow-{index}",
            f"id-{index}\n",  # trailing newline
            f"{index}$gt",
            10_000 + index,  # an int id (a dict id would be an embedded document: not used)
        ),
        *_stripe_id_shapes("stripeCustomerId", "cus_", "Abc123"),
        *_stripe_id_shapes("stripePaymentMethodId", "pm_", "card_visa"),
        *_shapes(
            "amount",
            MISSING,
            None,
            0,
            -1,
            12.5,
            2500.0,  # integral, but a float: the wrong type
            True,
            False,
            "2500",
            100_000_000,  # one above Stripe's eight digits
            10**12,
            INT64_MAX,  # the largest storable amount (2**63 itself is refused by BSON at insert)
            INT64_MIN,
            math.nan,
            math.inf,
            -math.inf,
            Decimal128("25.00"),
            Decimal128("2500"),
            *INJECTIONS,
        ),
        *_shapes("currency", MISSING, None, "", 840, "USD", "Eur", "usd\n", " usd", "xxx", "u" * OVERSIZED),
        *_shapes("currency", ["usd"], *INJECTIONS),
        *_shapes("frequency", MISSING, None, 30, ["monthly"], "daily", "Monthly", "monthly ", {"$ne": None}),
        # Not a datetime, so the due query ({"nextRunAt": {"$lte": now}}) never matches: never claimed, never
        # charged, never dead-lettered. That is correct (an undated schedule is not due); the tests assert the
        # document is left byte-for-byte untouched.
        *_shapes(
            "nextRunAt",
            MISSING,
            None,
            "2020-01-01T00:00:00Z",
            "2020-01-01T00:00:00+05:00",  # ISO text with a non-UTC offset
            1_600_000_000,  # epoch seconds
            1_600_000_000_000,  # epoch milliseconds
            1.6e9,
            {"$lte": "now"},
            keeps_due=False,
        ),
        *_shapes("attempts", -1, INT64_MIN, "1", "0", 1.5, True),
        *_shapes("anchorDay", 0, 32, -1, "15", 1.5, True, None),
        *_shapes("periodStart", "2026-01-01T00:00:00Z", 1_600_000_000, "", {"$gt": ""}),
        *_shapes("paymentIntentId", "ch_123", "PI_123", "", "seti_123", 7, *INJECTIONS),
    ]


def _generated(field: str, strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Corruption]:
    return strategy.map(lambda value: Corruption(field, value))


# Values hypothesis makes up, on top of the catalog.
GENERATED_CORRUPTIONS = st.one_of(
    _generated("stripeCustomerId", st.text(max_size=40).filter(lambda text: not text.startswith("cus_"))),
    _generated("stripePaymentMethodId", st.text(max_size=40).filter(lambda text: not text.startswith("pm_"))),
    _generated("amount", st.integers(min_value=INT64_MIN, max_value=0)),
    _generated("amount", st.integers(min_value=100_000_000, max_value=INT64_MAX)),
    _generated("amount", st.floats(allow_nan=True, allow_infinity=True)),
    _generated(
        "currency",
        st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=3, max_size=3).filter(
            lambda code: code not in STRIPE_CURRENCIES
        ),
    ),
    _generated("frequency", st.text(max_size=20).filter(lambda text: text not in FREQUENCIES)),
    _generated("attempts", st.integers(min_value=INT64_MIN, max_value=-1)),
    _generated(
        "anchorDay",
        st.integers(min_value=INT64_MIN, max_value=INT64_MAX).filter(lambda day: not 1 <= day <= 31),
    ),
)

# Extra fields the store accepts (mongomock, like MongoDB, refuses `$` only in top-level names); they are not
# validated, so they never make a document invalid on their own and ride along with real corruptions.
JUNK_FIELDS: tuple[dict[str, Any], ...] = (
    {"meta": {"$where": "sleep(10000)"}},
    {"notes": {"$gt": ""}},
    {"odd.name": 1},
    {"blob": "z" * OVERSIZED},
)


def corrupt(document: dict[str, Any], corruptions: list[Corruption]) -> BrokenDonation:
    for item in corruptions:
        if item.value is MISSING:
            document.pop(item.field, None)
        else:
            document[item.field] = item.value
    return BrokenDonation(
        document=document,
        fields=frozenset(item.field for item in corruptions),
        due=all(item.keeps_due for item in corruptions),
    )


@st.composite
def broken_donations(draw: st.DrawFn, *, customer_id: str, due_at: datetime, index: int) -> BrokenDonation:
    """A valid due donation (real Stripe customer) with one to three fields corrupted, plus optional junk."""
    corruption = st.one_of(st.sampled_from(corruption_catalog(index)), GENERATED_CORRUPTIONS)
    corruptions = draw(st.lists(corruption, min_size=1, max_size=3, unique_by=lambda c: c.field))
    broken = corrupt(scheduled_donation(customer_id=customer_id, next_run_at=due_at), corruptions)
    for junk in draw(st.lists(st.sampled_from(JUNK_FIELDS), max_size=2, unique_by=lambda j: tuple(j))):
        broken.document.update(junk)
    return broken


def _assert_only_the_valid_donation_was_charged_and_each_broken_due_one_dead_lettered(
    services: LocalServices,
    clock: TestClock,
    summary: RunSummary,
    valid: dict[str, Any],
    broken: list[BrokenDonation],
    stored: dict[Any, dict[str, Any]],
) -> None:
    collection = services.database["scheduled_donations"]
    due_broken = [item for item in broken if item.due]

    # the run finished and Stripe's ledger holds exactly the valid donation's one charge
    assert summary.status == "completed"
    charges = services.stripe.state.charges()
    assert [(c.metadata.get("scheduled_donation_id"), c.amount, c.currency) for c in charges] == [
        (str(valid["_id"]), VALID_AMOUNT, VALID_CURRENCY)
    ]
    assert (summary.due, summary.succeeded, summary.failed) == (1 + len(due_broken), 1, 0)
    assert (summary.invalid, summary.dead_lettered) == (len(due_broken), len(due_broken))
    charged = collection.find_one({"_id": valid["_id"]})
    assert charged is not None
    assert charged["status"] == "active"
    assert charged["nextRunAt"] > naive_utc(clock.now)

    # every broken due document is stopped as invalid, its reason naming (only) corrupted fields
    for item in broken:
        after = collection.find_one({"_id": item.document["_id"]})
        assert after is not None
        if not item.due:
            # a document whose nextRunAt is not a datetime is never due: left exactly as it was
            assert bson.encode(after) == bson.encode(stored[item.document["_id"]])
            continue
        assert after["status"] == "invalid", (item.fields, after.get("status"), after.get("stopReason"))
        named = _named_fields(after["invalidReason"])
        assert named, after["invalidReason"]
        assert named <= item.fields, (after["invalidReason"], item.fields)
        assert after["stopReason"] == "invalid_document"
        assert "pendingDeadLetter" not in after  # delivered, so no longer parked
    assert collection.count_documents({"claimedBy": {"$exists": True}}) == 0
    assert (
        services.database["donations"].count_documents({"scheduledDonationId": {"$ne": str(valid["_id"])}})
        == 0
    )

    # exactly one dead letter per broken due document: reason invalid_document, message naming the field,
    # no operator or oversized value copied into it
    letters = read_dead_letters(services)
    by_id = {letter["scheduledDonationId"]: letter for letter in letters}
    assert len(by_id) == len(letters) == len(due_broken)
    for item in due_broken:
        letter = by_id[str(item.document["_id"])[:256]]
        assert letter["reason"] == "invalid_document"
        named = _named_fields(letter["message"])
        assert named, letter["message"]
        assert named <= item.fields, (letter["message"], item.fields)
        for key in ("stripeCustomerId", "amount", "currency", "donorId"):
            assert letter[key] is None or isinstance(letter[key], (str, int)), (key, letter[key])
            assert not isinstance(letter[key], str) or len(letter[key]) <= 64


def _insert(services: LocalServices, valid: dict[str, Any], broken: list[BrokenDonation]) -> dict[Any, Any]:
    """Insert everything; return each broken document as stored (mongomock normalises, as MongoDB does)."""
    collection = services.database["scheduled_donations"]
    collection.insert_many([valid, *(item.document for item in broken)])
    return {item.document["_id"]: collection.find_one({"_id": item.document["_id"]}) for item in broken}


def test_every_catalogued_broken_shape_in_one_run_is_never_charged_and_is_dead_lettered(
    services: LocalServices, clock: TestClock, make_engine: Callable[..., DonationEngine]
) -> None:
    # GIVEN one valid due donation and one broken donation per catalogued shape (108), all due
    # except those whose nextRunAt itself is broken
    stripe = services.stripe.state
    due_at = clock.now - timedelta(hours=1)
    valid = scheduled_donation(customer_id=stripe.create_customer(), next_run_at=due_at)
    shapes = len(corruption_catalog(0))
    broken = [
        corrupt(
            scheduled_donation(customer_id=stripe.create_customer(), next_run_at=due_at),
            [corruption_catalog(index)[index]],
        )
        for index in range(shapes)
    ]
    stored = _insert(services, valid, broken)

    # WHEN the scheduled run goes through them
    summary = make_engine().run(SCHEDULED, PLENTY_OF_TIME)

    # THEN only the valid donation is charged and each broken due one is invalid and dead-lettered once
    _assert_only_the_valid_donation_was_charged_and_each_broken_due_one_dead_lettered(
        services, clock, summary, valid, broken, stored
    )


# -- Property A: the engine against broken documents ---------------------------------------------------------


@ENGINE_SETTINGS
@given(data=st.data(), broken_count=st.integers(min_value=1, max_value=4))
def test_broken_documents_are_never_charged_and_each_is_dead_lettered_naming_the_bad_field(
    services: LocalServices,
    clock: TestClock,
    make_engine: Callable[..., DonationEngine],
    data: st.DataObject,
    broken_count: int,
) -> None:
    # GIVEN one valid due donation and 1-4 broken ones (a broken nextRunAt makes a document not due)
    _fresh_state(services)
    stripe = services.stripe.state
    due_at = clock.now - timedelta(hours=1)
    valid = scheduled_donation(customer_id=stripe.create_customer(), next_run_at=due_at)
    broken = [
        data.draw(
            broken_donations(customer_id=stripe.create_customer(), due_at=due_at, index=index),
            label=f"broken[{index}]",
        )
        for index in range(broken_count)
    ]
    stored = _insert(services, valid, broken)
    for item in broken:
        hypothesis_event(f"corrupted {'+'.join(sorted(item.fields))} ({'due' if item.due else 'not due'})")

    # WHEN the scheduled run goes through them
    summary = make_engine().run(SCHEDULED, PLENTY_OF_TIME)

    # THEN no exception, only the valid donation is charged, each broken due one is invalid and dead-lettered
    # once with a reason naming a corrupted field, and each broken one that is not due is untouched
    _assert_only_the_valid_donation_was_charged_and_each_broken_due_one_dead_lettered(
        services, clock, summary, valid, broken, stored
    )


# -- Property B: the handler against arbitrary and targeted broken events ------------------------------------


def _is_scheduled(event: object) -> bool:
    return isinstance(event, dict) and (event.get("source") == "aws.events" or "detail-type" in event)


def _event_problems(event: object) -> list[str]:
    """What is wrong with an event, as the tokens an InvalidEventError message must mention; [] = well formed.

    `donationIds: null` and `limit: null` count as absent (the parser treats them so; README is silent).
    """
    if event is None:
        return []
    if not isinstance(event, dict):
        return ["event"]
    if _is_scheduled(event):
        return [] if event.get("detail-type") == "Scheduled Event" else ["detail-type"]
    problems = [repr(key) for key in event if key not in MANUAL_FIELDS]
    if "dryRun" in event and not isinstance(event["dryRun"], bool):
        problems.append("dryRun")
    limit = event.get("limit")
    if limit is not None and (type(limit) is not int or not 1 <= limit <= MAX_LIMIT):
        problems.append("limit")
    ids = event.get("donationIds")
    if ids is not None and (
        type(ids) is not list
        or not 1 <= len(ids) <= MAX_IDS
        or not all(type(value) is str and EVENT_ID.fullmatch(value) for value in ids)
    ):
        problems.append("donationIds")
    return problems


JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20), st.sampled_from(INJECTIONS)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
EVENT_KEYS = st.one_of(
    st.sampled_from(
        [
            "dryRun",
            "donationIds",
            "limit",
            "source",
            "detail-type",
            "detail",
            "dryrun",
            "DryRun",
            "$where",
            "",
        ]
    ),
    st.text(max_size=12),
)
GOOD_IDS = st.lists(st.from_regex(EVENT_ID, fullmatch=True), min_size=1, max_size=5)
BAD_ID_LISTS = st.one_of(
    st.sampled_from(
        [
            [{"$gt": ""}],
            ["ok-id", {"$ne": None}],
            {"$gt": ""},
            {"$in": ["a"]},
            [],
            "abc",
            [f"id{n}" for n in range(2000)],
            [f"id{n}" for n in range(MAX_IDS + 1)],
            ["d\u00f6n"],
            ["line\nbreak"],
            ["a" * 65],
            [""],
            ["ok", 5],
            [["nested"]],
            ["a b"],
            ['{"$gt": ""}'],
        ]
    ),
    st.lists(st.text(max_size=70), min_size=1, max_size=4).filter(
        lambda ids: any(not EVENT_ID.fullmatch(value) for value in ids)
    ),
)
BAD_LIMITS = st.one_of(
    st.sampled_from([0, -1, 1.5, 10.0, MAX_LIMIT + 1, 10**30, "10", True, False, [], {"$gt": 0}, math.nan]),
    st.integers(max_value=0),
    st.integers(min_value=MAX_LIMIT + 1),
    st.floats(),
)
BAD_DRY_RUNS = st.one_of(
    st.sampled_from([0, 1, "true", "false", None, [], {}, 1.0, {"$ne": False}]), st.text(max_size=5)
)
VALID_MANUAL = st.fixed_dictionaries(
    {},
    optional={
        "dryRun": st.booleans(),
        "donationIds": GOOD_IDS,
        "limit": st.integers(min_value=1, max_value=10),
    },
)


@st.composite
def _one_bad_field(draw: st.DrawFn) -> dict[str, Any]:
    event = dict(draw(VALID_MANUAL))
    field, values = draw(
        st.sampled_from([("dryRun", BAD_DRY_RUNS), ("donationIds", BAD_ID_LISTS), ("limit", BAD_LIMITS)])
    )
    event[field] = draw(values)
    return event


@st.composite
def _unknown_key(draw: st.DrawFn) -> dict[str, Any]:
    event = dict(draw(VALID_MANUAL))
    event[draw(st.text(max_size=15).filter(lambda key: key not in MANUAL_FIELDS))] = draw(JSON_VALUES)
    return event


SCHEDULED_LOOKALIKES = st.one_of(
    st.builds(
        lambda detail_type: {**SCHEDULED_EVENT, "detail-type": detail_type},
        st.one_of(
            st.sampled_from(["scheduled event", "Scheduled Event ", "", None, 1, ["Scheduled Event"]]),
            st.text(max_size=20).filter(lambda text: text != "Scheduled Event"),
        ),
    ),
    st.just({key: value for key, value in SCHEDULED_EVENT.items() if key != "detail-type"}),
    st.just({"detail-type": "Object Created", "dryRun": True}),
)
WELL_FORMED_EVENTS = st.one_of(
    st.none(),
    st.just({}),
    st.just(dict(SCHEDULED_EVENT)),
    st.builds(lambda extra: {**SCHEDULED_EVENT, **extra}, st.dictionaries(st.text(max_size=8), JSON_SCALARS)),
    VALID_MANUAL,
)
EVENTS = st.one_of(
    JSON_VALUES,  # anything JSON, including non-objects
    st.dictionaries(EVENT_KEYS, JSON_VALUES, max_size=4),
    _one_bad_field(),
    _unknown_key(),
    SCHEDULED_LOOKALIKES,
    WELL_FORMED_EVENTS,
)


def _seed_for_handler(services: LocalServices) -> tuple[list[Any], list[Any]]:
    """Two valid and two broken due donations; returns their ids."""
    due_at = datetime.now(UTC) - timedelta(hours=1)
    stripe = services.stripe.state
    valid = [scheduled_donation(customer_id=stripe.create_customer(), next_run_at=due_at) for _ in range(2)]
    broken = [
        scheduled_donation(customer_id=stripe.create_customer(), next_run_at=due_at, amount=-5),
        scheduled_donation(customer_id=stripe.create_customer(), next_run_at=due_at, currency="XXX"),
    ]
    services.database["scheduled_donations"].insert_many([*valid, *broken])
    return [doc["_id"] for doc in valid], [doc["_id"] for doc in broken]


@HANDLER_SETTINGS
@given(event=EVENTS)
def test_any_event_either_runs_or_is_refused_naming_the_field_before_anything_is_touched(
    handler_env: LocalServices, lambda_context: LocalLambdaContext, event: Any
) -> None:
    # GIVEN due donations (two valid, two broken) and an arbitrary or deliberately broken invocation event
    services = handler_env
    _fresh_state(services)
    valid_ids, broken_ids = _seed_for_handler(services)
    before = _snapshot(services)
    requests_before = services.stripe.state.request_count
    problems = _event_problems(event)
    hypothesis_event("refused" if problems else "accepted")

    # WHEN the Lambda handler is invoked with it (any exception but InvalidEventError fails the test)
    refusal: str | None = None
    try:
        result = app.lambda_handler(event, lambda_context)
    except InvalidEventError as error:
        refusal = str(error)

    if refusal is not None:
        # THEN a refused event was malformed, the message names a bad field, and nothing was read or charged
        assert problems, f"a well-formed event was refused: {refusal}"
        assert any(token in refusal for token in problems), (refusal, problems)
        assert services.stripe.state.request_count == requests_before
        assert _snapshot(services) == before
        assert read_dead_letters(services) == []
        return

    # THEN an accepted event was well formed and produced a run summary
    assert not problems, f"a malformed event was accepted: problems {problems}"
    assert set(result) == SUMMARY_KEYS
    charges = services.stripe.state.charge_counts_by(metadata_keys=("scheduled_donation_id",))
    assert all(count == 1 for count in charges.values())
    assert {key[0] for key in charges} <= {str(donation_id) for donation_id in valid_ids}
    collection = services.database["scheduled_donations"]
    assert collection.count_documents({"claimedBy": {"$exists": True}}) == 0
    manual = isinstance(event, dict) and not _is_scheduled(event)
    if manual and event.get("dryRun") is True:
        # a dry run makes no write and no Stripe call
        assert result["status"] == "dry_run"
        assert services.stripe.state.request_count == requests_before
        assert _snapshot(services) == before
    elif not manual or not (set(event) & {"donationIds", "limit"}):
        # a full run (the schedule, no payload, a manual run without ids or limit): both valid donations
        # charged once, both broken ones stopped as invalid
        assert (result["status"], result["succeeded"], result["invalid"]) == ("completed", 2, 2)
        assert len(charges) == 2
        assert collection.count_documents({"_id": {"$in": broken_ids}, "status": "invalid"}) == 2


TARGETED_BROKEN_EVENTS: list[tuple[object, str]] = [
    ([], "event"),
    ("run", "event"),
    (42, "event"),
    ({"dryRun": "true"}, "dryRun"),
    ({"dryRun": 1}, "dryRun"),
    ({"dryRun": None}, "dryRun"),
    ({"dryRun": {"$ne": False}}, "dryRun"),
    ({"donationIds": [{"$gt": ""}]}, "donationIds[0]"),
    ({"donationIds": {"$gt": ""}}, "donationIds"),
    ({"donationIds": []}, "donationIds"),
    ({"donationIds": "abc"}, "donationIds"),
    ({"donationIds": [f"id{n}" for n in range(2000)]}, "donationIds"),
    ({"donationIds": [f"id{n}" for n in range(MAX_IDS + 1)]}, "donationIds"),
    ({"donationIds": ["ok", "d\u00f6n"]}, "donationIds[1]"),
    ({"donationIds": ["line\nbreak"]}, "donationIds[0]"),
    ({"donationIds": ["trailing\n"]}, "donationIds[0]"),
    ({"donationIds": ["a" * 65]}, "donationIds[0]"),
    ({"donationIds": [""]}, "donationIds[0]"),
    ({"donationIds": [5]}, "donationIds[0]"),
    ({"limit": 0}, "limit"),
    ({"limit": -1}, "limit"),
    ({"limit": 1.5}, "limit"),
    ({"limit": 10.0}, "limit"),
    ({"limit": MAX_LIMIT + 1}, "limit"),
    ({"limit": 10**30}, "limit"),
    ({"limit": "10"}, "limit"),
    ({"limit": True}, "limit"),
    ({"limit": math.nan}, "limit"),
    ({"dryrun": True}, "'dryrun'"),
    ({"dryRun": True, "$where": "1"}, "'$where'"),
    ({"source": "aws.events"}, "detail-type"),
    ({**SCHEDULED_EVENT, "detail-type": "scheduled event"}, "detail-type"),
    ({**SCHEDULED_EVENT, "detail-type": None}, "detail-type"),
    ({"detail-type": "Object Created", "dryRun": True}, "detail-type"),
]


def test_each_targeted_broken_event_is_refused_naming_its_field_before_anything_is_touched(
    handler_env: LocalServices, lambda_context: LocalLambdaContext
) -> None:
    # GIVEN due donations and a table of deliberately broken events, each with the field it must name
    services = handler_env
    _seed_for_handler(services)
    before = _snapshot(services)

    # WHEN each is sent to the handler
    outcomes = []
    for event, field in TARGETED_BROKEN_EVENTS:
        try:
            app.lambda_handler(event, lambda_context)
        except InvalidEventError as error:
            outcomes.append((field, field in str(error)))
        else:
            outcomes.append((field, False))

    # THEN every one was refused with its field named, and nothing was read, charged or dead-lettered
    assert [field for field, named in outcomes if not named] == []
    assert services.stripe.state.request_count == 0
    assert _snapshot(services) == before
    assert read_dead_letters(services) == []


# -- Deterministic: operator injection in donationIds -------------------------------------------------------


@pytest.mark.parametrize(
    ("donation_ids", "named"),
    [
        ([{"$gt": ""}], "donationIds[0]"),
        (["65f1c0ffee0000000000a001", {"$ne": None}], "donationIds[1]"),
        ({"$gt": ""}, "donationIds"),
        (['{"$gt": ""}'], "donationIds[0]"),
    ],
)
def test_an_operator_in_donation_ids_is_refused_and_nothing_is_charged_although_many_are_due(
    handler_env: LocalServices, lambda_context: LocalLambdaContext, donation_ids: Any, named: str
) -> None:
    # GIVEN 25 valid donations, all due now
    services = handler_env
    due_at = datetime.now(UTC) - timedelta(hours=1)
    documents = [
        scheduled_donation(customer_id=services.stripe.state.create_customer(), next_run_at=due_at)
        for _ in range(25)
    ]
    services.database["scheduled_donations"].insert_many(documents)
    before = _snapshot(services)

    # WHEN a manual invoke tries to select "every id greater than the empty string"
    with pytest.raises(InvalidEventError, match=re.escape(named)):
        app.lambda_handler({"donationIds": donation_ids}, lambda_context)

    # THEN nothing was charged, no Stripe request was made, no document changed and nothing was dead-lettered
    assert services.stripe.state.charges() == []
    assert services.stripe.state.request_count == 0
    assert _snapshot(services) == before
    assert read_dead_letters(services) == []
    collection = services.database["scheduled_donations"]
    assert collection.count_documents({"status": "active", "claimedBy": {"$exists": False}}) == 25


# -- Regressions for bugs this suite found (periodStart overflow, loose paymentIntentId) -----------------


@pytest.mark.parametrize(
    ("frequency", "period_start"),
    [("monthly", datetime(9999, 12, 20)), ("weekly", datetime(9999, 12, 30))],
)
def test_a_period_start_at_the_end_of_the_calendar_is_invalid_not_charged_and_the_run_survives(
    services: LocalServices,
    clock: TestClock,
    make_engine: Callable[..., DonationEngine],
    frequency: str,
    period_start: datetime,
) -> None:
    # GIVEN a valid due donation and one whose periodStart is a datetime whose next period does not exist
    due_at = clock.now - timedelta(hours=1)
    stripe = services.stripe.state
    valid = scheduled_donation(customer_id=stripe.create_customer(), next_run_at=due_at)
    poisoned = scheduled_donation(
        customer_id=stripe.create_customer(),
        next_run_at=due_at,
        frequency=frequency,
        periodStart=period_start,
    )
    services.database["scheduled_donations"].insert_many([valid, poisoned])

    # WHEN the scheduled run goes through them
    summary = make_engine().run(SCHEDULED, PLENTY_OF_TIME)

    # THEN the run completes, only the valid donation is charged, the other is invalid and dead-lettered
    assert (summary.status, summary.succeeded, summary.invalid) == ("completed", 1, 1)
    assert _charged_ids(services) == [str(valid["_id"])]
    after = services.database["scheduled_donations"].find_one({"_id": poisoned["_id"]})
    assert after is not None
    assert after["status"] == "invalid"
    assert "periodStart" in after["invalidReason"]
    [letter] = read_dead_letters(services)
    assert (letter["reason"], letter["scheduledDonationId"]) == ("invalid_document", str(poisoned["_id"]))


@pytest.mark.parametrize(
    "payment_intent_id",
    ["pi_abc\nX-Injected: 1", "pi_" + "a" * OVERSIZED, "pi_../../v1/customers", "pi_ abc"],
    ids=["newline", "oversized", "path", "space"],
)
def test_a_malformed_payment_intent_id_is_invalid_before_any_stripe_call(
    services: LocalServices,
    clock: TestClock,
    make_engine: Callable[..., DonationEngine],
    payment_intent_id: str,
) -> None:
    # GIVEN a due donation in dunning whose paymentIntentId starts with pi_ but is not a Stripe id
    document = scheduled_donation(
        customer_id=services.stripe.state.create_customer(),
        next_run_at=clock.now - timedelta(hours=1),
        paymentIntentId=payment_intent_id,
        attempts=1,
    )
    services.database["scheduled_donations"].insert_one(document)

    # WHEN the scheduled run handles it
    summary = make_engine().run(SCHEDULED, PLENTY_OF_TIME)

    # THEN it is invalid, named by field, dead-lettered as invalid_document, and Stripe was never asked
    assert summary.invalid == 1
    assert services.stripe.state.request_count == 0
    after = services.database["scheduled_donations"].find_one({"_id": document["_id"]})
    assert after is not None
    assert "paymentIntentId" in after.get("invalidReason", "")
    [letter] = read_dead_letters(services)
    assert letter["reason"] == "invalid_document"
