"""doppel on a local Citus cluster (a coordinator and two workers) against a single node.

One cluster serves the module: it is the slow part (about 15 s to start; Citus itself is
built once per machine, `make test` does it first). Each test uses galleries of its own.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psycopg
import pytest
from pgvector import Vector
from typer.testing import CliRunner

from doppel.cli import app
from doppel.config import Settings
from doppel.dump import loader
from doppel.errors import DatabaseUnavailable, DoppelError
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


def test_the_people_step_moves_people_on_a_citus_database(clustered: psycopg.Connection) -> None:
    """A Citus database from before face_people (each face's person in faces) gets the
    table distributed beside faces, with every person and every face taken out moved."""
    from doppel.store.db import apply_schema

    conn = clustered
    with conn.transaction():
        conn.execute("SET LOCAL citus.multi_shard_modify_mode = 'sequential'")
        conn.execute("DROP TABLE face_people")
        conn.execute("ALTER TABLE faces ADD COLUMN person_id bigint")
        conn.execute(
            "ALTER TABLE faces ADD CONSTRAINT faces_person_id_fkey FOREIGN KEY (person_id)"
            " REFERENCES people ON DELETE SET NULL"
        )
        conn.execute("ALTER TABLE faces ADD COLUMN person_excluded boolean NOT NULL DEFAULT false")
        conn.execute("CREATE INDEX faces_person ON faces (person_id) WHERE person_id IS NOT NULL")
    with conn.transaction():
        row = conn.execute(
            "INSERT INTO people (gallery_id, name) SELECT min(id), 'Ann' FROM galleries"
            " RETURNING id"
        ).fetchone()
    assert row is not None
    ids = [r[0] for r in conn.execute("SELECT id FROM faces ORDER BY id LIMIT 9")]
    conn.execute("UPDATE faces SET person_id = %s WHERE id = ANY(%s)", (row[0], ids[:7]))
    conn.execute("UPDATE faces SET person_excluded = true WHERE id = ANY(%s)", (ids[7:],))
    conn.execute("DELETE FROM schema_steps WHERE step = 9")
    conn.commit()
    apply_schema(conn)
    layout = conn.execute(
        "SELECT p.partmethod, p.colocationid = f.colocationid FROM pg_dist_partition p,"
        " pg_dist_partition f WHERE p.logicalrelid = 'face_people'::regclass"
        " AND f.logicalrelid = 'faces'::regclass"
    ).fetchone()
    assert layout == ("h", True)
    moved = conn.execute(
        "SELECT count(*) FILTER (WHERE fp.person_id = %s), count(*) FILTER (WHERE fp.excluded)"
        " FROM faces f JOIN face_people fp ON fp.face_id = f.id AND fp.source = f.source",
        (row[0],),
    ).fetchone()
    assert moved == (7, 2)
    left = conn.execute(
        "SELECT count(*) FROM information_schema.columns WHERE table_name = 'faces'"
        " AND column_name IN ('person_id', 'person_excluded')"
    ).fetchone()
    assert left == (0,)


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


def test_tables_made_before_the_workers_are_refused_then_distributed(
    on_cluster: Settings, clustered: psycopg.Connection
) -> None:
    """A database whose doppel tables were made on a lone server later given workers:
    refused in one line naming `doppel db distribute`, which spreads them, every face
    kept and answering as before."""
    from doppel.faces.catalog import default_config
    from doppel.types import NewFace

    cluster = citus.load(on_cluster)
    assert cluster is not None
    name = f"doppel_late_{os.getpid()}"
    urls = {node: citus.node_url(node).rsplit("/", 1)[0] + f"/{name}" for node in cluster.nodes}
    for node in cluster.nodes:
        with psycopg.connect(citus.node_url(node), autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}")
        with psycopg.connect(urls[node], autocommit=True) as conn:
            conn.execute("CREATE EXTENSION citus")
    late = Settings.from_env(database_url=urls[cluster.coordinator])
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((300, 128)).astype(np.float32)
    query = vectors[0] + 0.1 * rng.standard_normal(128).astype(np.float32)
    try:
        with connect(late) as conn:  # no workers yet: the tables stay on this server
            repo = Repository(conn)
            gallery = repo.ensure_gallery("late", default_config("Dlib", "dlib"), dimension=128)
            with conn.transaction():
                repo.copy_faces(
                    gallery,
                    (NewFace(f"/p/{i}.jpg", None, 0, v) for i, v in enumerate(vectors)),
                    "faces",
                )
            repo.ensure_index(gallery)
            before = {
                exact: [(m.face.source, round(m.distance, 5)) for m in found]
                for exact in (False, True)
                for found in [repo.search(gallery, query, 5, exact=exact)]
            }
        with psycopg.connect(urls[cluster.coordinator], autocommit=True) as conn:
            conn.execute(
                "SELECT citus_set_coordinator_host(%s, %s)",
                (citus_servers.HOST, cluster.coordinator.port),
            )
            for worker in cluster.workers:
                conn.execute("SELECT citus_add_node(%s, %s)", (citus_servers.HOST, worker.port))
        runner = CliRunner(env={"DOPPEL_DATABASE_URL": late.database_url})
        listed = runner.invoke(app, ["gallery", "list"])
        lines = [line for line in listed.output.splitlines() if line.strip()]
        assert listed.exit_code == 1 and len(lines) == 1, listed.output
        assert "made before its server had Citus workers" in lines[0]
        assert "doppel db distribute" in lines[0]
        spread = runner.invoke(app, ["db", "distribute"])
        assert spread.exit_code == 0, spread.output
        assert "spread 300 faces of 1 galleries" in spread.output
        with connect(late) as conn:
            repo = Repository(conn)
            gallery = repo.gallery("late")
            assert citus_layout.distributed(conn) and repo.has_index(gallery)
            assert repo.face_count(gallery) == 300
            placed = citus_layout.placements(conn)
            assert all(
                n.shards and n.index_shards == n.shards for n in placed if n.role == "worker"
            )
            for exact in (False, True):
                found = repo.search(gallery, query, 5, exact=exact)
                assert [(m.face.source, round(m.distance, 5)) for m in found] == before[exact]
        again = runner.invoke(app, ["db", "distribute"])
        assert again.exit_code == 0 and "nothing to do" in again.output
    finally:
        for node in cluster.nodes:
            with psycopg.connect(citus.node_url(node), autocommit=True) as admin:
                admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


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


# A small gallery of real photos, embedded on the cluster and on one node alike: four
# people of several photos each, and a couple (two faces in one photo).
PHOTOS = (
    *("img1.jpg", "img2.jpg", "img4.jpg"),  # person01
    *("img26.jpg", "img27.jpg", "img28.jpg"),  # person02
    *("img8.jpg", "img9.jpg", "img47.jpg"),  # person03
    *("img3.jpg", "img12.jpg"),  # person04
    "couple.jpg",
)
QUERY = "img5.jpg"  # person01, not in the gallery
# Dlib's own pipeline, for which doppel ships a same-person threshold (`people` needs one).
PIPELINE = ["-m", "Dlib", "-d", "dlib"]


@dataclass(frozen=True)
class Both:
    """The environment of a command on the cluster and on a single node, and the photos."""

    cluster: dict[str, str | None]
    single: dict[str, str | None]
    photos: Path


def _run(env: dict[str, str | None], command: list[str]) -> str:
    result = CliRunner(env=env).invoke(app, command)
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture(scope="module")
def both(
    cluster_home: Path, server_url: str, unit_faces: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Both]:
    """Gallery "unit" of PHOTOS ingested by `doppel ingest` on the cluster and on one node."""
    photos = tmp_path_factory.mktemp("citus-photos")
    for name in PHOTOS:
        (photos / name).symlink_to(unit_faces / name)
    url = create_database(server_url)
    pair = Both(
        {"DOPPEL_HOME": str(cluster_home), "DOPPEL_DATABASE_URL": None},
        {"DOPPEL_DATABASE_URL": url},
        photos,
    )
    for env in (pair.cluster, pair.single):
        _run(env, ["ingest", str(photos), "--gallery", "unit", *PIPELINE])
    yield pair
    drop_database(server_url, url)


def _top(matches: list[dict]) -> list[tuple[str, float]]:
    return [(Path(m["source"]).name, round(m["similarity"], 4)) for m in matches]


@pytest.mark.slow
def test_ingest_and_find_exact_match_a_single_node(both: Both, unit_faces: Path) -> None:
    """`find --exact` gives the same five faces and similarities; a second ingest adds
    nothing."""
    _run(both.cluster, ["ingest", str(both.photos), "--gallery", "unit", *PIPELINE])
    counts = []
    for env in (both.cluster, both.single):
        listed = json.loads(_run(env, ["gallery", "list", "--json"]))
        counts.append([(g["name"], g["faces"]) for g in listed["galleries"] if g["name"] == "unit"])
    assert counts[0] == counts[1] and counts[0][0][1] >= len(PHOTOS)
    find = ["find", str(unit_faces / QUERY), "--gallery", "unit", "--exact", "--json"]
    on_citus = json.loads(_run(both.cluster, find))["faces"][0]["matches"]
    on_one = json.loads(_run(both.single, find))["faces"][0]["matches"]
    assert len(on_citus) == 5
    assert _top(on_citus) == _top(on_one)


@pytest.mark.slow
def test_people_strangers_verify_and_resemble_match_a_single_node(
    both: Both, unit_faces: Path, tmp_path: Path
) -> None:
    def people(env: dict[str, str | None]) -> list[list[str]]:
        listing = json.loads(_run(env, ["people", "cluster", "unit", "--json", "--no-picture"]))
        groups = [sorted(Path(s).name for s in p["sources"]) for p in listing["people"]]
        return sorted(groups) + [sorted(Path(f["source"]).name for f in listing["unassigned"])]

    grouped = people(both.cluster)
    assert grouped == people(both.single)
    assert ["img26.jpg", "img27.jpg", "img28.jpg"] in grouped  # the people are found at all
    strangers = ["find", str(unit_faces / QUERY), "-g", "unit", "--strangers", "--json"]
    far = json.loads(_run(both.cluster, [*strangers, "--no-picture"]))["faces"][0]["matches"]
    assert _top(far) == _top(
        json.loads(_run(both.single, [*strangers, "--no-picture"]))["faces"][0]["matches"]
    )
    assert far and not {"img1.jpg", "img2.jpg", "img4.jpg"} & {m[0] for m in _top(far)}
    verify = ["verify", str(unit_faces / "img1.jpg"), str(unit_faces / "img5.jpg"), *PIPELINE]
    verdict = json.loads(_run(both.cluster, [*verify, "--json"]))
    assert verdict == json.loads(_run(both.single, [*verify, "--json"]))
    assert verdict["same_person"] is True
    folders = tmp_path / "resemble"
    for folder, names in (
        ("people/person02", ["img26.jpg", "img27.jpg", "img28.jpg"]),
        ("people/person03", ["img8.jpg", "img9.jpg", "img47.jpg"]),
        ("target", ["img42.jpg", "img43.jpg"]),  # person02
    ):
        (folders / folder).mkdir(parents=True)
        for name in names:
            (folders / folder / name).symlink_to(unit_faces / name)
    resemble = ["resemble", str(folders / "people"), str(folders / "target"), *PIPELINE]

    def report(env: dict[str, str | None], out: str) -> dict:
        payload = json.loads(_run(env, [*resemble, "-o", str(tmp_path / out), "--json"]))
        return {k: v for k, v in payload.items() if k != "report"}

    told = report(both.cluster, "on-citus")
    assert told == report(both.single, "on-one")
    assert told["leader"] == "person02"


@pytest.mark.slow
def test_serve_on_the_coordinator_answers_as_a_single_node(both: Both, unit_faces: Path) -> None:
    """One /api/find through a `doppel serve` process whose DOPPEL_HOME runs the cluster."""
    import subprocess
    import sys

    import httpx

    from tests.test_server import _free_port, _serving

    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "DOPPEL_DATABASE_URL"}
    env["DOPPEL_HOME"] = str(both.cluster["DOPPEL_HOME"])
    doppel = str(Path(sys.executable).with_name("doppel"))
    process = subprocess.Popen(
        [doppel, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        _serving(process, url)
        with (unit_faces / QUERY).open("rb") as photo:
            served = httpx.post(
                f"{url}/api/find",
                files={"file": (QUERY, photo, "image/jpeg")},
                data={"k": 5, "gallery": "unit"},
                timeout=120,
            )
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=60)
    assert served.status_code == 200, served.text
    find = ["find", str(unit_faces / QUERY), "-g", "unit", "-k", "5", "--json", "--no-picture"]
    alone = json.loads(_run(both.single, find))["faces"][0]["matches"]
    assert len(alone) == 5
    assert _top(served.json()["matches"]) == _top(alone)


@pytest.mark.slow
def test_an_ingest_cut_by_a_worker_loss_loses_one_batch_and_a_rerun_is_exact(
    both: Both, on_cluster: Settings
) -> None:
    """Ingest commits a batch at a time: a worker lost in the middle of the run costs the
    batch in flight, never a photo half written, and running it again completes it."""
    from doppel.faces.catalog import default_config
    from doppel.ingest import IngestJob, IngestReport, ingest_photos

    cluster = citus.load(on_cluster)
    assert cluster is not None
    worker = cluster.workers[1]
    install = citus_build.CitusInstall(cluster.prefix)
    batch, cut_at = 3, 7  # batches 1-3 and 4-6 written, the worker lost during 7-9
    job = IngestJob(both.photos, "cut", default_config("Dlib", "dlib"), batch_size=batch)

    def lose_a_worker(done: int, total: int, report: IngestReport) -> None:
        if done == cut_at:
            citus_servers.stop_server(cluster.data(worker), install, citus_servers.server_user())

    def stored(conn: psycopg.Connection) -> tuple[list[str], list[tuple[str, int]]]:
        gallery = Repository(conn).find_gallery("cut")
        if gallery is None:
            return [], []
        images = conn.execute(
            "SELECT source FROM images WHERE gallery_id = %s ORDER BY 1", (gallery.id,)
        ).fetchall()
        faces = conn.execute(
            "SELECT source, face_index FROM faces WHERE gallery_id = %s ORDER BY 1, 2",
            (gallery.id,),
        ).fetchall()
        return [row[0] for row in images], [(row[0], row[1]) for row in faces]

    try:
        with connect(on_cluster) as conn, pytest.raises((DoppelError, psycopg.Error)):
            ingest_photos(conn, job, progress=lose_a_worker)
    finally:
        citus.start(on_cluster)
    with connect(on_cluster) as conn:
        images, faces = stored(conn)
        # Whole batches only: the two written before the loss (or the first, had the
        # second not reached the database yet), every photo with all its faces.
        assert len(images) in (cut_at - 1, cut_at - 1 - batch), images
        assert sorted({source for source, _ in faces}) == sorted(images)
        ingest_photos(conn, job)
        images, faces = stored(conn)
    with connect(Settings.from_env(database_url=both.single["DOPPEL_DATABASE_URL"])) as alone:
        gallery = Repository(alone).gallery("unit")
        expected = alone.execute(
            "SELECT source, face_index FROM faces WHERE gallery_id = %s ORDER BY 1, 2",
            (gallery.id,),
        ).fetchall()
    assert len(images) == len(PHOTOS)
    assert faces == [(row[0], row[1]) for row in expected]  # nothing twice, nothing missing
    _run(both.cluster, ["gallery", "delete", "cut", "--yes"])


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
