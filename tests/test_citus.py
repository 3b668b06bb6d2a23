"""doppel on a local Citus cluster (a coordinator and two workers) against a single node.

One cluster serves the module: it is the slow part (about 15 s to start; Citus itself is
built once per machine, `make test` does it first). Each test uses galleries of its own.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest
from pgvector import Vector
from typer.testing import CliRunner

from doppel.cli import app
from doppel.config import Settings
from doppel.dump import loader
from doppel.errors import DatabaseUnavailable
from doppel.store import citus, citus_build, citus_failure, citus_layout, citus_servers
from doppel.store.db import connect
from doppel.store.migrations import STEPS
from doppel.store.repository import Repository
from doppel.types import Filters
from tests.helpers import create_database, drop_database, write_faces_dump

pytestmark = pytest.mark.citus

ROWS = 2000


def _citus_or_skip() -> None:
    """Skip only where Citus cannot be built: no cached build, and no compiler or no
    source (a clone made away from the project's shared folder)."""
    reason = citus_build.cannot_build(Settings.from_env())
    if reason is not None:
        pytest.skip(f"Citus cannot be built here: {reason}")


@pytest.fixture(scope="module")
def cluster_home() -> Iterator[Path]:
    """A DOPPEL_HOME holding a running coordinator and two workers."""
    _citus_or_skip()
    home = Path(tempfile.mkdtemp(prefix="doppel-citus-"))
    settings = Settings.from_env(home=home, database_url=None)
    citus.start(settings, 2)
    yield home
    citus.stop(settings, delete=True)
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def dump(server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_faces_dump(server_url, tmp_path_factory.mktemp("citus") / "faces.sql", ROWS)


@pytest.fixture(scope="module")
def single(server_url: str, dump: Path) -> Iterator[psycopg.Connection]:
    """A single-node database with the dump loaded as gallery "same"."""
    url = create_database(server_url)
    settings = Settings.from_env(database_url=url)
    with connect(settings) as conn:
        loader.load_dump(conn, dump, "same")
        yield conn
    drop_database(server_url, url)


@pytest.fixture
def on_cluster(cluster_home: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Commands run with the cluster's DOPPEL_HOME, as a user's would."""
    monkeypatch.setenv("DOPPEL_HOME", str(cluster_home))
    monkeypatch.delenv("DOPPEL_DATABASE_URL", raising=False)
    return Settings.from_env()


@pytest.fixture(scope="module")
def clustered(cluster_home: Path, dump: Path) -> Iterator[psycopg.Connection]:
    """The coordinator with the same dump loaded as gallery "same"."""
    with connect(Settings.from_env(home=cluster_home, database_url=None)) as conn:
        loader.load_dump(conn, dump, "same")
        yield conn


def _queries(n: int = 12) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.standard_normal(512).astype(np.float32) for _ in range(n)]


def _answer(conn: psycopg.Connection, vector: np.ndarray, **options: object) -> list:
    repo = Repository(conn)
    matches = repo.search(repo.gallery("same"), vector, 5, **options)  # type: ignore[arg-type]
    return [(m.face.source, m.face.sex, round(m.distance, 5)) for m in matches]


def test_the_schema_is_distributed_over_both_workers(clustered: psycopg.Connection) -> None:
    layout = dict(
        clustered.execute(
            "SELECT logicalrelid::text, partmethod FROM pg_dist_partition"
            " WHERE logicalrelid::text IN ('faces', 'images', 'galleries', 'people',"
            " 'embedding_cache')"
        ).fetchall()
    )
    assert layout == {
        "faces": "h",
        "images": "h",
        "embedding_cache": "h",
        "galleries": "n",
        "people": "n",
    }
    nodes = citus_layout.placements(clustered)
    workers = [n for n in nodes if n.role == "worker"]
    assert len(workers) == 2
    assert all(n.shards > 0 and n.index_shards == n.shards for n in workers)
    assert all(n.index_bytes > 0 for n in workers)
    # Every numbered step is recorded, so none is run again on the distributed tables.
    steps = {row[0] for row in clustered.execute("SELECT step FROM schema_steps")}
    assert steps == {number for number, _ in STEPS}


def test_later_schema_steps_apply_on_citus(clustered: psycopg.Connection) -> None:
    """Steps from CITUS_SAFE_FROM on must run on the distributed tables (they are
    written to be harmless when their change is there already, as here)."""
    later = [sql for number, sql in STEPS if number >= citus_layout.CITUS_SAFE_FROM]
    for sql in later:
        with clustered.transaction():
            clustered.execute(sql)  # type: ignore[arg-type]


def test_the_cluster_answers_as_a_single_node(
    single: psycopg.Connection, clustered: psycopg.Connection
) -> None:
    for vector in _queries():
        exact = _answer(single, vector, exact=True)
        assert _answer(clustered, vector, exact=True) == exact
        # Each shard's HNSW index, merged on the coordinator: at this size, exact.
        assert _answer(clustered, vector) == _answer(single, vector)
        women = _answer(single, vector, exact=True, filters=Filters(sex="F"))
        assert [m[1] for m in women] == ["F"] * 5
        assert _answer(clustered, vector, exact=True, filters=Filters(sex="F")) == women
        # Through the indexes (half precision): the same faces, the same distances.
        near = _answer(clustered, vector, filters=Filters(sex="F"))
        assert near == _answer(single, vector, filters=Filters(sex="F"))
        assert [m[0] for m in near] == [m[0] for m in women]


def test_search_settings_and_the_limit_reach_every_shard(
    clustered: psycopg.Connection,
) -> None:
    gallery = Repository(clustered).gallery("same")
    shards = sum(n.shards for n in citus_layout.placements(clustered))
    vector = Vector(_queries(1)[0])
    query = (
        "SELECT id FROM faces WHERE gallery_id = %s"
        " ORDER BY (embedding::halfvec(512)) <=> %s::vector::halfvec(512) LIMIT 5"
    )
    with clustered.transaction():
        # ef_search 1 on every worker: each shard's index scan yields one row. Sorting
        # is discouraged because at 500 rows a shard would rather sort than use HNSW.
        clustered.execute("SET LOCAL hnsw.ef_search = 1; SET LOCAL enable_sort = off")
        rows = clustered.execute(query, (gallery.id, vector)).fetchall()
        plan = "\n".join(
            row[0]
            for row in clustered.execute(
                "EXPLAIN (ANALYZE, COSTS OFF) " + query, (gallery.id, vector)
            )
        )
    assert f"Task Count: {shards}" in plan
    assert f"Index Scan using {gallery.index_name}_" in plan, plan
    assert len(rows) == min(shards, 5)
    assert plan.count("Limit") >= 2  # on the coordinator and in the task


def test_commands_use_the_cluster_until_it_stops(on_cluster: Settings, single: object) -> None:
    runner = CliRunner()
    status = runner.invoke(app, ["db", "status"])
    assert status.exit_code == 0, status.output
    assert "local Citus cluster" in status.output
    assert status.output.count("node:      worker") == 2
    listed = runner.invoke(app, ["db", "cluster", "status"])
    assert listed.exit_code == 0
    assert listed.output.count("running") == 3
    # The same coordinator named by DOPPEL_DATABASE_URL, as a Citus cluster of one's own.
    cluster = citus.active(on_cluster)
    assert cluster is not None
    own = CliRunner(env={"DOPPEL_DATABASE_URL": cluster.url}).invoke(app, ["db", "status"])
    assert own.exit_code == 0, own.output
    assert "local Citus cluster" not in own.output
    assert own.output.count("node:      worker") == 2


def test_index_build_makes_the_index_on_every_shard(
    on_cluster: Settings, dump: Path, clustered: psycopg.Connection
) -> None:
    runner = CliRunner()
    loaded = runner.invoke(app, ["load-dump", str(dump), "--gallery", "later", "--index", "skip"])
    assert loaded.exit_code == 0, loaded.output
    repo = Repository(clustered)
    gallery = repo.gallery("later")
    assert repo.index_state(gallery) is None
    built = runner.invoke(app, ["index", "build", "--gallery", "later"])
    assert built.exit_code == 0, built.output
    state = repo.index_state(gallery)
    assert state is not None and state.valid and state.size_bytes > 0
    per_shard = clustered.execute(
        "SELECT result FROM run_command_on_shards('faces', $$SELECT count(*) FROM pg_indexes"
        f" WHERE indexname = '{gallery.index_name}_' || split_part('%s', '_', -1)$$)"
    ).fetchall()
    assert [row[0] for row in per_shard] == ["1"] * sum(
        n.shards for n in citus_layout.placements(clustered)
    )
    runner.invoke(app, ["gallery", "delete", "later", "--yes"])


def test_index_builds_give_the_workers_their_memory(
    on_cluster: Settings, dump: Path, clustered: psycopg.Connection
) -> None:
    """pgvector logs when a graph outgrows maintenance_work_mem. With the workers' own
    setting at its least (1 MB) and a shard's graph larger (m 64), a plain SET on the
    coordinator leaves every shard's build at 1 MB; doppel's builds, plain and
    concurrent, do not."""
    loaded = CliRunner().invoke(
        app, ["load-dump", str(dump), "--gallery", "memory", "--index", "skip"]
    )
    assert loaded.exit_code == 0, loaded.output
    cluster = citus.load(on_cluster)
    assert cluster is not None
    repo = Repository(clustered)
    gallery = repo.gallery("memory")
    logs = [cluster.data(worker) / "server.log" for worker in cluster.workers]
    seen = [0]

    def outgrown() -> int:
        """Shard builds that ran out of memory since the last call, from the workers' logs."""
        said = "no longer fits into maintenance_work_mem"
        total = sum(log.read_text().count(said) for log in logs)
        new, seen[0] = total - seen[0], total
        return new

    def set_workers(*settings: str) -> None:
        for worker in cluster.workers:
            with psycopg.connect(citus.node_url(worker), autocommit=True) as conn:
                for setting in settings:
                    conn.execute(f"ALTER SYSTEM {setting}")
                conn.execute("SELECT pg_reload_conf()")

    try:
        set_workers("SET maintenance_work_mem = '1MB'", "SET log_min_messages = 'notice'")
        outgrown()
        clustered.execute("SET maintenance_work_mem = '1GB'")
        clustered.execute(
            f"CREATE INDEX {gallery.index_name} ON faces USING hnsw ((embedding::halfvec(512))"
            " halfvec_cosine_ops) WITH (m = 64, ef_construction = 128)"
            f" WHERE gallery_id = {gallery.id}"
        )
        clustered.execute("RESET maintenance_work_mem")
        shards = sum(n.shards for n in citus_layout.placements(clustered))
        assert outgrown() == shards  # the plain SET reached no shard
        repo.drop_index(gallery)
        assert repo.ensure_index(gallery, 64, 128)
        assert outgrown() == 0
        assert repo.ensure_index(gallery, 64, 128, concurrently=True, replace=True)
        assert outgrown() == 0
        assert repo.has_index(gallery)
    finally:
        set_workers("RESET maintenance_work_mem", "RESET log_min_messages")
        CliRunner().invoke(app, ["gallery", "delete", "memory", "--yes"])


def test_gallery_commands_on_the_cluster(
    on_cluster: Settings, dump: Path, clustered: psycopg.Connection
) -> None:
    runner = CliRunner()
    loaded = runner.invoke(app, ["load-dump", str(dump), "--gallery", "renamed-a"])
    assert loaded.exit_code == 0, loaded.output
    renamed = runner.invoke(app, ["gallery", "rename", "renamed-a", "renamed-b"])
    assert renamed.exit_code == 0, renamed.output
    repo = Repository(clustered)
    assert repo.find_gallery("renamed-a") is None
    assert repo.face_count(repo.gallery("renamed-b")) == ROWS
    deleted = runner.invoke(app, ["gallery", "delete", "renamed-b", "--yes"])
    assert deleted.exit_code == 0, deleted.output
    assert repo.find_gallery("renamed-b") is None
    left = clustered.execute(
        "SELECT count(*) FROM faces WHERE gallery_id NOT IN (SELECT id FROM galleries)"
    ).fetchone()
    assert left == (0,)


def test_a_worker_down_is_named_and_a_restart_heals(
    on_cluster: Settings, clustered: psycopg.Connection
) -> None:
    cluster = citus.load(on_cluster)
    assert cluster is not None
    worker = cluster.workers[0]
    install = citus_build.CitusInstall(cluster.prefix)
    runner = CliRunner()
    try:
        citus_servers.stop_server(cluster.data(worker), install, citus_servers.server_user())
        down = runner.invoke(app, ["gallery", "list"])
        assert down.exit_code == 1
        lines = [line for line in down.output.splitlines() if line.strip()]
        assert len(lines) == 1, down.output
        assert f"worker1 ({worker.address}) is down" in lines[0]
        assert "Traceback" not in down.output
        # A search never passes off the other worker's half as the answer.
        with pytest.raises(psycopg.OperationalError):
            _answer(clustered, _queries(1)[0], exact=True)
    finally:
        started = runner.invoke(app, ["db", "cluster", "start"])
    assert started.exit_code == 0, started.output
    healed = runner.invoke(app, ["gallery", "list"])
    assert healed.exit_code == 0, healed.output
    assert len(_answer(clustered, _queries(1)[0], exact=True)) == 5


def test_stop_goes_back_to_the_single_server(cluster_home: Path) -> None:
    settings = Settings.from_env(home=cluster_home, database_url=None)
    # Only the record is read here: stopping the nodes would cost the module a restart.
    cluster = citus.load(settings)
    assert cluster is not None and cluster.running
    assert (
        citus.active(Settings.from_env(home=cluster_home, database_url="postgresql:///x")) is None
    )


def test_no_compiler_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOPPEL_CITUS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(DatabaseUnavailable) as caught:
        citus_build.ensure_citus(Settings.from_env())
    message = str(caught.value)
    assert "C compiler" in message and "build-essential" in message
    assert "\n" not in message
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())
    assert os.environ["PATH"] == str(tmp_path / "empty")


def test_a_clone_without_the_source_builds_nothing_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make test` from a clone made away from the shared folder: the build step says
    why Citus is not built and succeeds, so the rest of the suite runs."""
    monkeypatch.setenv("DOPPEL_CITUS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DOPPEL_CITUS_SOURCE", str(tmp_path / "no-citus.tar.gz"))
    reason = citus_build.cannot_build(Settings.from_env())
    assert reason is not None and "no-citus.tar.gz is missing" in reason
    built = CliRunner().invoke(app, ["db", "cluster", "build", "--if-compiler"])
    assert built.exit_code == 0, built.output
    assert "Citus not built" in built.output and "skipped" in built.output
    refused = CliRunner().invoke(app, ["db", "cluster", "build"])
    assert refused.exit_code == 1 and "is missing" in refused.output


@pytest.mark.slow
def test_ingest_and_find_exact_match_a_single_node(
    on_cluster: Settings,
    server_url: str,
    unit_faces: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same photos ingested on the cluster and on one node: `find --exact` gives
    the same five faces and similarities; a second ingest adds nothing."""
    import json

    photos = tmp_path / "photos"
    photos.mkdir()
    for n in range(1, 13):
        shutil.copy(unit_faces / f"img{n}.jpg", photos / f"img{n}.jpg")
    runner = CliRunner()
    ingest = ["ingest", str(photos), "--gallery", "unit12", "--model", "Dlib"]
    find = ["find", str(unit_faces / "img13.jpg"), "--gallery", "unit12", "--exact", "--json"]

    def run(command: list[str]) -> str:
        result = runner.invoke(app, command)
        assert result.exit_code == 0, result.output
        return result.stdout

    run(ingest)
    run(ingest)  # a second run adds nothing (the count below)
    on_citus = json.loads(run(find))
    url = create_database(server_url)
    try:
        monkeypatch.setenv("DOPPEL_DATABASE_URL", url)
        run(ingest)
        on_one = json.loads(run(find))
    finally:
        monkeypatch.delenv("DOPPEL_DATABASE_URL")
        drop_database(server_url, url)

    def top(payload: dict) -> list[tuple[str, float]]:
        matches = payload["faces"][0]["matches"]
        return [(Path(m["source"]).name, round(m["similarity"], 5)) for m in matches]

    assert len(top(on_citus)) == 5
    assert top(on_citus) == top(on_one)
    with connect(Settings.from_env()) as conn:
        repo = Repository(conn)
        assert repo.face_count(repo.gallery("unit12")) == 12


def test_a_load_cut_by_a_worker_loss_keeps_nothing_and_a_rerun_is_exact(
    on_cluster: Settings, dump: Path
) -> None:
    cluster = citus.load(on_cluster)
    assert cluster is not None
    worker = cluster.workers[1]
    install = citus_build.CitusInstall(cluster.prefix)
    stopped: list[bool] = []

    def lose_a_worker(read: int, total: int, loaded: int) -> None:
        if not stopped:  # while the rows stream, inside the load's one transaction
            stopped.append(
                citus_servers.stop_server(
                    cluster.data(worker), install, citus_servers.server_user()
                )
            )

    try:
        with (
            connect(on_cluster) as conn,
            pytest.raises((psycopg.Error, DatabaseUnavailable)) as caught,
        ):
            loader.load_dump(conn, dump, "cut", build_index=False, progress=lose_a_worker)
        assert stopped == [True]
        # What the command line prints for it: one line naming the worker.
        failure = citus_failure.node_failure(on_cluster, str(caught.value))
        assert failure is not None and f"worker2 ({worker.address}) is down" in str(failure)
    finally:
        citus.start(on_cluster)
    with connect(on_cluster) as conn:
        repo = Repository(conn)
        cut = repo.find_gallery("cut")
        assert cut is None or repo.face_count(cut) == 0
        first = loader.load_dump(conn, dump, "cut", build_index=False)
        again = loader.load_dump(conn, dump, "cut", build_index=False)
        assert (first.rows_loaded, again.rows_loaded) == (ROWS, 0)
        assert repo.face_count(repo.gallery("cut")) == ROWS
        repo_gallery = repo.gallery("cut")
    CliRunner().invoke(app, ["gallery", "delete", repo_gallery.name, "--yes"])
