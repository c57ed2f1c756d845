"""mongomock with the index lookups a real MongoDB would make for the engine's queries (bench only).

mongomock answers every query, update and unique-index check by scanning the whole collection, and sorts
and copies every match before it applies a limit; at 10,000 donations it spent 45 ms of CPU per donation
and, holding the GIL, starved the engine it was meant to serve. A real MongoDB answers the engine's
queries from indexes. ``use_indexes`` gives a mongomock database's collections three lookups:

- ``_id``: an equality or ``$in`` on ``_id`` (strings or ObjectIds) reads those documents straight from
  mongomock's store, which is a dict keyed by ``_id``: the ``_id`` index every collection has;
- unique indexes (the engine's ``one_record_per_period``): an equality on every field of a unique index
  (strings or ObjectIds) reads candidates from a hash map of the index's values;
- sorted fields named by the caller (the engine's ``nextRunAt``): ``find(...).sort(field, 1).limit(n)``
  walks the documents in that field's order and stops after ``n`` matches, or past the upper bound of a
  ``$lte``/``$lt`` on the field, as MongoDB does with its ``status, nextRunAt`` index.

The indexes are built from a scan on first use and kept current from mongomock's own hook: it checks
every inserted document and every document an update changed against its unique indexes, and that check
now indexes the document first. An update that fails half-way (mongomock then rolls documents back)
marks the sorted indexes for a rebuild. Every candidate is still tested with mongomock's own
``filter_applies``, so a lookup can only leave out documents that could not match; entries left behind by
deletes are skipped. Several matches of a point lookup come back in mongomock's own order, so
``update_one`` and ``delete_one`` pick the same document; documents with equal sort keys may come back in
another order than plain mongomock's (MongoDB does not promise one either).
tests/harness/test_indexed_mongomock.py runs the same random operations on plain and indexed mongomock and
compares every answer.
"""

from __future__ import annotations

import bisect
import itertools
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

import mongomock
from bson import ObjectId
from mongomock import collection as mongomock_collection
from mongomock import filtering

# mongomock is untyped where it matters here; its private hooks are reached through Any on purpose.
_MongomockCollection: Any = mongomock.Collection
_MongomockCursor: Any = mongomock_collection.Cursor
_helpers: Any = mongomock.helpers
filter_applies: Any = filtering.filter_applies
_POINT_TYPES = (str, ObjectId)
_UNHASHABLE = object()  # the bucket of documents whose indexed value is an array or a document


def _store_key(document: Mapping[str, Any]) -> Any:
    object_id = document.get("_id")
    return _helpers.hashdict(object_id) if isinstance(object_id, dict) else object_id


class _UniqueIndex:
    """value tuple -> store keys, for one unique index of one collection store."""

    def __init__(self, fields: Sequence[str]) -> None:
        self.fields = tuple(fields)
        self.entries: dict[Any, set[Any]] = {}

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

    def add(self, document: Mapping[str, Any]) -> None:
        key = self.key_of(document)
        try:
            self.entries.setdefault(key, set()).add(_store_key(document))
        except TypeError:  # an unhashable scalar: always a candidate
            self.entries.setdefault(_UNHASHABLE, set()).add(_store_key(document))

    def candidates(self, values: Sequence[Any]) -> set[Any]:
        return set(self.entries.get(tuple(values), ())) | set(self.entries.get(_UNHASHABLE, ()))


def _order_key(value: Any) -> tuple[Any, ...] | None:
    """MongoDB's sort order for the values the sorted index takes (null < numbers < strings < dates), or
    None for any other value (arrays, documents, ObjectIds, booleans, aware datetimes): then it scans."""
    if value is None:
        return (0,)
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return (1, value)
    if isinstance(value, str):
        return (2, value)
    if isinstance(value, datetime) and value.tzinfo is None:
        return (3, value)
    return None


class _SortedIndex:
    """(order key, sequence, store key) in the field's sort order; one entry per document."""

    def __init__(self, field: str) -> None:
        self.field = field
        self.entries: list[tuple[tuple[Any, ...], int, Any]] = []
        self.current: dict[Any, tuple[tuple[Any, ...], int]] = {}
        self.unusual: set[Any] = set()  # documents with a value the index cannot order: then scan
        self.sequence = itertools.count()

    def add(self, document: Mapping[str, Any]) -> None:
        key = _store_key(document)
        previous = self.current.pop(key, None)
        if previous is not None:
            at = bisect.bisect_left(self.entries, previous, key=lambda entry: entry[:2])
            del self.entries[at]
        self.unusual.discard(key)
        try:
            value = _helpers.get_value_by_dot(document, self.field)
        except KeyError:
            value = None
        order = _order_key(value)
        if order is None:
            self.unusual.add(key)
            return
        position = (order, next(self.sequence))
        self.current[key] = position
        bisect.insort(self.entries, (*position, key), key=lambda entry: entry[:2])


_Index = TypeVar("_Index", _UniqueIndex, _SortedIndex)


class _StoreIndexes:
    """The indexes of one mongomock collection store, shared by every Collection object over it."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.unique: dict[tuple[str, ...], _UniqueIndex] = {}
        self.sorted: dict[str, _SortedIndex] = {}
        self.sorted_fields: set[str] = set()


class IndexedCursor(_MongomockCursor):  # type: ignore[misc]
    """A cursor that answers sort-on-an-indexed-field-plus-limit by walking the index."""

    def _compute_results(self, with_limit_and_skip: bool = False) -> Any:
        if with_limit_and_skip and self._limit:
            state = (self._factory, self._skip, self._limit)
            if getattr(self, "_walked_for", None) != state:
                wanted = self._skip + abs(self._limit)
                walked = self.collection._walk_sorted(self._spec, self._sort, self._projection, wanted)
                self._walked_for = state
                self._walked = None if walked is None else walked[self._skip :]
            if self._walked is not None:
                return self._walked
        return super()._compute_results(with_limit_and_skip)


class IndexedCollection(_MongomockCollection):  # type: ignore[misc]
    """A mongomock collection that uses `_id`, unique and sorted indexes where MongoDB would."""

    def _indexes(self) -> _StoreIndexes:
        store = self._store
        indexes = getattr(store, "_bench_indexes", None)
        if indexes is None:
            indexes = _StoreIndexes()
            store._bench_indexes = indexes
        return indexes

    def _documents(self) -> list[Mapping[str, Any]]:
        return list(self._store.documents)

    # ---- point lookups ---------------------------------------------------------------------------------

    def _built(self, table: dict[Any, _Index], key: Any, make: Callable[[], _Index]) -> _Index:
        """The index under `key`, built from a scan of the store on first use."""
        with self._indexes().lock:
            index = table.get(key)
            if index is None:
                index = make()
                for document in self._documents():
                    index.add(document)
                table[key] = index
            return index

    def _unique_index(self, fields: tuple[str, ...]) -> _UniqueIndex:
        return self._built(self._indexes().unique, fields, lambda: _UniqueIndex(fields))

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
        for index in self._store.indexes.values():
            if not index.get("unique") or index.get("partialFilterExpression") is not None:
                continue
            fields = tuple(field for field, _ in index.get("key", []))
            values = [spec.get(field) for field in fields]
            if all(isinstance(value, _POINT_TYPES) for value in values):
                with self._indexes().lock:
                    return self._unique_index(fields).candidates(values)
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

    # ---- sorted walks ----------------------------------------------------------------------------------

    def _sorted_index(self, field: str) -> _SortedIndex | None:
        indexes = self._indexes()
        if field not in indexes.sorted_fields:
            return None
        return self._built(indexes.sorted, field, lambda: _SortedIndex(field))

    def _walk_sorted(
        self, spec: Mapping[str, Any], sort: Any, projection: Any, wanted: int
    ) -> list[Mapping[str, Any]] | None:
        """The first `wanted` matches in the order of an indexed field, or None when no index applies."""
        if not sort or len(sort) != 1 or sort[0][1] != 1 or self.codec_options.tz_aware:
            return None
        field = sort[0][0]
        indexes = self._indexes()
        with indexes.lock:
            index = self._sorted_index(field)
            if index is None or index.unusual:
                return None
            entries = list(index.entries)
        # A range on the field ends the walk: past `$lte` (or at `$lt`) nothing further can match.
        bound, strict = None, False
        condition = spec.get(field)
        if isinstance(condition, dict) and condition.keys() & {"$lte", "$lt"}:
            strict = "$lt" in condition
            bound = _order_key(condition["$lt"] if strict else condition["$lte"])
        store = self._store
        found: list[Mapping[str, Any]] = []
        for sort_key, _, key in entries:
            if bound is not None and (sort_key >= bound if strict else sort_key > bound):
                break
            try:
                document = store[key]
            except KeyError:
                continue
            if filter_applies(spec, document):
                found.append(document)
                if len(found) >= wanted:
                    break
        return [self._copy_only_fields(document, projection, dict) for document in found]

    # ---- keeping the indexes current ------------------------------------------------------------------

    def _ensure_uniques(self, new_data: Mapping[str, Any]) -> None:
        # mongomock calls this for every inserted document and every changed one, already in its store:
        # index it first, so the uniqueness check (itself a lookup) sees it.
        indexes = self._indexes()
        with indexes.lock:
            for unique in indexes.unique.values():
                unique.add(new_data)
            for ordered in indexes.sorted.values():
                ordered.add(new_data)
        super()._ensure_uniques(new_data)

    def _update(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super()._update(*args, **kwargs)
        except Exception:
            # mongomock may have put back documents it had changed: rebuild the sorted indexes from the store.
            indexes = self._indexes()
            with indexes.lock:
                indexes.sorted.clear()
            raise

    def find(self, *args: Any, **kwargs: Any) -> Any:
        cursor = super().find(*args, **kwargs)
        cursor.__class__ = IndexedCursor
        return cursor

    def with_options(self, *args: Any, **kwargs: Any) -> Any:
        collection = super().with_options(*args, **kwargs)
        if type(collection) is _MongomockCollection:
            collection.__class__ = IndexedCollection
        return collection


def use_indexes(database: Any, names: Iterable[str], sorted_fields: Iterable[str] = ()) -> None:
    """Make every later ``database[name]`` (and every cursor and write through it) use the lookups."""
    for name in names:
        collection = database.get_collection(name)
        collection.__class__ = IndexedCollection
        collection._indexes().sorted_fields.update(sorted_fields)
