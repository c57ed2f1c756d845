"""The practice stack's MongoDB: one the person names, a `mongo:7` container, or the mongomock wire server.

LOCAL_MONGODB_URI, when set, wins: nothing is started and MONGODB_URI is that URI. Otherwise
LOCAL_MONGO_MODE decides: `docker` runs mongo:7 (127.0.0.1 only), `wire` starts the practice stand-in
(harness/local/mongo_wire_server.py), `auto` (the default) uses Docker where `docker info` succeeds.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from harness.local.background_process import Managed, port_in_use, running_pid, spawn, wait_for_port

MONGO_IMAGE = "mongo:7"
WIRE_SERVER = "mongo-wire"
CONTAINER_FILE = "mongo.container"
MODES = ("auto", "docker", "wire")


@dataclass(frozen=True)
class MongoTarget:
    uri: str
    description: str
    started: bool


def wire_server(directory: Path) -> Managed:
    return Managed(WIRE_SERVER, directory, "harness.local.mongo_wire_server")


def _docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    docker = shutil.which("docker") or "docker"
    return subprocess.run(  # noqa: S603 - fixed docker arguments
        [docker, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return _docker("info", timeout=15).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def container_name(directory: Path) -> str | None:
    try:
        return (directory / CONTAINER_FILE).read_text().strip() or None
    except FileNotFoundError:
        return None


def container_running(name: str) -> bool:
    answer = _docker("inspect", "--format", "{{.State.Running}}", name, timeout=15)
    return answer.returncode == 0 and answer.stdout.strip() == "true"


def remove_container(directory: Path) -> str | None:
    """Remove the container local-up started (if any); its name, or None."""
    name = container_name(directory)
    if name is None:
        return None
    if shutil.which("docker") is not None:
        _docker("rm", "--force", name)
    (directory / CONTAINER_FILE).unlink(missing_ok=True)
    return name


def wait_until_answering(uri: str, timeout_seconds: float = 60.0) -> bool:
    """True once a MongoDB at uri answers ping (a container's port opens before mongod is ready)."""
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        client: MongoClient[dict[str, Any]] = MongoClient(uri, serverSelectionTimeoutMS=1000)
        try:
            client.admin.command("ping")
            return True
        except PyMongoError:
            time.sleep(0.2)
        finally:
            client.close()
    return False


def _start_docker(directory: Path, port: int) -> MongoTarget | None:
    name = container_name(directory) or f"donations-local-mongo-{port}"
    uri = f"mongodb://127.0.0.1:{port}"
    if container_running(name):
        return MongoTarget(uri, f"MongoDB ({MONGO_IMAGE} container {name}), already running", False)
    _docker("rm", "--force", name)
    answer = _docker("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:27017", MONGO_IMAGE, timeout=600)
    if answer.returncode != 0:
        print(f"MongoDB: docker run {MONGO_IMAGE} failed: {answer.stderr.strip()[:300]}")
        return None
    (directory / CONTAINER_FILE).write_text(f"{name}\n")
    if not wait_until_answering(uri):
        print(f"MongoDB: container {name} did not answer on port {port}; see `docker logs {name}`")
        remove_container(directory)
        return None
    return MongoTarget(uri, f"MongoDB ({MONGO_IMAGE} container {name})", True)


def _start_wire(directory: Path, port: int, env: Mapping[str, str]) -> MongoTarget:
    server = wire_server(directory)
    uri = f"mongodb://127.0.0.1:{port}"
    description = "practice stand-in: mongomock behind the MongoDB wire protocol (NOT a MongoDB)"
    pid = running_pid(server)
    if pid is not None:
        return MongoTarget(uri, f"{description}, already running (pid {pid})", False)
    if port_in_use(port):
        raise RuntimeError(f"port {port} is in use by another program; set LOCAL_MONGO_PORT to a free port")
    argv = [sys.executable, "-m", "harness.local.mongo_wire_server", "--port", str(port)]
    pid = spawn(server, argv, env)
    if not wait_for_port(port, pid=pid) or not wait_until_answering(uri, 15):
        raise RuntimeError(f"the mongomock wire server did not start; see {server.log_file}")
    return MongoTarget(uri, f"{description}, pid {pid}", True)


def start_mongo(directory: Path, port: int, env: Mapping[str, str]) -> MongoTarget:
    external = env.get("LOCAL_MONGODB_URI", "").strip()
    if external:
        if not wait_until_answering(external, 10):
            raise RuntimeError("LOCAL_MONGODB_URI does not answer ping")
        return MongoTarget(external, "the MongoDB named by LOCAL_MONGODB_URI (not started here)", False)
    mode = env.get("LOCAL_MONGO_MODE", "auto").strip() or "auto"
    if mode not in MODES:
        raise RuntimeError(f"LOCAL_MONGO_MODE must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "docker" or (mode == "auto" and docker_available()):
        target = _start_docker(directory, port)
        if target is not None:
            return target
        if mode == "docker":
            raise RuntimeError("LOCAL_MONGO_MODE=docker but the container did not start")
        print("MongoDB: falling back to the mongomock wire server")
    return _start_wire(directory, port, env)
