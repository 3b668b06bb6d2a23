"""A gallery's index: the rule by size, exact search until it is valid, builds in the
background and with progress, and galleries indexed the old way."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from doppel.index_builds import finish_index
from doppel.store.indexes import plan_index
from doppel.store.repository import Repository
from doppel.types import BuildProgress, EmbeddingConfig, Gallery, NewFace
from tests.helpers import clustered_vectors

CONFIG = EmbeddingConfig("Dlib", "skip", align=False)  # 128-d


def fill(conn: psycopg.Connection, name: str, count: int, storage: str | None = None) -> Gallery:
    repo = Repository(conn)
    gallery = repo.ensure_gallery(name, CONFIG, storage, dimension=128)
    vectors = clustered_vectors(count, 128, seed=len(name))
    with conn.transaction():
        repo.copy_faces(
            gallery, (NewFace(f"{name}/{i}", None, 0, v) for i, v in enumerate(vectors)), "faces"
        )
    return gallery


def ids(matches: list) -> list[int]:
    return [m.face.id for m in matches]


def test_the_plan_follows_the_gallery_size() -> None:
    small, ffhq, large = plan_index(5_000), plan_index(70_000), plan_index(1_000_000)
    assert not small.background and not large.background  # built before the loader returns
    assert ffhq.background  # exact search stands in while it builds
    assert large.ef_search > ffhq.ef_search


def test_search_is_exact_until_the_index_is_valid(conn: psycopg.Connection) -> None:
    gallery = fill(conn, "plain", 400)
    repo = Repository(conn)
    query = clustered_vectors(1, 128, seed=99)[0]
    before = repo.search(gallery, query, 5)
    assert not repo.has_index(gallery)  # a search never starts a build itself
    assert ids(before) == ids(repo.search(gallery, query, 5, exact=True))
    assert repo.ensure_index(gallery) and repo.has_index(gallery)
    assert ids(repo.search(gallery, query, 5)) == ids(before)


def test_new_galleries_index_half_precision(conn: psycopg.Connection) -> None:
    gallery = fill(conn, "half", 50)
    assert gallery.storage == "halfvec"
    Repository(conn).ensure_index(gallery)
    definition = conn.execute(
        "SELECT indexdef FROM pg_indexes WHERE indexname = %s", (gallery.index_name,)
    ).fetchone()
    assert definition and "halfvec_cosine_ops" in definition[0] and "m='16'" in definition[0]


def test_a_gallery_indexed_the_old_way_keeps_working(conn: psycopg.Connection) -> None:
    gallery = fill(conn, "old", 300, storage="vector")
    repo = Repository(conn)
    assert repo.ensure_index(gallery, 32, 128)  # the earlier defaults, full precision
    query = clustered_vectors(1, 128, seed=7)[0]
    with conn.transaction():
        # A few hundred rows: left alone, the planner would rather sort them.
        conn.execute("SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off")
        plan = conn.execute(
            "EXPLAIN SELECT id FROM faces WHERE gallery_id = %s"
            " ORDER BY embedding::vector(128) <=> %s::vector(128) LIMIT 5",
            (gallery.id, query),
        ).fetchall()
    assert gallery.index_name in " ".join(row[0] for row in plan)
    assert ids(repo.search(gallery, query, 5)) == ids(repo.search(gallery, query, 5, exact=True))


def test_a_concurrent_build_reports_progress_and_searches_stay_exact(
    conn: psycopg.Connection, database_url: str
) -> None:
    gallery = fill(conn, "watched", 2000)
    other = fill(conn, "other", 10)
    repo = Repository(conn)
    seen: list[BuildProgress] = []
    # A transaction that wrote to faces and stays open holds a concurrent build in its
    # "waiting for writers" phase, so the test can look at the gallery mid-build.
    with psycopg.connect(database_url) as writer:
        writer.execute("UPDATE faces SET age = 1 WHERE gallery_id = %s", (other.id,))

        def run() -> None:
            with psycopg.connect(database_url, autocommit=True) as builder:
                Repository(builder).ensure_index(gallery, concurrently=True, progress=seen.append)

        build = threading.Thread(target=run)
        build.start()
        with psycopg.connect(database_url, autocommit=True) as look:
            deadline = time.monotonic() + 60
            while not any("waiting" in p.phase for p in seen):
                assert time.monotonic() < deadline, "the build never reported its phase"
                time.sleep(0.1)
            state = Repository(look).index_state(gallery)
            assert state is not None and not state.valid and state.building is not None
            assert not repo.has_index(gallery)
            query = clustered_vectors(1, 128, seed=5)[0]
            assert ids(repo.search(gallery, query, 5)) == ids(
                repo.search(gallery, query, 5, exact=True)
            )
        writer.commit()
    build.join(120)
    assert repo.has_index(gallery)


def test_a_background_build_makes_the_index_and_searches_switch_to_it(
    conn: psycopg.Connection, tmp_path
) -> None:
    gallery = fill(conn, "later", 3000)
    outcome = finish_index(conn, gallery, "background", log_dir=tmp_path)
    assert outcome.background and not outcome.built
    repo = Repository(conn)
    deadline = time.monotonic() + 300
    while not repo.has_index(gallery):
        assert time.monotonic() < deadline, (tmp_path / "index-later.txt").read_text()
        time.sleep(0.5)
    query = clustered_vectors(1, 128, seed=3)[0]
    assert ids(repo.search(gallery, query, 5)) == ids(repo.search(gallery, query, 5, exact=True))


@pytest.mark.parametrize(("faces", "built"), [(50, True), (0, False)])
def test_auto_builds_a_small_gallery_before_returning(
    conn: psycopg.Connection, faces: int, built: bool
) -> None:
    gallery = Repository(conn).ensure_gallery("tiny", CONFIG, dimension=128)
    if faces:
        gallery = fill(conn, "tiny", faces)
    outcome = finish_index(conn, gallery)
    assert (outcome.built, outcome.background) == (built, False)
    assert Repository(conn).has_index(gallery) == built


def test_an_unknown_index_choice_is_refused(conn: psycopg.Connection) -> None:
    from doppel.errors import UsageError

    gallery = fill(conn, "choice", 5)
    with pytest.raises(UsageError, match="index build must be one of"):
        finish_index(conn, gallery, "sometime")


def test_load_dump_in_the_background_says_so_and_db_status_shows_the_index(
    database_url: str, server_url: str, tmp_path
) -> None:
    from typer.testing import CliRunner

    from doppel.cli import app
    from tests.helpers import write_faces_dump

    path = write_faces_dump(server_url, tmp_path / "faces.sql", 800, seed=2)
    runner = CliRunner()
    loaded = runner.invoke(app, ["load-dump", str(path), "-g", "ffhq", "--index", "background"])
    assert loaded.exit_code == 0, loaded.output
    assert "searchable now (exact search)" in " ".join(loaded.stderr.split())
    with psycopg.connect(database_url, autocommit=True) as conn:
        repo = Repository(conn)
        gallery = repo.gallery("ffhq")
        deadline = time.monotonic() + 300
        while not repo.has_index(gallery):
            assert time.monotonic() < deadline, "the background build never finished"
            time.sleep(0.5)
    status = runner.invoke(app, ["db", "status", "--wide"])
    assert status.exit_code == 0, status.output
    # The table wraps its cells; the index column names the kind, not "exact search".
    assert "halfvec" in status.stdout and "exact" not in status.stdout
