"""Free TCP ports on the loopback interface."""

from __future__ import annotations

import socket

BUS_OFFSET = 10000  # a Redis Cluster node's bus port is its port plus this


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether `port` can be bound on `host` right now."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def cluster_port(taken: list[int]) -> int:
    """A free port whose Redis Cluster bus port (+10000) is free too, neither of them
    one of `taken`'s ports or bus ports (two free ports picked apart can be the same)."""
    used = {*taken, *(port + BUS_OFFSET for port in taken)}
    for _ in range(200):  # bounded: free pairs are plentiful
        port = free_port()
        if port + BUS_OFFSET > 65535 or port in used or port + BUS_OFFSET in used:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + BUS_OFFSET))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a Redis Cluster node")
