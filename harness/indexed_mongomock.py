"""mongomock with the index lookups a real MongoDB would make for the engine's queries (bench only).

mongomock answers every query, update and unique-index check by scanning the whole collection, so at
10,000 donations it spent 45 ms of CPU per donation and, holding the GIL, starved the engine it was meant
to serve. A real MongoDB answers the engine's point operations from an index. ``use_indexes`` gives a
mongomock database's collections the two lookups that matter, and nothing else:

- ``_id``: an equality or ``$in`` on ``_id`` (strings or ObjectIds) reads those documents straight from
  mongomock's store, which is a dict keyed by ``_id``: the ``_id`` index every collection has;
- unique indexes (the engine's ``one_record_per_period``): an equality on every field of a unique index
  (strings or ObjectIds) reads candidates from a hash map of the index's values, built on first use and
  extended whenever mongomock checks a written document against its unique indexes (every insert and
  every update that changed a document).

Every candidate is still tested with mongomock's own ``filter_applies``, so a lookup can only leave out
documents that could not match; entries left behind by deletes or changed keys are skipped by that test.
Several matches come back in mongomock's own order, so ``update_one`` and ``delete_one`` pick the same
document. Anything else (the claim query's range on ``nextRunAt``, counts, sorts) scans as before.
tests/harness/test_indexed_mongomock.py runs the same random operations on plain and indexed mongomock and
compares every answer.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import mongomock
from bson import ObjectId
from mongomock import filtering

# mongomock is untyped where it matters here; its private hooks are reached through Any on purpose.
_MongomockCollection: Any = mongomock.Collection
_helpers: Any = mongomock.helpers
filter_applies: Any = filtering.filter_applies
_POINT_TYPES = (str, ObjectId)
_UNHASHABLE = object()  # the bucket of documents whose indexed value is an array or a document


class _UniqueIndex:
    """value tuple -> store keys, for one unique index of one collection store."""

    def __init__(self, fields: Sequence[str]) -> None:
        self.fields = tuple(fields)
        self.entries: dict[Any, set[Any]] = {}
        self.built = False

    def key_of(self, document: Mapping[str, Any]) -> Any:
        values = []
        for field in self.fields:
            try:
                value = _helpers.get_value_by_dot(document, field)
            except KeyError:
                value = None
            if isinstance(value, list | dict):
                return _UNHASHABLE
            values.append(value)
        return tuple(values)

    def add(self, store_key: Any, document: Mapping[str, Any]) -> None:
        key = self.key_of(document)
        try:
            self.entries.setdefault(key, set()).add(store_key)
        except TypeError:  # an unhashable scalar: always a candidate
            self.entries.setdefault(_UNHASHABLE, set()).add(store_key)


class _StoreIndexes:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.unique: dict[tuple[str, ...], _UniqueIndex] = {}


def _store_key(document: Mapping[str, Any]) -> Any:
    object_id = document.get("_id")
    return _helpers.hashdict(object_id) if isinstance(object_id, dict) else object_id


class IndexedCollection(_MongomockCollection):  # type: ignore[misc]
    """A mongomock collection that looks documents up by ``_id`` and by unique index where it can."""

    def _indexes(self) -> _StoreIndexes:
        store = self._store
        indexes = getattr(store, "_bench_indexes", None)
        if indexes is None:
            indexes = _StoreIndexes()
            store._bench_indexes = indexes
        return indexes

    def _unique_fields(self) -> list[tuple[str, ...]]:
        found: list[tuple[str, ...]] = []
        for index in self._store.indexes.values():
            if index.get("unique") and index.get("partialFilterExpression") is None:
                found.append(tuple(field for field, _ in index.get("key", [])))
        return found

    def _unique_index(self, fields: tuple[str, ...]) -> _UniqueIndex:
        indexes = self._indexes()
        with indexes.lock:
            index = indexes.unique.get(fields)
            if index is None:
                index = indexes.unique[fields] = _UniqueIndex(fields)
            if not index.built:
                for document in list(self._store.documents):
                    index.add(_store_key(document), document)
                index.built = True
            return index

    def _lookup(self, spec: Mapping[str, Any]) -> Iterable[Any] | None:
        """The store keys that could match, or None when no index applies (then mongomock scans)."""
        if "_id" in spec:
            wanted = spec["_id"]
            if isinstance(wanted, _POINT_TYPES):
                return [wanted]
            if (
                isinstance(wanted, dict)
                and set(wanted) == {"$in"}
                and isinstance(wanted["$in"], list | tuple)
                and all(isinstance(value, _POINT_TYPES) for value in wanted["$in"])
            ):
                return list(dict.fromkeys(wanted["$in"]))
        for fields in self._unique_fields():
            values = [spec.get(field) for field in fields]
            if all(isinstance(value, _POINT_TYPES) for value in values):
                with self._indexes().lock:
                    index = self._unique_index(fields)
                    return set(index.entries.get(tuple(values), ())) | set(index.entries.get(_UNHASHABLE, ()))
        return None

    def _iter_documents(self, filter: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
        keys = self._lookup(filter) if filter and not self._store.is_empty else None
        if keys is None:
            return super()._iter_documents(filter)  # type: ignore[no-any-return]
        store = self._store
        matched = []
        for key in keys:
            try:
                document = store[key]
            except KeyError:
                continue
            if filter_applies(filter, document):
                matched.append(document)
        if len(matched) > 1:
            # update_one and delete_one take the first match: keep mongomock's (insertion) order.
            position = {id(document): number for number, document in enumerate(store.documents)}
            matched.sort(key=lambda document: position.get(id(document), -1))
        return iter(matched)

    def _ensure_uniques(self, new_data: Mapping[str, Any]) -> None:
        # mongomock calls this for every inserted document and every changed one, already in its store:
        # index it first, so the uniqueness check (itself a lookup) sees it.
        indexes = self._indexes()
        with indexes.lock:
            for index in indexes.unique.values():
                if index.built:
                    index.add(_store_key(new_data), new_data)
        super()._ensure_uniques(new_data)

    def with_options(self, *args: Any, **kwargs: Any) -> Any:
        collection = super().with_options(*args, **kwargs)
        if type(collection) is mongomock.Collection:
            collection.__class__ = IndexedCollection
        return collection


def use_indexes(database: Any, names: Iterable[str]) -> None:
    """Make every later ``database[name]`` (and every cursor and write through it) use the lookups."""
    for name in names:
        collection = database.get_collection(name)
        collection.__class__ = IndexedCollection
