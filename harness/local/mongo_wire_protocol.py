"""MongoDB wire-protocol framing: read a request, write its reply (no commands here).

Layouts, from the MongoDB Wire Protocol reference (all integers little-endian):

- header: int32 messageLength, int32 requestID, int32 responseTo, int32 opCode;
- OP_MSG (2013): uint32 flagBits, then sections until the end (less a uint32 checksum when flag bit 0 is
  set): kind 0 is one BSON document (the command body); kind 1 is int32 size, a cstring identifier and
  BSON documents (a document sequence, e.g. `documents` of an insert);
- OP_QUERY (2004, legacy; drivers before PYTHON-5713 sent the first `isMaster` this way): int32 flags,
  cstring fullCollectionName, int32 numberToSkip, int32 numberToReturn, the query document and an optional
  field selector;
- OP_REPLY (1, the answer to an OP_QUERY): int32 responseFlags, int64 cursorID, int32 startingFrom,
  int32 numberReturned, then the documents.

OP_COMPRESSED is never sent to us: the server advertises no compressors.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Final, Protocol

import bson
from bson.codec_options import CodecOptions

OP_REPLY: Final = 1
OP_QUERY: Final = 2004
OP_MSG: Final = 2013
CHECKSUM_PRESENT: Final = 1
MORE_TO_COME: Final = 1 << 1
MAX_MESSAGE_BYTES: Final = 48_000_000
_HEADER: Final = struct.Struct("<iiii")
_INT32: Final = struct.Struct("<i")
_UINT32: Final = struct.Struct("<I")
# Decoded as pymongo decodes by default: dicts, naive UTC datetimes, binary kept as Binary.
CODEC_OPTIONS: Final[CodecOptions[dict[str, Any]]] = CodecOptions(document_class=dict)


class ProtocolError(ValueError):
    """The bytes on the socket are not a message this server understands."""


class Readable(Protocol):
    def recv(self, size: int, /) -> bytes: ...


@dataclass(frozen=True)
class Request:
    """One command from a client: its database, its body (sequences merged in) and how to answer."""

    request_id: int
    op_code: int
    database: str
    body: dict[str, Any]
    more_to_come: bool = False


def _read_exactly(connection: Readable, size: int) -> bytes | None:
    """size bytes, or None when the peer closed the connection before sending any."""
    chunks: list[bytes] = []
    remaining = size
    while remaining:
        chunk = connection.recv(remaining)
        if not chunk:
            if remaining == size:
                return None
            raise ProtocolError("connection closed in the middle of a message")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _cstring(data: bytes, offset: int) -> tuple[str, int]:
    end = data.index(b"\x00", offset)
    return data[offset:end].decode("utf-8"), end + 1


def _document(data: bytes, offset: int) -> tuple[dict[str, Any], int]:
    (size,) = _INT32.unpack_from(data, offset)
    return bson.decode(data[offset : offset + size], CODEC_OPTIONS), offset + size


def _parse_op_msg(request_id: int, payload: bytes) -> Request:
    (flags,) = _UINT32.unpack_from(payload, 0)
    end = len(payload) - (4 if flags & CHECKSUM_PRESENT else 0)
    offset = 4
    body: dict[str, Any] | None = None
    sequences: dict[str, list[dict[str, Any]]] = {}
    while offset < end:
        kind = payload[offset]
        offset += 1
        if kind == 0:
            body, offset = _document(payload, offset)
        elif kind == 1:
            (size,) = _INT32.unpack_from(payload, offset)
            section_end = offset + size
            identifier, cursor = _cstring(payload, offset + 4)
            documents = sequences.setdefault(identifier, [])
            while cursor < section_end:
                document, cursor = _document(payload, cursor)
                documents.append(document)
            offset = section_end
        else:
            raise ProtocolError(f"unknown OP_MSG section kind {kind}")
    if body is None:
        raise ProtocolError("OP_MSG without a kind-0 body")
    body.update(sequences)
    database = str(body.get("$db", "admin"))
    return Request(request_id, OP_MSG, database, body, more_to_come=bool(flags & MORE_TO_COME))


def _parse_op_query(request_id: int, payload: bytes) -> Request:
    namespace, offset = _cstring(payload, 4)
    offset += 8  # numberToSkip, numberToReturn: a command answers with one document
    query, _ = _document(payload, offset)
    if "$query" in query:  # the wrapped form, with $readPreference beside it
        query = dict(query["$query"])
    database, _, collection = namespace.partition(".")
    if collection != "$cmd":
        raise ProtocolError("OP_QUERY is only answered for commands (<db>.$cmd)")
    return Request(request_id, OP_QUERY, database, query)


def read_request(connection: Readable) -> Request | None:
    """The next request on the connection, or None when the client hung up between messages."""
    header = _read_exactly(connection, _HEADER.size)
    if header is None:
        return None
    length, request_id, _response_to, op_code = _HEADER.unpack(header)
    if not _HEADER.size < length <= MAX_MESSAGE_BYTES:
        raise ProtocolError(f"message length {length} out of range")
    payload = _read_exactly(connection, length - _HEADER.size)
    if payload is None:
        raise ProtocolError("connection closed after a header")
    if op_code == OP_MSG:
        return _parse_op_msg(request_id, payload)
    if op_code == OP_QUERY:
        return _parse_op_query(request_id, payload)
    raise ProtocolError(f"unsupported opCode {op_code}")


def _frame(request_id: int, response_to: int, op_code: int, payload: bytes) -> bytes:
    return _HEADER.pack(_HEADER.size + len(payload), request_id, response_to, op_code) + payload


def encode_reply(request: Request, reply_id: int, document: dict[str, Any]) -> bytes:
    """The reply to request in its own protocol: OP_MSG for OP_MSG, OP_REPLY for OP_QUERY."""
    encoded = bson.encode(document, codec_options=CODEC_OPTIONS)
    if request.op_code == OP_MSG:
        return _frame(reply_id, request.request_id, OP_MSG, _UINT32.pack(0) + b"\x00" + encoded)
    payload = struct.pack("<iqii", 0, 0, 0, 1) + encoded
    return _frame(reply_id, request.request_id, OP_REPLY, payload)
