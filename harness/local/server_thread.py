"""What the local servers share: connections they can wake on stop, and a handle to one serving thread."""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
from types import TracebackType
from typing import Any, Self

logger = logging.getLogger(__name__)


class TracksConnections(socketserver.BaseServer):
    """Remembers open client sockets, so stop() can wake handler threads parked on idle pooled connections."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        if isinstance(request, socket.socket):
            with self._connections_lock:
                self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                logger.debug("connection already closed")


class ServingThread:
    """A server serving on a daemon thread: `stop()` (idempotent), `wait()`; also a context manager.
    A server that tracks its connections has them woken on stop; others close theirs as they finish."""

    def __init__(self, server: socketserver.BaseServer, name: str) -> None:
        self._server = server
        self._stopped = False
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])  # type: ignore[index]

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._server.shutdown()
        if isinstance(self._server, TracksConnections):
            self._server.close_connections()
        self._server.server_close()
        self._thread.join(timeout=5)

    def wait(self) -> None:
        """Block until the server stops (a server's foreground mode)."""
        while self._thread.is_alive():
            self._thread.join(timeout=0.5)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
