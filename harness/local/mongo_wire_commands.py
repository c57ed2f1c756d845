"""MongoDB commands answered by mongomock: what pymongo 4.x sends for the engine, the CLI and the tests.

Every command runs under one lock, so each is atomic with respect to every other client, as a single
document write is on MongoDB (and more: a multi-document update is atomic here, it is not on MongoDB).
Answers have MongoDB's shape: `ok`, cursors with `firstBatch`/`nextBatch`, write results with `n`,
`nModified`, `upserted` and `writeErrors`; failures carry `code`, `codeName` and `errmsg`, so pymongo
raises its own exceptions (DuplicateKeyError, BulkWriteError, OperationFailure) as it would against a
server. The semantics are mongomock's: its query, update and aggregation support, not MongoDB's.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import bson
import mongomock
from mongomock.filtering import filter_applies as _untyped_filter_applies
from pymongo import ReturnDocument
from pymongo.errors import OperationFailure

type Document = dict[str, Any]
type Handler = Callable[["MongomockCommands", str, Document], Document]

filter_applies: Callable[[Document, Document], bool] = _untyped_filter_applies

SERVER_VERSION: Final = "7.0.0"
MAX_WIRE_VERSION: Final = 21  # MongoDB 7.0
MAX_BSON_OBJECT_SIZE: Final = 16 * 1024 * 1024
MAX_MESSAGE_SIZE: Final = 48_000_000
MAX_WRITE_BATCH_SIZE: Final = 100_000
FIRST_BATCH_DEFAULT: Final = 101
BATCH_BYTES: Final = 8 * 1024 * 1024
CODE_NAMES: Final = {
    2: "BadValue",
    9: "FailedToParse",
    14: "TypeMismatch",
    26: "NamespaceNotFound",
    27: "IndexNotFound",
    43: "CursorNotFound",
    48: "NamespaceExists",
    59: "CommandNotFound",
    66: "ImmutableField",
    67: "CannotCreateIndex",
    85: "IndexOptionsConflict",
    86: "IndexKeySpecsConflict",
    115: "CommandNotSupported",
    11000: "DuplicateKey",
}
# Options a driver adds to commands that mongomock has no use for (sessions, concerns, routing).
_ENVELOPE_FIELDS: Final = frozenset(
    {
        "lsid",
        "txnNumber",
        "autocommit",
        "startTransaction",
        "writeConcern",
        "readConcern",
        "maxTimeMS",
        "comment",
        "apiVersion",
        "apiStrict",
        "apiDeprecationErrors",
        "bypassDocumentValidation",
        "backpressure",
    }
)


class CommandError(Exception):
    """A command failed; becomes {ok: 0, code, codeName, errmsg} on the wire."""

    def __init__(self, code: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.extra = extra

    def document(self) -> Document:
        return {
            "ok": 0.0,
            "errmsg": str(self),
            "code": self.code,
            "codeName": CODE_NAMES.get(self.code, "UnknownError"),
            **self.extra,
        }


@dataclass
class _Cursor:
    namespace: str
    remaining: Iterator[Document]


def _write_error(index: int, error: OperationFailure) -> Document:
    code = error.code or 8
    entry: Document = {"index": index, "code": code, "errmsg": str(error)}
    if code == 11000:
        entry["codeName"] = "DuplicateKey"
    return entry


def _is_operator_update(update: Any) -> bool:
    return isinstance(update, dict) and bool(update) and all(key.startswith("$") for key in update)


def _sort(spec: Any) -> list[tuple[str, Any]] | None:
    return list(spec.items()) if isinstance(spec, dict) and spec else None


class MongomockCommands:
    """One mongomock client behind MongoDB's command interface; thread-safe, one command at a time."""

    def __init__(self) -> None:
        self.client: Any = mongomock.MongoClient()
        self.cursors: dict[int, _Cursor] = {}
        self._lock = threading.Lock()
        self._cursor_ids = itertools.count(1)
        self._connection_ids = itertools.count(1)

    def next_connection_id(self) -> int:
        return next(self._connection_ids)

    def execute(self, database: str, body: Document, connection_id: int = 0) -> Document:
        """Run one command; the answer is a reply document, {ok: 0, …} on failure."""
        if not body:
            return CommandError(59, "no command given").document()
        name = next(iter(body))
        handler = _HANDLERS.get(name)
        if handler is None:
            return CommandError(59, f"no such command: '{name}'").document()
        command = {key: value for key, value in body.items() if key not in _ENVELOPE_FIELDS and key[0] != "$"}
        try:
            with self._lock:
                answer = handler(self, database, command)
        except CommandError as error:
            return error.document()
        except OperationFailure as error:
            return CommandError(error.code or 8, str(error)).document()
        except (TypeError, ValueError, KeyError, NotImplementedError) as error:
            return CommandError(2, f"{type(error).__name__}: {error}").document()
        if name.lower() in ("hello", "ismaster"):
            answer["connectionId"] = connection_id
        return {**answer, "ok": 1.0}

    # ---- helpers ----

    def collection(self, database: str, name: Any) -> Any:
        if not isinstance(name, str) or not name:
            raise CommandError(2, "collection name must be a non-empty string")
        return self.client[database][name]

    def collection_exists(self, database: str, name: str) -> bool:
        return name in self.client[database].list_collection_names()

    def cursor_answer(
        self,
        namespace: str,
        documents: Iterator[Document],
        batch_size: int | None,
        *,
        first: bool,
        cursor_id: int | None = None,
    ) -> Document:
        """A cursor reply: a batch now, the rest kept under a cursor id for getMore."""
        limit = batch_size if batch_size else (FIRST_BATCH_DEFAULT if first else None)
        batch: list[Document] = []
        size = 0
        exhausted = True
        for document in documents:
            batch.append(document)
            size += len(bson.encode(document))
            if (limit is not None and len(batch) >= limit) or size >= BATCH_BYTES:
                exhausted = False
                break
        kept = 0
        if not exhausted:
            peeked = next(documents, None)
            if peeked is not None:
                kept = cursor_id or next(self._cursor_ids)
                self.cursors[kept] = _Cursor(namespace, itertools.chain([peeked], documents))
        return {"cursor": {"id": bson.Int64(kept), "ns": namespace, _batch_key(first): batch}}


def _batch_key(first: bool) -> str:
    return "firstBatch" if first else "nextBatch"


# ---- handshake and server information ----


def _hello(commands: MongomockCommands, database: str, command: Document) -> Document:
    legacy = next(iter(command)).lower() == "ismaster"
    answer: Document = {
        "ismaster" if legacy else "isWritablePrimary": True,
        "maxBsonObjectSize": MAX_BSON_OBJECT_SIZE,
        "maxMessageSizeBytes": MAX_MESSAGE_SIZE,
        "maxWriteBatchSize": MAX_WRITE_BATCH_SIZE,
        "localTime": datetime.now(UTC),
        "logicalSessionTimeoutMinutes": 30,
        "minWireVersion": 0,
        "maxWireVersion": MAX_WIRE_VERSION,
        "readOnly": False,
    }
    if command.get("helloOk"):
        answer["helloOk"] = True
    return answer


def _build_info(commands: MongomockCommands, database: str, command: Document) -> Document:
    return {
        "version": SERVER_VERSION,
        "versionArray": [7, 0, 0, 0],
        "gitVersion": "mongomock-wire-server",
        "maxBsonObjectSize": MAX_BSON_OBJECT_SIZE,
        "bits": 64,
    }


def _nothing(commands: MongomockCommands, database: str, command: Document) -> Document:
    return {}


# ---- reads ----


def _find(commands: MongomockCommands, database: str, command: Document) -> Document:
    name = command["find"]
    collection = commands.collection(database, name)
    cursor = collection.find(command.get("filter") or {}, command.get("projection"))
    sort = _sort(command.get("sort"))
    if sort:
        cursor = cursor.sort(sort)
    if command.get("skip"):
        cursor = cursor.skip(int(command["skip"]))
    limit = int(command.get("limit") or 0)
    if limit:
        cursor = cursor.limit(abs(limit))
    batch_size = int(command.get("batchSize") or 0) or None
    if command.get("singleBatch") or limit < 0:
        batch_size = abs(limit) or None
        answer = commands.cursor_answer(f"{database}.{name}", iter(list(cursor)), batch_size, first=True)
        answer["cursor"]["id"] = bson.Int64(0)
        return answer
    return commands.cursor_answer(f"{database}.{name}", iter(list(cursor)), batch_size, first=True)


def _get_more(commands: MongomockCommands, database: str, command: Document) -> Document:
    cursor_id = int(command["getMore"])
    cursor = commands.cursors.pop(cursor_id, None)
    if cursor is None:
        raise CommandError(43, f"cursor id {cursor_id} not found")
    batch_size = int(command.get("batchSize") or 0) or None
    return commands.cursor_answer(
        cursor.namespace, cursor.remaining, batch_size, first=False, cursor_id=cursor_id
    )


def _kill_cursors(commands: MongomockCommands, database: str, command: Document) -> Document:
    killed: list[Any] = []
    missing: list[Any] = []
    for cursor_id in command.get("cursors", []):
        (killed if commands.cursors.pop(int(cursor_id), None) else missing).append(cursor_id)
    return {"cursorsKilled": killed, "cursorsNotFound": missing, "cursorsAlive": [], "cursorsUnknown": []}


def _aggregate(commands: MongomockCommands, database: str, command: Document) -> Document:
    name = command["aggregate"]
    if not isinstance(name, str):
        raise CommandError(115, "database-level aggregate is not supported by the mongomock stand-in")
    pipeline = command.get("pipeline", [])
    documents = list(commands.collection(database, name).aggregate(pipeline))
    batch_size = command.get("cursor", {}).get("batchSize")
    return commands.cursor_answer(f"{database}.{name}", iter(documents), batch_size, first=True)


def _count(commands: MongomockCommands, database: str, command: Document) -> Document:
    collection = commands.collection(database, command["count"])
    options = {key: int(command[key]) for key in ("limit", "skip") if command.get(key)}
    return {"n": collection.count_documents(command.get("query") or {}, **options)}


def _distinct(commands: MongomockCommands, database: str, command: Document) -> Document:
    collection = commands.collection(database, command["distinct"])
    return {"values": collection.distinct(command["key"], command.get("query") or {})}


# ---- writes ----


def _insert(commands: MongomockCommands, database: str, command: Document) -> Document:
    collection = commands.collection(database, command["insert"])
    ordered = command.get("ordered", True)
    inserted, errors = 0, []
    for index, document in enumerate(command.get("documents", [])):
        try:
            collection.insert_one(document)
            inserted += 1
        except OperationFailure as error:
            errors.append(_write_error(index, error))
            if ordered:
                break
    return {"n": inserted, **({"writeErrors": errors} if errors else {})}


def _update_one_statement(collection: Any, statement: Document) -> tuple[int, int, Any]:
    """(matched, modified, upserted _id or None) of one `updates` entry."""
    query, update = statement.get("q") or {}, statement["u"]
    upsert = bool(statement.get("upsert", False))
    if statement.get("arrayFilters"):
        raise CommandError(2, "arrayFilters are not supported by mongomock")
    if _is_operator_update(update):
        method = collection.update_many if statement.get("multi") else collection.update_one
        result = method(query, update, upsert=upsert)
    elif isinstance(update, dict):
        if statement.get("multi"):
            raise CommandError(9, "multi update is not supported for replacement-style update")
        result = collection.replace_one(query, update, upsert=upsert)
    else:
        raise CommandError(115, "pipeline updates are not supported by the mongomock stand-in")
    return result.matched_count, result.modified_count, result.upserted_id


def _update(commands: MongomockCommands, database: str, command: Document) -> Document:
    collection = commands.collection(database, command["update"])
    ordered = command.get("ordered", True)
    matched = modified = 0
    upserted: list[Document] = []
    errors: list[Document] = []
    for index, statement in enumerate(command.get("updates", [])):
        try:
            n, changed, upserted_id = _update_one_statement(collection, statement)
        except OperationFailure as error:
            errors.append(_write_error(index, error))
            if ordered:
                break
            continue
        matched += n
        modified += changed
        if upserted_id is not None:
            matched += 1
            upserted.append({"index": index, "_id": upserted_id})
    answer: Document = {"n": matched, "nModified": modified}
    if upserted:
        answer["upserted"] = upserted
    if errors:
        answer["writeErrors"] = errors
    return answer


def _delete(commands: MongomockCommands, database: str, command: Document) -> Document:
    collection = commands.collection(database, command["delete"])
    deleted = 0
    for statement in command.get("deletes", []):
        query = statement.get("q") or {}
        method = collection.delete_one if int(statement.get("limit", 0)) == 1 else collection.delete_many
        deleted += method(query).deleted_count
    return {"n": deleted}


def _find_and_modify(commands: MongomockCommands, database: str, command: Document) -> Document:
    name = next(k for k in command if k.lower() == "findandmodify")
    collection = commands.collection(database, command[name])
    query, sort, fields = command.get("query") or {}, _sort(command.get("sort")), command.get("fields")
    if command.get("arrayFilters"):
        raise CommandError(2, "arrayFilters are not supported by mongomock")
    existing = collection.find_one(query, sort=sort)
    if command.get("remove"):
        value = collection.find_one_and_delete(query, projection=fields, sort=sort)
        return {"lastErrorObject": {"n": 1 if value is not None else 0}, "value": value}
    update, upsert = command.get("update"), bool(command.get("upsert", False))
    returned = ReturnDocument.AFTER if command.get("new") else ReturnDocument.BEFORE
    if _is_operator_update(update):
        value = collection.find_one_and_update(
            query, update, projection=fields, sort=sort, upsert=upsert, return_document=returned
        )
    elif isinstance(update, dict):
        value = collection.find_one_and_replace(
            query, update, projection=fields, sort=sort, upsert=upsert, return_document=returned
        )
    else:
        raise CommandError(9, "findAndModify needs update or remove")
    last_error: Document = {"n": 1 if existing is not None or upsert else 0}
    last_error["updatedExisting"] = existing is not None
    if existing is None and upsert and value is not None and "_id" in value:
        last_error["upserted"] = value["_id"]
    return {"lastErrorObject": last_error, "value": value}


# ---- collections, indexes, databases ----


def _create(commands: MongomockCommands, database: str, command: Document) -> Document:
    if commands.collection_exists(database, command["create"]):
        raise CommandError(48, f"Collection {database}.{command['create']} already exists.")
    commands.client[database].create_collection(command["create"])
    return {}


def _create_indexes(commands: MongomockCommands, database: str, command: Document) -> Document:
    collection = commands.collection(database, command["createIndexes"])
    created_collection = not commands.collection_exists(database, command["createIndexes"])
    before = len(collection.index_information()) if not created_collection else 1
    for spec in command.get("indexes", []):
        options = {key: value for key, value in spec.items() if key not in ("key", "v")}
        collection.create_index(list(spec["key"].items()), **options)
    return {
        "createdCollectionAutomatically": created_collection,
        "numIndexesBefore": before,
        "numIndexesAfter": len(collection.index_information()),
    }


def _list_indexes(commands: MongomockCommands, database: str, command: Document) -> Document:
    name = command["listIndexes"]
    if not commands.collection_exists(database, name):
        raise CommandError(26, f"ns does not exist: {database}.{name}")
    specs = []
    for index_name, info in commands.collection(database, name).index_information().items():
        spec: Document = {"v": 2, "key": dict(info["key"]), "name": index_name}
        spec.update({key: value for key, value in info.items() if key not in ("key", "v")})
        specs.append(spec)
    batch_size = command.get("cursor", {}).get("batchSize")
    return commands.cursor_answer(f"{database}.$cmd.listIndexes", iter(specs), batch_size, first=True)


def _drop_indexes(commands: MongomockCommands, database: str, command: Document) -> Document:
    name = command["dropIndexes"]
    if not commands.collection_exists(database, name):
        raise CommandError(26, f"ns not found {database}.{name}")
    collection = commands.collection(database, name)
    before = len(collection.index_information())
    index = command.get("index")
    if index == "*":
        collection.drop_indexes()
    elif isinstance(index, dict):
        collection.drop_index(list(index.items()))
    else:
        if index not in collection.index_information():
            raise CommandError(27, f"index not found with name [{index}]")
        collection.drop_index(index)
    return {"nIndexesWas": before}


def _list_collections(commands: MongomockCommands, database: str, command: Document) -> Document:
    wanted = command.get("filter") or {}
    entries = []
    for name in sorted(commands.client[database].list_collection_names()):
        entry: Document = {"name": name, "type": "collection", "options": {}, "info": {"readOnly": False}}
        if filter_applies(wanted, entry):
            entries.append({"name": name, "type": "collection"} if command.get("nameOnly") else entry)
    batch_size = command.get("cursor", {}).get("batchSize")
    return commands.cursor_answer(f"{database}.$cmd.listCollections", iter(entries), batch_size, first=True)


def _drop(commands: MongomockCommands, database: str, command: Document) -> Document:
    name = command["drop"]
    if not commands.collection_exists(database, name):
        raise CommandError(26, "ns not found")
    commands.client[database].drop_collection(name)
    return {"ns": f"{database}.{name}"}


def _drop_database(commands: MongomockCommands, database: str, command: Document) -> Document:
    commands.client.drop_database(database)
    return {"dropped": database}


def _list_databases(commands: MongomockCommands, database: str, command: Document) -> Document:
    names = sorted(commands.client.list_database_names())
    if command.get("nameOnly"):
        return {"databases": [{"name": name} for name in names]}
    return {
        "databases": [{"name": name, "sizeOnDisk": 0, "empty": False} for name in names],
        "totalSize": 0,
    }


_HANDLERS: Final[dict[str, Handler]] = {
    "hello": _hello,
    "isMaster": _hello,
    "ismaster": _hello,
    "ping": _nothing,
    "buildInfo": _build_info,
    "buildinfo": _build_info,
    "endSessions": _nothing,
    "find": _find,
    "getMore": _get_more,
    "killCursors": _kill_cursors,
    "aggregate": _aggregate,
    "count": _count,
    "distinct": _distinct,
    "insert": _insert,
    "update": _update,
    "delete": _delete,
    "findAndModify": _find_and_modify,
    "findandmodify": _find_and_modify,
    "create": _create,
    "createIndexes": _create_indexes,
    "listIndexes": _list_indexes,
    "dropIndexes": _drop_indexes,
    "listCollections": _list_collections,
    "drop": _drop,
    "dropDatabase": _drop_database,
    "listDatabases": _list_databases,
}
