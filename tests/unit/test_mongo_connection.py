"""mongo_connection: one client per URI, and datetimes stored as naive UTC."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

from donation_processor.adapters.mongo_connection import get_database, to_mongo_datetime


def test_an_aware_datetime_becomes_naive_utc() -> None:
    # GIVEN 10:00 in UTC+2
    moment = datetime(2026, 1, 1, 10, 0, tzinfo=timezone(timedelta(hours=2)))

    # WHEN it is prepared for MongoDB
    stored = to_mongo_datetime(moment)

    # THEN it is 08:00, naive
    assert stored == datetime(2026, 1, 1, 8, 0)
    assert stored.tzinfo is None


def test_an_aware_utc_datetime_keeps_its_wall_time() -> None:
    # GIVEN an aware UTC datetime
    # WHEN it is prepared for MongoDB
    stored = to_mongo_datetime(datetime(2026, 1, 1, 10, 0, 0, 123000, tzinfo=UTC))

    # THEN only the zone is dropped
    assert stored == datetime(2026, 1, 1, 10, 0, 0, 123000)


def test_a_naive_datetime_is_taken_as_utc_unchanged() -> None:
    # GIVEN a naive datetime
    moment = datetime(2026, 1, 1, 10, 0)

    # WHEN it is prepared for MongoDB
    # THEN it is returned as is
    assert to_mongo_datetime(moment) == moment


def test_mongomock_uri_databases_share_one_client_and_its_data() -> None:
    # GIVEN a unique mongomock URI and database name
    uri = f"mongomock://test-{uuid.uuid4().hex}"
    name = f"db_{uuid.uuid4().hex[:8]}"

    # WHEN a document is written through one handle and read through another
    get_database(uri, name)["things"].insert_one({"_id": 1})
    found = get_database(uri, name)["things"].find_one({"_id": 1})

    # THEN both handles see the same data (one client per URI per process)
    assert found == {"_id": 1}
    assert get_database(uri, name).client is get_database(uri, "other").client
