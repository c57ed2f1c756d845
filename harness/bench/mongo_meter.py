"""A measurement hook for MongoDB: count round trips and the CPU spent inside mongomock.

mongomock has no command monitoring, so the bench hands the engine a client whose databases and
collections are thin proxies around mongomock's: every collection method call is one round trip, and a
``find`` cursor is 1 round trip for its first batch (101 documents, or fewer if ``limit``/``batch_size``
is smaller) plus one ``getMore`` per further ``batch_size`` documents (one for the rest when no batch size
is set, as pymongo's 16 MiB batches would). The proxy is put in
``donation_processor.adapters.mongo_connection``'s
client cache for the bench's URI, so the engine's own code runs unchanged; nothing in pymongo or the
engine is patched. The calling thread's CPU time inside each call (``time.thread_time``) is summed too:
it is the database emulator's cost, which a real deployment pays on the MongoDB server instead.

Two things make mongomock behave more like a server here. Its collections get the ``_id``, unique-index
and sorted lookups a real MongoDB would use (``harness.bench.indexed_mongomock``), so its cost per donation no
longer grows with the collection. And every write's filter, update and documents cross a BSON encode and
decode on the way in, as they would on the wire: mongomock otherwise keeps the caller's own string objects
in its in-process copy of the database, and tracemalloc would count them against the engine line that
built them long after the engine let go of them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any, Self

import bson
import mongomock

from harness.bench.indexed_mongomock import use_indexes

FIRST_BATCH = 101
# Writes whose arguments the server keeps: they cross the "wire" as BSON (see the module docstring).
WRITES = frozenset(
    {
        "insert_one",
        "insert_many",
        "update_one",
        "update_many",
        "replace_one",
        "find_one_and_update",
        "find_one_and_replace",
    }
)


def indexed_client(database: str, collections: Iterable[str], sorted_fields: Iterable[str] = ()) -> Any:
    """A fresh mongomock client whose `collections` in `database` answer from indexes, as MongoDB would."""
    client: Any = mongomock.MongoClient()
    use_indexes(client[database], collections, sorted_fields)
    return client


def over_the_wire(value: Any) -> Any:
    """The value as the server would receive it: encoded to BSON and decoded into new objects."""
    if isinstance(value, Mapping):
        return bson.decode(bson.encode(value))
    if isinstance(value, list):
        return [over_the_wire(item) for item in value]
    return value


def _give_back_ids(sent: Any, received: Any) -> None:
    """insert_one/insert_many fill in `_id` on the caller's documents, as pymongo does."""
    pairs = zip(sent, received, strict=True) if isinstance(sent, list) else [(sent, received)]
    for original, copy in pairs:
        if isinstance(original, dict) and "_id" not in original and isinstance(copy, dict) and "_id" in copy:
            original["_id"] = copy["_id"]


class MongoMeter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.round_trips = 0
        self.cpu_seconds = 0.0
        self.by_operation: dict[str, int] = {}

    def add(self, operation: str, round_trips: int, cpu_seconds: float) -> None:
        with self._lock:
            self.round_trips += round_trips
            self.cpu_seconds += cpu_seconds
            self.by_operation[operation] = self.by_operation.get(operation, 0) + round_trips

    def snapshot(self) -> tuple[int, float]:
        with self._lock:
            return self.round_trips, self.cpu_seconds


class CountingCursor:
    def __init__(self, cursor: Any, meter: MongoMeter, operation: str) -> None:
        self._cursor = cursor
        self._meter = meter
        self._operation = operation
        self._limit = 0
        self._batch_size = 0
        self._returned = 0
        self._started = False

    def sort(self, *args: Any, **kwargs: Any) -> Self:
        self._cursor = self._cursor.sort(*args, **kwargs)
        return self

    def skip(self, count: int) -> Self:
        self._cursor = self._cursor.skip(count)
        return self

    def limit(self, count: int) -> Self:
        self._limit = count
        self._cursor = self._cursor.limit(count)
        return self

    def batch_size(self, count: int) -> Self:
        self._batch_size = count
        self._cursor = self._cursor.batch_size(count)
        return self

    def __iter__(self) -> Self:
        return self

    def _first_batch(self) -> int:
        sizes = [FIRST_BATCH] + [size for size in (self._limit, self._batch_size) if size > 0]
        return min(sizes)

    def __next__(self) -> Any:
        started = time.thread_time()
        round_trips = 0
        if not self._started:
            self._started = True
            round_trips = 1
        elif self._returned >= self._first_batch() and not (0 < self._limit <= self._returned):
            beyond = self._returned - self._first_batch()
            if (self._batch_size > 0 and beyond % self._batch_size == 0) or (
                self._batch_size == 0 and beyond == 0
            ):
                round_trips = 1
        try:
            document = next(self._cursor)
        finally:
            self._meter.add(self._operation, round_trips, time.thread_time() - started)
        self._returned += 1
        return document

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


class CountingCollection:
    def __init__(self, collection: Any, meter: MongoMeter) -> None:
        self._collection = collection
        self._meter = meter

    def find(self, *args: Any, **kwargs: Any) -> CountingCursor:
        started = time.thread_time()
        cursor = self._collection.find(*args, **kwargs)
        self._meter.add("find", 0, time.thread_time() - started)
        return CountingCursor(cursor, self._meter, "find")

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._collection, name)
        if not callable(attribute) or name.startswith("_"):
            return attribute
        meter = self._meter
        wire = name in WRITES

        def counted(*args: Any, **kwargs: Any) -> Any:
            if wire:
                sent = args
                args = tuple(over_the_wire(value) for value in args)
                kwargs = {key: over_the_wire(value) for key, value in kwargs.items()}
            started = time.thread_time()
            try:
                return attribute(*args, **kwargs)
            finally:
                meter.add(name, 1, time.thread_time() - started)
                if wire and name.startswith("insert_") and sent:
                    _give_back_ids(sent[0], args[0])

        return counted


class CountingDatabase:
    def __init__(self, database: Any, meter: MongoMeter) -> None:
        self._database = database
        self._meter = meter

    def __getitem__(self, name: str) -> CountingCollection:
        return CountingCollection(self._database[name], self._meter)

    def get_collection(self, name: str, *args: Any, **kwargs: Any) -> CountingCollection:
        return CountingCollection(self._database.get_collection(name, *args, **kwargs), self._meter)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._database, name)


class CountingClient:
    def __init__(self, client: Any, meter: MongoMeter) -> None:
        self._client = client
        self._meter = meter

    def __getitem__(self, name: str) -> CountingDatabase:
        return CountingDatabase(self._client[name], self._meter)

    def get_database(self, name: str, *args: Any, **kwargs: Any) -> CountingDatabase:
        return CountingDatabase(self._client.get_database(name, *args, **kwargs), self._meter)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)
