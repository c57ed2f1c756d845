"""The mongomock wire server speaks enough MongoDB for pymongo: handshake, cursors, writes and errors."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from typing import Any

import bson
import pytest
from pymongo import MongoClient, ReturnDocument
from pymongo.database import Database
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

from harness.local.mongo_wire_protocol import OP_MSG, OP_QUERY, OP_REPLY
from harness.local.mongo_wire_server import RunningMongoWireServer


@pytest.fixture
def database(wire_server: RunningMongoWireServer) -> Iterator[Database[dict[str, Any]]]:
    client: MongoClient[dict[str, Any]] = MongoClient(wire_server.uri, serverSelectionTimeoutMS=3000)
    try:
        yield client["wire_test"]
    finally:
        client.close()


def _exchange(server: RunningMongoWireServer, op_code: int, payload: bytes) -> tuple[int, int, bytes]:
    """Send one raw message; return the reply's responseTo, opCode and payload."""
    with socket.create_connection((server.host, server.port), timeout=5) as connection:
        connection.sendall(struct.pack("<iiii", 16 + len(payload), 42, 0, op_code) + payload)
        header = connection.recv(16, socket.MSG_WAITALL)
        length, _, response_to, reply_op = struct.unpack("<iiii", header)
        body = connection.recv(length - 16, socket.MSG_WAITALL)
    return response_to, reply_op, body


def test_a_legacy_op_query_is_master_is_answered_with_an_op_reply(
    wire_server: RunningMongoWireServer,
) -> None:
    # GIVEN the legacy handshake older drivers send first: OP_QUERY isMaster on admin.$cmd
    query = bson.encode({"isMaster": 1, "helloOk": True})
    payload = struct.pack("<i", 0) + b"admin.$cmd\x00" + struct.pack("<ii", 0, -1) + query

    # WHEN it is sent on a raw socket
    response_to, op_code, body = _exchange(wire_server, OP_QUERY, payload)

    # THEN the answer is one OP_REPLY document saying a writable primary that accepts hello
    flags, cursor_id, starting_from, returned = struct.unpack_from("<iqii", body)
    reply = bson.decode(body[20:])
    assert (response_to, op_code, cursor_id, returned) == (42, OP_REPLY, 0, 1)
    assert (flags, starting_from) == (0, 0)
    assert reply["ismaster"] is True
    assert reply["helloOk"] is True
    assert reply["maxWireVersion"] >= 9
    assert reply["ok"] == 1.0


def test_an_op_msg_document_sequence_is_read_as_the_commands_documents(
    wire_server: RunningMongoWireServer, database: Database[dict[str, Any]]
) -> None:
    # GIVEN an OP_MSG insert whose documents travel in a kind-1 section, not in the body
    body = bson.encode({"insert": "raw", "$db": "wire_test"})
    documents = b"".join(bson.encode({"_id": number}) for number in range(3))
    sequence = b"documents\x00" + documents
    section = b"\x01" + struct.pack("<i", 4 + len(sequence)) + sequence
    payload = struct.pack("<I", 0) + b"\x00" + body + section

    # WHEN it is sent on a raw socket
    response_to, op_code, reply_payload = _exchange(wire_server, OP_MSG, payload)

    # THEN the reply is an OP_MSG with n = 3, and the documents are there
    reply = bson.decode(reply_payload[5:])
    assert (response_to, op_code, reply["n"], reply["ok"]) == (42, OP_MSG, 3, 1.0)
    assert sorted(document["_id"] for document in database["raw"].find()) == [0, 1, 2]


def test_a_find_larger_than_one_batch_is_read_to_the_end_through_get_more(
    database: Database[dict[str, Any]],
) -> None:
    # GIVEN 250 documents
    database["many"].insert_many([{"n": number} for number in range(250)])

    # WHEN they are read sorted, 40 per batch
    found = [document["n"] for document in database["many"].find({}, sort=[("n", -1)]).batch_size(40)]

    # THEN every document comes back once, in order
    assert found == list(range(249, -1, -1))


def test_a_duplicate_key_insert_raises_duplicate_key_error(database: Database[dict[str, Any]]) -> None:
    # GIVEN a unique index and a document
    database["unique"].create_index("key", unique=True)
    database["unique"].insert_one({"key": "a"})

    # WHEN the same key is inserted again
    with pytest.raises(DuplicateKeyError) as raised:
        database["unique"].insert_one({"key": "a"})

    # THEN the error is MongoDB's code 11000
    assert raised.value.code == 11000


def test_an_unordered_insert_many_with_a_duplicate_inserts_the_rest_and_raises_bulk_write_error(
    database: Database[dict[str, Any]],
) -> None:
    # GIVEN a unique index and one existing key
    database["bulk"].create_index("key", unique=True)
    database["bulk"].insert_one({"key": "taken"})

    # WHEN three documents, one of them a duplicate, are inserted unordered
    with pytest.raises(BulkWriteError) as raised:
        database["bulk"].insert_many([{"key": "x"}, {"key": "taken"}, {"key": "y"}], ordered=False)

    # THEN the two others are in, and the error names the duplicate by index
    details = raised.value.details
    assert details["nInserted"] == 2
    assert [(error["index"], error["code"]) for error in details["writeErrors"]] == [(1, 11000)]
    assert database["bulk"].count_documents({}) == 3


def test_updates_report_matched_modified_and_upserted(database: Database[dict[str, Any]]) -> None:
    # GIVEN three documents
    database["updates"].insert_many([{"_id": n, "n": n} for n in range(3)])

    # WHEN several updates run
    many = database["updates"].update_many({"n": {"$gte": 1}}, {"$set": {"seen": True}})
    upsert = database["updates"].update_one({"_id": 9}, {"$set": {"n": 9}}, upsert=True)
    after = database["updates"].find_one_and_update(
        {"_id": 0}, {"$inc": {"n": 5}}, return_document=ReturnDocument.AFTER
    )

    # THEN each reports what it did, as against a server
    assert (many.matched_count, many.modified_count) == (2, 2)
    assert upsert.upserted_id == 9
    assert after == {"_id": 0, "n": 5}
    assert sorted(database["updates"].distinct("n")) == [1, 2, 5, 9]


def test_indexes_and_collections_are_listed_and_dropped(database: Database[dict[str, Any]]) -> None:
    # GIVEN a collection holding a document, with a partial unique index
    database["indexed"].insert_one({"a": 1, "b": 1})
    database["indexed"].create_index(
        [("a", 1), ("b", 1)], name="a_b", unique=True, partialFilterExpression={"a": {"$exists": True}}
    )

    # WHEN it is listed, its index dropped, then the collection dropped
    names = database.list_collection_names()
    indexes = {index["name"]: index for index in database["indexed"].list_indexes()}
    database["indexed"].drop_index("a_b")
    after_drop = [index["name"] for index in database["indexed"].list_indexes()]
    database["indexed"].drop()

    # THEN each answer has MongoDB's shape
    assert "indexed" in names
    assert indexes["a_b"]["unique"] is True
    assert indexes["a_b"]["key"] == {"a": 1, "b": 1}
    assert after_drop == ["_id_"]
    assert "indexed" not in database.list_collection_names()


def test_an_unknown_command_fails_with_command_not_found(database: Database[dict[str, Any]]) -> None:
    # WHEN a command the server does not know is sent
    with pytest.raises(OperationFailure) as raised:
        database.command("shardCollection", "x")

    # THEN it fails as MongoDB would, by code and code name
    assert raised.value.code == 59
    assert raised.value.details is not None
    assert raised.value.details["codeName"] == "CommandNotFound"
