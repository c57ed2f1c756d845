"""The bench's MongoDB proxy: counts round trips, and writes reach mongomock as copies, as over the wire."""

from __future__ import annotations

from datetime import datetime

from harness.bench.mongo_meter import CountingClient, MongoMeter, indexed_client


def test_written_values_reach_the_store_as_new_objects() -> None:
    # GIVEN the bench's client and a key string built by the caller
    raw = indexed_client("db", ["records"])
    database = CountingClient(raw, MongoMeter())["db"]
    key = "".join(["scheduled-donation:", "d1", ":2026-11"])

    # WHEN it is upserted as part of a filter and an update
    database["records"].update_one(
        {"_id": "r1"}, {"$set": {"key": key, "at": datetime(2026, 11, 29, 3, 0, 0, 123456)}}, upsert=True
    )

    # THEN mongomock holds an equal string that is not the caller's object, and a datetime cut to
    # milliseconds, as BSON stores it
    stored = raw["db"]["records"]._store["r1"]
    assert stored["key"] == key
    assert stored["key"] is not key
    assert stored["at"] == datetime(2026, 11, 29, 3, 0, 0, 123000)


def test_inserts_give_the_generated_id_back_and_every_call_is_counted() -> None:
    # GIVEN the bench's client with a meter
    meter = MongoMeter()
    database = CountingClient(indexed_client("db", ["records"]), meter)["db"]
    document: dict[str, object] = {"name": "one"}
    many: list[dict[str, object]] = [{"name": "two"}, {"name": "three"}]

    # WHEN documents without an _id are inserted one and many at a time, then read back
    database["records"].insert_one(document)
    database["records"].insert_many(many)
    found = list(database["records"].find({}).batch_size(2))

    # THEN the callers' documents got the ids the store used, as pymongo does
    assert {item["_id"] for item in found} == {document["_id"], many[0]["_id"], many[1]["_id"]}
    # AND the meter saw 2 inserts and a find of 3 documents in batches of 2 (find + getMore)
    assert meter.by_operation == {"insert_one": 1, "insert_many": 1, "find": 2}
