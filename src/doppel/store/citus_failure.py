"""A statement stopped by a Citus node that is down: which node, in one line."""

from __future__ import annotations

import re
import socket

import psycopg

from doppel.config import Settings
from doppel.errors import DatabaseUnavailable, Remedy
from doppel.store.citus import active
from doppel.store.citus_servers import is_running

_REMOTE = re.compile(r"(?:remote node|node) (?:\w+@)?([\w.-]+):(\d+)")


def node_failure(settings: Settings, message: str) -> DatabaseUnavailable | None:
    """The error naming the node when a statement failed because a Citus node is down.

    Citus names the node when it cannot connect to it; a worker lost in the middle of
    a statement is reported only as a terminated connection, so then the nodes
    themselves are looked at: the local cluster's servers, or, on a cluster of the
    user's own, each worker's port. None when no node is down.
    """
    match = _REMOTE.search(message) if "node" in message or "connect" in message else None
    if match is not None:
        addresses = [f"{match.group(1)}:{match.group(2)}"]
    else:
        addresses = unreachable_nodes(settings)
    if not addresses:
        return None
    cluster = active(settings)
    names = []
    for address in addresses:
        node = cluster.node_named(address) if cluster else None
        names.append(f"{node.name} ({address})" if node else f"the Citus node {address}")
    verb = "is" if len(names) == 1 else "are"
    text = (
        f"{' and '.join(names)} {verb} down or unreachable: the command stopped rather than "
        "answer from part of the gallery, and kept nothing it had not committed"
    )
    if cluster is not None:
        return DatabaseUnavailable(text, remedy=Remedy.START_CLUSTER)
    return DatabaseUnavailable(f"{text}; start it, or remove it with citus_remove_node")


def unreachable_nodes(settings: Settings) -> list[str]:
    """Addresses of the Citus nodes that do not answer (asked only after a failure)."""
    cluster = active(settings)
    if cluster is not None:
        return [n.address for n in cluster.nodes if not is_running(cluster.data(n))]
    if not settings.database_url:
        return []
    try:
        with psycopg.connect(settings.database_url, autocommit=True, connect_timeout=5) as conn:
            known = conn.execute("SELECT to_regclass('pg_dist_node') IS NOT NULL").fetchone()
            if not (known and known[0]):
                return []
            nodes = conn.execute(
                "SELECT nodename, nodeport FROM pg_dist_node WHERE isactive AND groupid <> 0"
            ).fetchall()
    except psycopg.Error:
        return []
    down = []
    for host, port in nodes:
        try:
            socket.create_connection((host, port), timeout=3).close()
        except OSError:
            down.append(f"{host}:{port}")
    return down
