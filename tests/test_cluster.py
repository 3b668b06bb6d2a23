"""`doppel ingest --cluster` on a real local Ray: the same rows and vectors as the plain
ingest, nothing lost when a worker dies, and a stopped run that a rerun completes."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest

from doppel.config import FaceOptions
from doppel.ingest import IngestJob
from doppel.types import EmbeddingConfig
from tests.helpers import ingest_folder

ray = pytest.importorskip("ray", reason="the cluster extra: pip install 'doppel[cluster]'")

from doppel.ingest.ray import EmbedPool, ingest_on_cluster  # noqa: E402

# Every test here loads the Dlib model and mtcnn, in this process and in Ray's workers.
pytestmark = pytest.mark.slow

CONFIG = EmbeddingConfig("Dlib", "mtcnn")
PHOTOS = 10


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """One local Ray for the module (starting one takes seconds); two worker slots."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ten real LFW photos, linked (not copied) into a folder of their own."""
    from tests.conftest import FACES

    source = FACES / "lfw-dev" / "photos"
    if not source.is_dir():
        pytest.skip(f"real faces not found at {source}")
    folder = tmp_path_factory.mktemp("lfw")
    for path in sorted(source.glob("*.jpg"))[:PHOTOS]:
        (folder / path.name).symlink_to(path)
    return folder


def rows(conn: psycopg.Connection, gallery: str) -> list[tuple]:
    return conn.execute(
        "SELECT f.source, f.face_index, f.box_x, f.box_y, f.box_w, f.box_h, f.embedding"
        " FROM faces f JOIN galleries g ON g.id = f.gallery_id WHERE g.name = %s"
        " ORDER BY f.source, f.face_index",
        (gallery,),
    ).fetchall()


def same_rows(a: list[tuple], b: list[tuple]) -> None:
    assert [r[:6] for r in a] == [r[:6] for r in b]
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x[6].to_numpy(), y[6].to_numpy(), atol=1e-5)


def on_ray(photos: Path, files_per_task: int) -> IngestJob:
    """The photos into gallery "spread" on the Ray this module started."""
    return IngestJob(photos, "spread", CONFIG, cluster="", files_per_task=files_per_task)


def worker_pids() -> list[int]:
    """Processes of Ray's embedding actors (Ray names them after the class)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and b"EmbedWorker" in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_cluster_ingest_gives_the_rows_of_the_plain_ingest(
    conn: psycopg.Connection, local_ray: None, photos: Path
) -> None:
    plain = ingest_folder(conn, photos, "plain", CONFIG, workers=0)
    spread = ingest_on_cluster(conn, on_ray(photos, files_per_task=3))
    assert spread.faces_added == plain.faces_added > 0
    assert spread.no_face == plain.no_face and spread.unreadable == plain.unreadable
    same_rows(rows(conn, "spread"), rows(conn, "plain"))
    again = ingest_on_cluster(conn, on_ray(photos, files_per_task=3))
    assert (again.faces_added, again.skipped) == (0, PHOTOS)


def test_a_worker_killed_mid_run_loses_nothing(
    conn: psycopg.Connection, local_ray: None, photos: Path
) -> None:
    ingest_folder(conn, photos, "plain", CONFIG, workers=0)
    killed: list[int] = []

    def kill_one(done: int, total: int, report: object) -> None:
        if not killed:
            pids = worker_pids()
            assert pids, "no Ray worker found"
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

    report = ingest_on_cluster(conn, on_ray(photos, files_per_task=2), progress=kill_one)
    assert killed
    assert report.faces_added + len(report.no_face) > 0
    same_rows(rows(conn, "spread"), rows(conn, "plain"))


def test_a_stopped_run_keeps_its_batches_and_a_rerun_completes(
    conn: psycopg.Connection, local_ray: None, photos: Path
) -> None:
    ingest_folder(conn, photos, "plain", CONFIG, workers=0)

    def stop(done: int, total: int, report: object) -> None:
        if done >= 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ingest_on_cluster(conn, on_ray(photos, files_per_task=2), progress=stop)
    kept = rows(conn, "spread")
    assert 0 < len(kept) < len(rows(conn, "plain"))
    rerun = ingest_on_cluster(conn, on_ray(photos, files_per_task=2))
    assert rerun.skipped >= 4
    same_rows(rows(conn, "spread"), rows(conn, "plain"))


def test_the_workers_run_with_the_drivers_options(local_ray: None) -> None:
    # Handed to each actor with its arguments: a worker on another machine has its own
    # environment, not the driver's DOPPEL_RUNTIME or DOPPEL_WEIGHTS_URL.
    wanted = FaceOptions(runtime="onnx", offline=True, weights_url="http://127.0.0.1:9/w")
    pool = EmbedPool(CONFIG, workers=1, options=wanted)
    try:
        assert ray.get(pool.actors[0].options.remote()) == wanted
    finally:
        for actor in pool.actors:
            ray.kill(actor)
