"""The bench's indexed mongomock answers exactly as plain mongomock does, only without scanning."""

from __future__ import annotations

import random
from typing import Any

import mongomock
import pytest
from bson import ObjectId
from pymongo.errors import DuplicateKeyError

from harness.bench.indexed_mongomock import IndexedCollection, use_indexes

IDS: list[Any] = [f"d{number}" for number in range(12)] + [ObjectId() for _ in range(4)]
KEYS = ["k1", "k2", "k3"]
STATES = ["new", "done", "failed"]


def _collections() -> tuple[Any, Any]:
    plain = mongomock.MongoClient()["db"]
    indexed = mongomock.MongoClient()["db"]
    use_indexes(indexed, ["records"], sorted_fields=["n"])
    for database in (plain, indexed):
        database["records"].create_index([("a", 1), ("b", 1)], unique=True, name="a_b")
    return plain["records"], indexed["records"]


def _random_filter(rng: random.Random) -> dict[str, Any]:
    choice = rng.randrange(7)
    if choice == 0:
        return {"_id": rng.choice(IDS)}
    if choice == 1:
        return {"_id": {"$in": rng.sample(IDS, rng.randint(0, 5))}}
    if choice == 2:
        return {"a": rng.choice(KEYS), "b": rng.choice(KEYS)}
    if choice == 3:
        return {"a": rng.choice(KEYS), "b": rng.choice(KEYS), "s": {"$ne": "done"}}
    if choice == 4:
        return {"_id": rng.choice(IDS), "s": rng.choice(STATES)}
    if choice == 5:
        return {"s": rng.choice(STATES)}
    return {"a": rng.choice(KEYS)}


def _random_order_value(rng: random.Random) -> Any:
    """Mostly numbers (ties included), sometimes null, a string, or an array (which the index refuses)."""
    choice = rng.randrange(20)
    if choice == 0:
        return None
    if choice == 1:
        return "z"
    if choice == 2:
        return [rng.randrange(5), 1]
    return rng.randrange(30)


def _random_update(rng: random.Random) -> dict[str, Any]:
    choice = rng.randrange(6)
    if choice >= 4:
        return {"$set": {"n": _random_order_value(rng)}}
    if choice == 0:
        return {"$set": {"s": rng.choice(STATES)}}
    if choice == 1:
        return {"$set": {"a": rng.choice(KEYS)}}  # moves a document to another unique key
    if choice == 2:
        return {"$set": {"b": [rng.choice(KEYS), rng.choice(KEYS)]}}  # an array value: multikey
    return {"$set": {"s": rng.choice(STATES)}, "$setOnInsert": {"created": True}}


def _apply(collection: Any, operation: tuple[Any, ...]) -> Any:
    name, *arguments = operation
    try:
        if name == "insert":
            return collection.insert_one(dict(arguments[0])).inserted_id
        if name == "update_one":
            result = collection.update_one(arguments[0], arguments[1], upsert=arguments[2])
            return (result.matched_count, result.modified_count, result.upserted_id is not None)
        if name == "update_many":
            result = collection.update_many(arguments[0], arguments[1])
            return (result.matched_count, result.modified_count)
        if name == "delete":
            return collection.delete_one(arguments[0]).deleted_count
        if name == "count":
            return collection.count_documents(arguments[0])
        if name == "first_by_n":
            found = list(collection.find(arguments[0]).sort("n", 1).limit(arguments[1]))
            every = _comparable(collection.find(arguments[0]))
            # Ties may be broken either way: compare the sort keys, and that each one is a real match.
            return [document.get("n") for document in found], all(
                _comparable([document])[0] in every for document in found
            )
        return _comparable(collection.find(arguments[0]))
    except DuplicateKeyError:
        return "duplicate key"


def _comparable(documents: Any) -> list[str]:
    """Documents without the ObjectIds an upsert generates (random on each side), in a fixed order."""
    return sorted(
        repr(
            sorted((key, value) for key, value in document.items() if not (key == "_id" and value not in IDS))
        )
        for document in documents
    )


def _random_claim_filter(rng: random.Random) -> dict[str, Any]:
    """The shape of the engine's claim query: a state, a range on the sorted field, and $and/$or."""
    return {
        "s": rng.choice(STATES),
        "n": {rng.choice(["$lte", "$lt"]): rng.randrange(35)},
        "$and": [{"$or": [{"a": None}, {"a": {"$lte": rng.choice(KEYS)}}]}],
    }


def _random_operation(rng: random.Random) -> tuple[Any, ...]:
    choice = rng.randrange(8)
    if choice == 6:
        return ("first_by_n", _random_claim_filter(rng), rng.randint(1, 6))
    if choice == 7:
        return ("first_by_n", _random_filter(rng), rng.randint(1, 6))
    if choice == 0:
        document = {"_id": rng.choice(IDS), "a": rng.choice(KEYS), "b": rng.choice(KEYS), "s": "new"}
        if rng.random() < 0.8:
            document["n"] = _random_order_value(rng)
        return ("insert", document)
    if choice == 1:
        return ("update_one", _random_filter(rng), _random_update(rng), rng.random() < 0.4)
    if choice == 2:
        return ("update_many", _random_filter(rng), {"$set": {"s": rng.choice(STATES)}})
    if choice == 3:
        return ("delete", _random_filter(rng))
    if choice == 4:
        return ("count", _random_filter(rng))
    return ("find", _random_filter(rng))


@pytest.mark.parametrize("seed", range(8))
def test_random_operations_give_the_same_answers_with_and_without_indexes(seed: int) -> None:
    # GIVEN a plain and an indexed mongomock collection with the same unique index
    plain, indexed = _collections()
    rng = random.Random(seed)

    # WHEN the same 400 random inserts, updates (some moving unique keys or making them arrays), upserts,
    # deletes, counts, finds and sorted finds with a limit run on both
    for step in range(400):
        operation = _random_operation(rng)

        # THEN every answer is the same, and so is everything stored
        assert _apply(indexed, operation) == _apply(plain, operation), (step, operation)
    assert _comparable(indexed.find()) == _comparable(plain.find())


@pytest.fixture
def tested(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every document the indexed collections test against a filter, in order."""
    import harness.bench.indexed_mongomock as module

    seen: list[Any] = []
    original = module.filter_applies

    def counting(filter: Any, document: Any) -> bool:
        seen.append(document)
        return bool(original(filter, document))

    monkeypatch.setattr(module, "filter_applies", counting)
    return seen


def test_point_operations_do_not_scan_the_collection(tested: list[Any]) -> None:
    # GIVEN an indexed collection of 2,000 records with a unique (a, b) index
    _, indexed = _collections()
    indexed.insert_many([{"_id": f"r{n}", "a": f"a{n}", "b": "p", "s": "new"} for n in range(2000)])
    tested.clear()

    # WHEN it is updated by _id, read by $in, and upserted by its unique key, counting documents tested
    indexed.update_one({"_id": "r7"}, {"$set": {"s": "done"}})
    found = list(indexed.find({"_id": {"$in": ["r1", "r2", "missing"]}}))
    indexed.update_one({"a": "a9", "b": "p", "s": {"$ne": "done"}}, {"$set": {"s": "x"}}, upsert=True)

    # THEN each touched only the documents it names, yet answered correctly
    assert len(tested) <= 10  # of 2,000: the named documents, each checked again for uniqueness
    assert sorted(document["_id"] for document in found) == ["r1", "r2"]
    assert indexed.find_one({"_id": "r7"})["s"] == "done"
    assert indexed.find_one({"_id": "r9"})["s"] == "x"


def test_a_sorted_limited_find_reads_only_the_front_of_the_index(tested: list[Any]) -> None:
    # GIVEN 2,000 indexed documents ordered by n, of which the first 100 are taken by another run
    _, indexed = _collections()
    indexed.insert_many(
        [
            {"_id": f"r{n}", "a": f"a{n}", "b": "p", "n": n, "s": "taken" if n < 100 else "new"}
            for n in range(2000)
        ]
    )
    tested.clear()

    # WHEN the 50 first free documents due by n <= 1,500 are asked for, and then those due by n < 0
    first = list(indexed.find({"s": "new", "n": {"$lte": 1500}}, {"_id": 1}).sort("n", 1).limit(50))
    tested_for_first = len(tested)
    none = list(indexed.find({"s": "new", "n": {"$lt": 0}}).sort("n", 1).limit(50))

    # THEN the answer is r100..r149 (projected to _id), found by testing 150 documents, not 2,000;
    # and the empty range stopped at once
    assert first == [{"_id": f"r{n}"} for n in range(100, 150)]
    assert tested_for_first == 150
    assert none == []
    assert len(tested) == tested_for_first


def test_every_access_to_an_indexed_collection_is_indexed() -> None:
    # GIVEN a database whose records collection uses the indexes
    database = mongomock.MongoClient()["db"]
    use_indexes(database, ["records"])

    # WHEN the collection is reached again, by item, by attribute-free call and with other options
    from pymongo import WriteConcern

    accesses = [
        database["records"],
        database.get_collection("records"),
        database["records"].with_options(write_concern=WriteConcern(w=1)),
    ]

    # THEN every one of them is an IndexedCollection, and other collections are left plain
    assert all(isinstance(collection, IndexedCollection) for collection in accesses)
    assert not isinstance(database["other"], IndexedCollection)
