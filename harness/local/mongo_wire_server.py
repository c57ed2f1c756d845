"""A practice stand-in for MongoDB: the MongoDB wire protocol on a TCP port, mongomock behind it.

Not a MongoDB. It exists so that separate processes (the `donations` CLI, a local handler run, a test's
child processes) can share one database on a machine with no mongod and no Docker: pymongo connects to it
with an ordinary `mongodb://127.0.0.1:PORT` URI. What it answers, it answers with mongomock's semantics
(its query, update and aggregation support and its limits: no transactions, no arrayFilters, no pipeline
updates, no change streams, no authentication); see harness/local/mongo_wire_commands.py for the commands.
Every command runs under one lock, so each is atomic. Data lives in memory and is gone when it stops.

    python -m harness.local.mongo_wire_server --port 27018

Where a real MongoDB is at hand (Docker, Atlas, a local mongod), use it instead: `make local-up` runs
`mongo:7` in Docker when a Docker engine answers, and LOCAL_MONGODB_URI points it at any other.
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import socketserver
from collections.abc import Sequence
from types import FrameType

from harness.local.mongo_wire_commands import MongomockCommands
from harness.local.mongo_wire_protocol import ProtocolError, encode_reply, read_request
from harness.local.server_thread import ServingThread, TracksConnections

logger = logging.getLogger(__name__)

DEFAULT_PORT = 27018


class _ConnectionHandler(socketserver.BaseRequestHandler):
    server: _WireServer

    def handle(self) -> None:
        connection: socket.socket = self.request
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        commands = self.server.commands
        connection_id = commands.next_connection_id()
        reply_ids = iter(range(1, 2**31))
        while True:
            try:
                request = read_request(connection)
            except ProtocolError as error:
                logger.warning("closing connection %d: %s", connection_id, error)
                return
            except OSError:
                return  # the client, or stop(), closed the socket
            if request is None:
                return
            answer = commands.execute(request.database, request.body, connection_id)
            if request.more_to_come:
                continue  # an unacknowledged write: the client reads no reply
            try:
                connection.sendall(encode_reply(request, next(reply_ids), answer))
            except OSError:
                return


class _WireServer(TracksConnections, socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], commands: MongomockCommands) -> None:
        self.commands = commands
        super().__init__(address, _ConnectionHandler)


class RunningMongoWireServer(ServingThread):
    """A started server: `uri`, `port`, `stop()`; also a context manager."""

    def __init__(self, server: _WireServer) -> None:
        super().__init__(server, name="mongo-wire")
        self.host = str(server.server_address[0])
        self.uri = f"mongodb://{self.host}:{self.port}"


def start_mongo_wire_server(*, host: str = "127.0.0.1", port: int = 0) -> RunningMongoWireServer:
    """Serve on a daemon thread; port 0 lets the OS pick a free port."""
    running = RunningMongoWireServer(_WireServer((host, port), MongomockCommands()))
    logger.info("mongomock wire server listening on %s:%d", running.host, running.port)
    return running


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m harness.local.mongo_wire_server",
        description="A practice stand-in for MongoDB: the wire protocol with mongomock behind it.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    server = start_mongo_wire_server(host=args.host, port=args.port)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.wait()
    except KeyboardInterrupt:
        logger.info("stopping")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
