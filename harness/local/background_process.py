"""Long-lived local servers as background processes: started detached, tracked by pid file, logged to file.

A pid file is trusted only while its process is alive and its command line still names what was started
(a pid reused by an unrelated process after a reboot is not ours); otherwise it is stale and removed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

STOP_GRACE_SECONDS = 5.0


@dataclass(frozen=True)
class Managed:
    """One background server: its name, pid file, log file and a word its command line must contain."""

    name: str
    directory: Path
    marker: str

    @property
    def pid_file(self) -> Path:
        return self.directory / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.directory / f"{self.name}.log"


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\x00", b" ").decode(errors="replace")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    """True while pid runs; a zombie (exited, not yet reaped by its parent) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def running_pid(server: Managed) -> int | None:
    """The pid of the running server, or None; a stale pid file is removed."""
    try:
        pid = int(server.pid_file.read_text().strip())
    except FileNotFoundError:
        return None
    except ValueError:
        server.pid_file.unlink(missing_ok=True)
        return None
    command = _command_line(pid)
    if _alive(pid) and (server.marker in command or not Path("/proc").is_dir()):
        return pid
    server.pid_file.unlink(missing_ok=True)
    return None


def has_stale_pid_file(server: Managed) -> bool:
    return server.pid_file.exists() and running_pid(server) is None


def spawn(server: Managed, argv: Sequence[str], env: Mapping[str, str]) -> int:
    """Start argv detached (its own session, stdin closed, output to the log); record and return its pid."""
    server.directory.mkdir(parents=True, exist_ok=True)
    log_fd = os.open(server.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        pid = os.posix_spawn(
            argv[0],
            list(argv),
            dict(env),
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, log_fd, 1),
                (os.POSIX_SPAWN_DUP2, log_fd, 2),
            ],
            setsid=True,
        )
    finally:
        os.close(log_fd)
    server.pid_file.write_text(f"{pid}\n")
    return pid


def _reap(pid: int) -> None:
    """Collect the exit status if pid is our child (it is when started in this process)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def stop(servers: Sequence[Managed]) -> list[tuple[Managed, int]]:
    """SIGTERM every running server at once, SIGKILL what outlives the grace period, remove the pid files.

    Returns the servers that were running, with their pids.
    """
    running = [(server, pid) for server in servers if (pid := running_pid(server)) is not None]
    for _server, pid in running:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    waiting = [pid for _server, pid in running]
    while waiting and time.monotonic() < deadline:
        for pid in waiting:
            _reap(pid)
        waiting = [pid for pid in waiting if _alive(pid)]
        time.sleep(0.05)
    for pid in waiting:
        os.kill(pid, signal.SIGKILL)
        _reap(pid)
    for server, _pid in running:
        server.pid_file.unlink(missing_ok=True)
    return running


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


def wait_for_port(port: int, *, pid: int | None, timeout_seconds: float = 30.0) -> bool:
    """True once something accepts connections on 127.0.0.1:port; False on timeout or if pid exits."""
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if port_in_use(port):
            return True
        if pid is not None:
            _reap(pid)
            if not _alive(pid):
                return False
        time.sleep(0.1)
    return False


def log_tail(server: Managed, lines: int = 15) -> str:
    try:
        return "\n".join(server.log_file.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"
