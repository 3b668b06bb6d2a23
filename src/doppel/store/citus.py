"""A local Citus cluster under DOPPEL_HOME: a coordinator and N workers on this machine.

For development, tests and demos. Each node is a PostgreSQL server of the embedded
wheel's version, run from the cached Citus build (store/citus_build.py), with its data
in DOPPEL_HOME/citus/<node>, listening on its own port of 127.0.0.1 only (Citus nodes
reach each other by host and port; store/citus_servers.py runs each node's server).
cluster.json records the nodes; while it says the cluster runs, every doppel command
with this DOPPEL_HOME connects to the coordinator.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import psycopg

from doppel.config import Settings
from doppel.errors import DatabaseUnavailable, Remedy, UsageError
from doppel.store.citus_build import CitusInstall, ensure_citus
from doppel.store.citus_servers import (
    HOST,
    ROLE,
    free_ports,
    init_server,
    is_running,
    server_user,
    start_server,
    stop_server,
)
from doppel.store.memory import buffers_mib

DATABASE = "postgres"


@dataclass(frozen=True)
class Node:
    name: str  # coordinator, worker1, worker2, ...
    port: int

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"


@dataclass(frozen=True)
class Cluster:
    """What cluster.json records."""

    home: Path
    coordinator: Node
    workers: tuple[Node, ...]
    prefix: Path  # the Citus build the nodes run from
    running: bool

    @property
    def nodes(self) -> tuple[Node, ...]:
        return (self.coordinator, *self.workers)

    @property
    def url(self) -> str:
        return node_url(self.coordinator)

    def data(self, node: Node) -> Path:
        return self.home / node.name

    def describe(self) -> str:
        return (
            f"local Citus cluster in {self.home} (coordinator {self.coordinator.address}, "
            f"{len(self.workers)} workers)"
        )

    def node_named(self, address: str) -> Node | None:
        return next((n for n in self.nodes if n.address == address), None)


def node_url(node: Node) -> str:
    return f"postgresql://{ROLE}@{HOST}:{node.port}/{DATABASE}"


def cluster_home(settings: Settings) -> Path:
    return settings.home / "citus"


def _state_file(settings: Settings) -> Path:
    return cluster_home(settings) / "cluster.json"


def load(settings: Settings) -> Cluster | None:
    """The cluster recorded under this DOPPEL_HOME, running or stopped; None if none."""
    path = _state_file(settings)
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return Cluster(
            home=cluster_home(settings),
            coordinator=Node(**raw["coordinator"]),
            workers=tuple(Node(**w) for w in raw["workers"]),
            prefix=Path(raw["prefix"]),
            running=bool(raw["running"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise DatabaseUnavailable(
            f"{path} cannot be read ({exc}); delete {path.parent} (the cluster's data) "
            "to start afresh"
        ) from exc


def active(settings: Settings) -> Cluster | None:
    """The cluster doppel commands use: one started and not stopped since."""
    if settings.database_url:
        return None
    cluster = load(settings)
    return cluster if cluster is not None and cluster.running else None


def _save(cluster: Cluster) -> None:
    raw = {
        "coordinator": asdict(cluster.coordinator),
        "workers": [asdict(w) for w in cluster.workers],
        "prefix": str(cluster.prefix),
        "running": cluster.running,
    }
    path = cluster.home / "cluster.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def start(
    settings: Settings, workers: int | None = None, progress: Callable[[str], None] | None = None
) -> Cluster:
    """Start the local cluster (making it on first use); restart any node that is down."""
    if settings.database_url:
        raise UsageError(
            "DOPPEL_DATABASE_URL points at your own server; unset it to start a local cluster"
        )
    say = progress or (lambda line: None)
    existing = load(settings)
    if existing is not None and workers and len(existing.workers) != workers:
        raise UsageError(
            f"the cluster in {existing.home} has {len(existing.workers)} workers, not {workers}",
            remedy=Remedy.NEW_CLUSTER,
        )
    if existing is None and workers is None:
        workers = 2
    if existing is None and (workers or 0) < 1:
        raise UsageError("a cluster needs at least one worker")
    install = ensure_citus(settings, say)
    user = server_user()
    home = cluster_home(settings)
    home.mkdir(parents=True, exist_ok=True)
    if existing is None:
        ports = free_ports((workers or 2) + 1)
        cluster = Cluster(
            home=home,
            coordinator=Node("coordinator", ports[0]),
            workers=tuple(Node(f"worker{i}", port) for i, port in enumerate(ports[1:], start=1)),
            prefix=install.prefix,
            running=False,
        )
        _save(cluster)
    else:
        cluster = Cluster(
            existing.home, existing.coordinator, existing.workers, install.prefix, False
        )
    # The workers share a quarter of the machine's memory as their buffers, as the
    # single embedded server would have it alone; the coordinator holds no faces.
    buffers = max(128, buffers_mib(settings) // len(cluster.workers))
    for node in cluster.nodes:
        memory = 128 if node is cluster.coordinator else buffers
        init_server(cluster.data(node), node.port, install, user, memory)
        if start_server(cluster.data(node), install, user):
            say(f"started {node.name} on {node.address}")
    _register(cluster)
    cluster = Cluster(cluster.home, cluster.coordinator, cluster.workers, cluster.prefix, True)
    _save(cluster)
    return cluster


def _register(cluster: Cluster) -> None:
    """Citus and pgvector on every node, the coordinator's host set, the workers added."""
    for node in cluster.nodes:
        with psycopg.connect(node_url(node), autocommit=True, connect_timeout=10) as conn:
            # A worker already in the cluster refuses CREATE EXTENSION, even IF NOT EXISTS.
            present = {row[0] for row in conn.execute("SELECT extname FROM pg_extension")}
            for extension in ("citus", "vector"):
                if extension not in present:
                    conn.execute(f"CREATE EXTENSION {extension}")
    with psycopg.connect(cluster.url, autocommit=True, connect_timeout=10) as conn:
        conn.execute("SELECT citus_set_coordinator_host(%s, %s)", (HOST, cluster.coordinator.port))
        known = {
            int(row[0])
            for row in conn.execute("SELECT nodeport FROM pg_dist_node WHERE groupid <> 0")
        }
        for worker in cluster.workers:
            if worker.port not in known:
                conn.execute("SELECT citus_add_node(%s, %s)", (HOST, worker.port))


def ensure_coordinator(cluster: Cluster) -> None:
    """Start the coordinator if it is down (after a reboot, say); workers are left alone,
    so a worker that is down shows as such rather than being hidden by a restart."""
    if is_running(cluster.data(cluster.coordinator)):
        return
    install = CitusInstall(cluster.prefix)
    if not install.library.is_file():
        raise DatabaseUnavailable(
            f"the Citus build {cluster.prefix} is gone", remedy=Remedy.START_CLUSTER
        )
    start_server(cluster.data(cluster.coordinator), install, server_user())


def stop(settings: Settings, *, delete: bool = False) -> list[str]:
    """Stop every node; doppel goes back to the single embedded server. Returns what stopped."""
    cluster = load(settings)
    if cluster is None:
        return []
    install = CitusInstall(cluster.prefix)
    user = server_user()
    stopped = []
    # Workers first: a coordinator stopped first would leave nothing to stop them by.
    for node in (*cluster.workers, cluster.coordinator):
        if install.library.is_file() and stop_server(cluster.data(node), install, user):
            stopped.append(node.name)
    if delete:
        shutil.rmtree(cluster.home)
    else:
        _save(Cluster(cluster.home, cluster.coordinator, cluster.workers, cluster.prefix, False))
    return stopped


@dataclass(frozen=True)
class NodeState:
    node: Node
    running: bool
    shards: int
    bytes: int


def node_states(settings: Settings) -> list[NodeState]:
    """Each node, whether its server runs, and the shards of doppel's tables it holds."""
    cluster = load(settings)
    if cluster is None:
        return []
    placed: dict[int, tuple[int, int]] = {}
    if is_running(cluster.data(cluster.coordinator)):
        try:
            with psycopg.connect(cluster.url, autocommit=True, connect_timeout=5) as conn:
                placed = shards_per_port(conn)
        except psycopg.Error:
            placed = {}
    return [
        NodeState(node, is_running(cluster.data(node)), *placed.get(node.port, (0, 0)))
        for node in cluster.nodes
    ]


def shards_per_port(conn: psycopg.Connection) -> dict[int, tuple[int, int]]:
    """port -> (shards of faces, their bytes), from Citus's catalogue (no worker asked
    for the count; the sizes are asked of each worker and left at 0 if one is down)."""
    counts: dict[int, tuple[int, int]] = {}
    rows = conn.execute(
        "SELECT n.nodeport, count(*) FROM pg_dist_shard s"
        " JOIN pg_dist_placement p USING (shardid) JOIN pg_dist_node n USING (groupid)"
        " WHERE s.logicalrelid = 'faces'::regclass GROUP BY n.nodeport"
    ).fetchall()
    for port, count in rows:
        counts[int(port)] = (int(count), 0)
    return counts
