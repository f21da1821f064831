"""Redis Cluster URLs: `redis+cluster://[user:password@]host:port[,host:port...]`."""

from __future__ import annotations

from urllib.parse import unquote

CLUSTER_SCHEME = "redis+cluster://"  # --redis-url for a Redis Cluster: seeds after it


def cluster_nodes(url: str) -> list[tuple[str, int]]:
    """The seed nodes of `redis+cluster://[user:password@]host:port[,host:port...]`."""
    rest = url.removeprefix(CLUSTER_SCHEME).split("/", 1)[0].split("?", 1)[0]
    rest = rest.rpartition("@")[2]
    nodes = []
    for part in rest.split(","):
        host, _, port = part.strip().rpartition(":")
        if not host or not port.isdecimal():
            raise ValueError(f"expected host:port in {url!r}, got {part!r}")
        nodes.append((host.strip("[]"), int(port)))
    return nodes


def cluster_credentials(url: str) -> tuple[str | None, str | None]:
    """The (username, password) of a redis+cluster:// URL (percent-decoded), if any:
    every node of the cluster is asked with them (AUTH), as `requirepass` or an ACL
    user on each node wants."""
    rest = url.removeprefix(CLUSTER_SCHEME).split("/", 1)[0]
    userinfo, at, _ = rest.rpartition("@")
    if not at:
        return None, None
    user, colon, password = userinfo.partition(":")
    if not colon:  # a user alone, as redis-py reads redis://user@host (no AUTH is sent)
        return (unquote(user) or None), None
    return (unquote(user) or None), unquote(password)


def cluster_seeds_shown(url: str) -> str:
    """The seed list of a redis+cluster:// URL, without its credentials (for logs)."""
    return url.removeprefix(CLUSTER_SCHEME).split("/", 1)[0].rpartition("@")[2]
