"""Open MongoDB once per container: a real server through pymongo, or mongomock for the local harness."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

from pymongo import MongoClient
from pymongo.database import Database

from donation_processor.exceptions import ConfigError

_clients: dict[str, MongoClient[Any]] = {}
_clients_lock = threading.Lock()


def _open(uri: str, pool_size: int) -> MongoClient[Any]:
    if uri.startswith("mongomock://"):
        try:
            import mongomock
        except ImportError as error:
            raise ConfigError("MONGODB_URI is mongomock:// but mongomock is not installed") from error
        client: MongoClient[Any] = mongomock.MongoClient()
        return client
    return MongoClient(
        uri,
        appname="scheduled-donations",
        serverSelectionTimeoutMS=5000,
        connectTimeoutMS=5000,
        socketTimeoutMS=30000,
        maxPoolSize=pool_size,
        retryWrites=True,
        retryReads=True,
    )


def get_database(uri: str, database: str, pool_size: int = 32) -> Database[Any]:
    """The database for uri, from a client shared by the whole process (and by mongomock's data)."""
    with _clients_lock:
        client = _clients.get(uri)
        if client is None:
            client = _clients[uri] = _open(uri, pool_size)
    return client[database]


def to_mongo_datetime(moment: datetime) -> datetime:
    """Naive UTC: what pymongo returns by default and what mongomock compares without raising."""
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment
