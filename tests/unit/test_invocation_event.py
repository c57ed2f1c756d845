"""parse_event: EventBridge schedules and manual invokes become a RunRequest; bad events name the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from donation_processor.exceptions import InvalidEventError
from donation_processor.invocation import MAX_DONATION_IDS, RunRequest, parse_event

EVENTS = Path(__file__).resolve().parents[2] / "events"

# The genuine EventBridge "Scheduled Event" shape, used when events/scheduled.json is not there yet.
INLINE_SCHEDULED_EVENT: dict[str, Any] = {
    "version": "0",
    "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "account": "123456789012",
    "time": "2026-01-01T00:00:00Z",
    "region": "us-east-1",
    "resources": ["arn:aws:events:us-east-1:123456789012:rule/scheduled-donations"],
    "detail": {},
}


def _scheduled_event() -> dict[str, Any]:
    path = EVENTS / "scheduled.json"
    if path.is_file():
        loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return loaded
    return dict(INLINE_SCHEDULED_EVENT)


def test_the_eventbridge_scheduled_event_is_a_scheduled_run() -> None:
    # GIVEN the scheduled event EventBridge sends (events/scheduled.json, or its genuine shape)
    event = _scheduled_event()

    # WHEN it is parsed
    request = parse_event(event)

    # THEN it is a full, real (not dry) run from the schedule
    assert request == RunRequest(dry_run=False, donation_ids=None, limit=None, source="schedule")


def test_an_aws_events_source_with_another_detail_type_is_refused() -> None:
    # GIVEN an EventBridge event that is not a schedule
    event = {**INLINE_SCHEDULED_EVENT, "detail-type": "EC2 Instance State-change Notification"}

    # WHEN it is parsed
    # THEN the error names detail-type
    with pytest.raises(InvalidEventError, match="detail-type"):
        parse_event(event)


def test_a_scheduled_event_without_detail_is_a_scheduled_run() -> None:
    # GIVEN the scheduled event with no detail key at all
    event = {key: value for key, value in INLINE_SCHEDULED_EVENT.items() if key != "detail"}

    # WHEN it is parsed
    request = parse_event(event)

    # THEN it is the ordinary full, real run from the schedule
    assert request == RunRequest(dry_run=False, donation_ids=None, limit=None, source="schedule")


@pytest.mark.parametrize(
    ("detail", "field"),
    [
        ({"dryRun": True}, "dryRun"),
        ({"dryRun": False}, "dryRun"),
        ({"donationIds": ["65f1c0ffee0000000000a001"]}, "donationIds"),
        ({"limit": 10}, "limit"),
        ({"region": "eu"}, "region"),
        ({"limit": 10, "dryRun": True}, "dryRun"),
    ],
)
def test_a_scheduled_event_whose_detail_carries_run_options_is_refused_naming_the_option(
    detail: dict[str, Any], field: str
) -> None:
    # GIVEN a scheduled event whose rule input put run options in detail (a dry run would become real)
    event = {**INLINE_SCHEDULED_EVENT, "detail": detail}

    # WHEN it is parsed
    # THEN it is refused, naming the option, instead of starting a full charge run
    with pytest.raises(InvalidEventError, match=rf"takes no run options; detail\.{field} is not allowed"):
        parse_event(event)


@pytest.mark.parametrize("detail", [None, [], ["dryRun"], "dryRun", 1, True])
def test_a_scheduled_event_whose_detail_is_not_an_object_is_refused(detail: object) -> None:
    # GIVEN a scheduled event whose detail is not a JSON object
    event = {**INLINE_SCHEDULED_EVENT, "detail": detail}

    # WHEN it is parsed
    # THEN it is refused, naming detail and what it was
    with pytest.raises(InvalidEventError, match=f"detail must be a JSON object, got {type(detail).__name__}"):
        parse_event(event)


@pytest.mark.parametrize("event", [None, {}])
def test_an_empty_manual_invoke_is_a_full_manual_run(event: dict[str, Any] | None) -> None:
    # GIVEN a manual invoke without options
    # WHEN it is parsed
    request = parse_event(event)

    # THEN it asks for everything due, for real, from a manual source
    assert request == RunRequest(dry_run=False, donation_ids=None, limit=None, source="manual")


def test_a_manual_invoke_with_every_option_is_parsed() -> None:
    # GIVEN a dry run for two ids and a limit
    event = {"dryRun": True, "donationIds": ["65f1c0ffee0000000000a001", "legacy_id-7"], "limit": 10}

    # WHEN it is parsed
    request = parse_event(event)

    # THEN every option is carried
    assert request == RunRequest(
        dry_run=True, donation_ids=("65f1c0ffee0000000000a001", "legacy_id-7"), limit=10, source="manual"
    )


@pytest.mark.parametrize("name", ["manual.json", "manual_dry_run.json"])
def test_the_sample_manual_events_parse(name: str) -> None:
    # GIVEN a sample manual event shipped in events/
    path = EVENTS / name
    if not path.is_file():
        pytest.skip(f"events/{name} is not in this checkout")
    event = json.loads(path.read_text(encoding="utf-8"))

    # WHEN it is parsed
    request = parse_event(event)

    # THEN it is a manual request carrying the file's options
    assert request.source == "manual"
    assert request.dry_run is event.get("dryRun", False)
    assert request.limit == event.get("limit")


def test_duplicate_donation_ids_are_removed_keeping_the_first_order() -> None:
    # GIVEN ids with repeats
    event = {"donationIds": ["b", "a", "b", "c", "a"]}

    # WHEN it is parsed
    request = parse_event(event)

    # THEN each id appears once, in the order first given
    assert request.donation_ids == ("b", "a", "c")


def test_exactly_the_maximum_number_of_ids_is_accepted() -> None:
    # GIVEN exactly MAX_DONATION_IDS ids
    event = {"donationIds": [f"id{index}" for index in range(MAX_DONATION_IDS)]}

    # WHEN it is parsed
    request = parse_event(event)

    # THEN all are kept
    assert request.donation_ids is not None
    assert len(request.donation_ids) == MAX_DONATION_IDS


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"dryRun": "yes"}, "dryRun"),
        ({"dryRun": 1}, "dryRun"),
        ({"donationIds": "x"}, "donationIds"),
        ({"donationIds": []}, "donationIds"),
        ({"donationIds": [1]}, r"donationIds\[0\]"),
        ({"donationIds": ["ok", {"$gt": ""}]}, r"donationIds\[1\]"),
        ({"donationIds": ["a b"]}, r"donationIds\[0\]"),
        ({"donationIds": ["x" * 65]}, r"donationIds\[0\]"),
        ({"donationIds": [f"id{index}" for index in range(MAX_DONATION_IDS + 1)]}, "donationIds"),
        ({"limit": 0}, "limit"),
        ({"limit": -1}, "limit"),
        ({"limit": 1.5}, "limit"),
        ({"limit": True}, "limit"),
        ({"limit": "10"}, "limit"),
        ({"limit": 1_000_001}, "limit"),
        ({"dryrun": True}, "'dryrun'"),
        ({"limit": 5, "extra": 1}, "'extra'"),
    ],
)
def test_each_bad_field_raises_an_error_naming_it(event: dict[str, Any], field: str) -> None:
    # GIVEN a manual event with one bad field
    # WHEN it is parsed
    # THEN the error names the field
    with pytest.raises(InvalidEventError, match=field):
        parse_event(event)


@pytest.mark.parametrize("event", [[], "run", 42, ["dryRun"], True])
def test_an_event_that_is_not_a_json_object_is_refused(event: object) -> None:
    # GIVEN an event that is not an object
    # WHEN it is parsed
    # THEN it is refused, naming its type
    with pytest.raises(InvalidEventError, match=f"got {type(event).__name__}"):
        parse_event(event)


def test_an_id_with_a_trailing_newline_is_refused() -> None:
    # GIVEN an id that is letters followed by a newline
    event = {"donationIds": ["abc\n"]}

    # WHEN it is parsed
    # THEN it is refused like any other character outside letters, digits, '_' and '-'
    with pytest.raises(InvalidEventError, match=r"donationIds\[0\]"):
        parse_event(event)


json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5), st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)
event_keys = st.one_of(
    st.sampled_from(["dryRun", "donationIds", "limit", "source", "detail-type", "detail"]),
    st.text(max_size=10),
)
id_lists = st.lists(
    st.one_of(st.from_regex(r"[A-Za-z0-9_\-]{1,64}", fullmatch=True), json_scalars), max_size=5
)


@settings(max_examples=400, deadline=None)
@given(
    event=st.dictionaries(
        event_keys,
        st.one_of(json_values, id_lists, st.sampled_from(["aws.events", "Scheduled Event"])),
        max_size=4,
    )
)
def test_property_any_json_object_either_parses_or_raises_invalid_event_error(event: dict[str, Any]) -> None:
    # GIVEN any JSON-like object
    # WHEN it is parsed
    try:
        request = parse_event(event)
    except InvalidEventError:
        return

    # THEN a request that parses is well-formed (never another exception on the way)
    assert request.source in ("manual", "schedule")
    if request.source == "schedule":
        assert event.get("detail", {}) == {}, "a scheduled run never carries options in detail"
    assert isinstance(request.dry_run, bool)
    assert request.limit is None or (type(request.limit) is int and request.limit >= 1)
    if request.donation_ids is not None:
        assert len(set(request.donation_ids)) == len(request.donation_ids) > 0
