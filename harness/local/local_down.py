"""`make local-down`: stop what `make local-up` started and say what was stopped.

Stops the moto server, the Stripe-compatible server and the MongoDB local-up started (the wire server's
process or the Docker container), removes their pid files and .local/env (it would point at nothing);
logs stay in .local/ for reading. A MongoDB named by LOCAL_MONGODB_URI was not started here and is left
alone. Stale pid files are removed and reported.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from harness.local.background_process import has_stale_pid_file, stop
from harness.local.local_env import ENV_FILE_NAME, local_dir
from harness.local.local_up import moto_server, stripe_server
from harness.local.practice_mongo import remove_container, wire_server


def main(argv: Sequence[str] | None = None) -> int:
    del argv
    directory = local_dir()
    servers = (moto_server(directory), stripe_server(directory), wire_server(directory))
    for server in servers:
        if has_stale_pid_file(server):
            print(f"{server.name}: removed a stale pid file (the process had already exited)")
    stopped = [f"{server.name} (pid {pid})" for server, pid in stop(servers)]
    container = remove_container(directory)
    if container is not None:
        stopped.append(f"MongoDB container {container}")
    print(f"local-down: stopped {', '.join(stopped)}" if stopped else "local-down: nothing was running")
    env_file = directory / ENV_FILE_NAME
    if env_file.exists():
        env_file.unlink()
        print(f"local-down: removed {env_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
