"""What the CLI may say about a MongoDB URI: its hosts and ports, never its user name or password."""

from __future__ import annotations

from dataclasses import dataclass

MAX_PORT = 65535


@dataclass(frozen=True)
class Host:
    name: str  # lower case, without brackets
    port: str | None  # as written; checked by `port_problem`

    def __str__(self) -> str:
        name = f"[{self.name}]" if ":" in self.name else self.name
        return name if self.port is None else f"{name}:{self.port}"


def hosts(uri: str) -> list[Host]:
    """The hosts of a mongodb:// or mongodb+srv:// URI, without credentials or options."""
    rest = uri.split("://", 1)[-1]
    authority = rest.split("/", 1)[0].split("?", 1)[0]
    authority = authority.rpartition("@")[2]  # drop user:password@
    found = []
    for item in authority.split(","):
        if item.startswith("["):  # [::1]:27017
            name, _, after = item[1:].partition("]")
            port = after[1:] if after.startswith(":") else None
        else:
            name, colon, port_text = item.partition(":")
            port = port_text if colon else None
        found.append(Host(name.lower(), port))
    return found


def port_problem(uri: str) -> str | None:
    """What is wrong with a port of the URI, or None; the driver would raise a bare ValueError instead."""
    for host in hosts(uri):
        if host.port is None:
            continue
        if not host.port.isdigit():
            return f"port {host.port[:20]!r} is not a number"
        if not 1 <= int(host.port) <= MAX_PORT:
            return f"port {int(host.port)} is not between 1 and {MAX_PORT}"
    return None


def where(uri: str) -> str:
    """'MongoDB at host:port, host2:port' for error messages."""
    if uri.startswith("mongomock://"):
        return "MongoDB (mongomock, in memory)"
    return "MongoDB at " + ", ".join(str(host) for host in hosts(uri))
