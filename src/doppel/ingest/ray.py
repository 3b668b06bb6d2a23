"""`doppel ingest --cluster`: decoding, detection and embedding on a Ray cluster.

Ray actors each load the model once and turn a batch of files into rows; the driver
(this process) writes every finished batch through the same transaction as the plain
ingest, so the database is reached only from here, a killed run loses at most the
batches in flight, and running the command again skips every file already written.
Ray is an optional extra: `pip install 'doppel[cluster]'`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from doppel.config import DEFAULT_MAX_PIXELS, FaceOptions
from doppel.errors import DoppelError, UsageError
from doppel.faces import catalog, imaging
from doppel.ingest.batches import (
    BatchWriter,
    IngestJob,
    IngestReport,
    Progress,
    Start,
    examine,
    face_rows,
    finish_report,
    prepare,
    start_run,
    tally,
)
from doppel.store.repository import Repository
from doppel.types import EmbeddingConfig, ImageRecord, NewFace

# Tasks queued per worker beyond the one it runs, so it never waits for the driver.
TASKS_AHEAD = 1
# Times a batch is sent again when the worker running it is lost.
RETRIES = 3


@dataclass
class BatchResult:
    """What a worker made of a batch of files: the rows to write and what it skipped."""

    images: list[ImageRecord] = field(default_factory=list)
    faces: list[NewFace] = field(default_factory=list)
    skipped: int = 0
    no_face: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    too_small: list[str] = field(default_factory=list)
    faces_found: int = 0
    files: int = 0
    cpu_seconds: float = 0.0


def embed_files(
    embedder: object,
    paths: list[str],
    known: list[str | None],
    all_faces: bool,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> BatchResult:
    """Read, decode, detect and embed a batch of files: the work of one task."""
    from doppel.faces.embed import Embedder

    assert isinstance(embedder, Embedder)
    begin = time.process_time()
    skip_detection = embedder.config.detector == "skip"
    resize_to = embedder.input_size if skip_detection else None
    result = BatchResult(files=len(paths))
    pending = []
    for path, known_hash in zip(paths, known, strict=True):
        item = prepare(path, known_hash, resize_to, max_pixels)
        record, faces = examine(item, embedder, all_faces)
        if record is None:
            result.skipped += 1
            continue
        result.images.append(record)
        if tally(result, item, record, faces):
            pending.append((item, faces))
    vectors = embedder.embed_crops([face.crop for _, faces in pending for face in faces])
    result.faces.extend(face_rows(pending, vectors, skip_detection))
    result.cpu_seconds = time.process_time() - begin
    return result


class EmbedWorker:
    """A Ray actor: one model, loaded once, embedding batch after batch.

    The options (runtime, where missing weights come from) arrive pickled with the
    actor's arguments: a worker on another machine has none of the driver's environment.
    """

    def __init__(
        self, config: EmbeddingConfig, batch_size: int, all_faces: bool, options: FaceOptions
    ) -> None:
        # One CPU per actor: the model's thread pools stay on it rather than each
        # actor's TensorFlow spreading over every core of the machine.
        for name in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
            os.environ[name] = "1"
        from doppel.faces.embed import Embedder

        self.embedder = Embedder(config, batch_size=batch_size, options=options)
        self.embedder.warm_up()
        self.all_faces = all_faces

    def run(
        self, paths: list[str], known: list[str | None], max_pixels: int = DEFAULT_MAX_PIXELS
    ) -> BatchResult:
        return embed_files(self.embedder, paths, known, self.all_faces, max_pixels)

    def pid(self) -> int:
        return os.getpid()

    def options(self) -> FaceOptions:
        """What its models run with: the driver's options, not this machine's environment."""
        return self.embedder.options


def _import_ray():  # type: ignore[no-untyped-def]
    try:
        import ray
    except ImportError as exc:
        raise UsageError(
            "ingesting on a Ray cluster needs Ray, an optional extra: pip install 'doppel[cluster]'"
        ) from exc
    return ray


class EmbedPool:
    """The Ray actors of a run, one per CPU of the cluster (or `workers`), models loaded.

    Made by ingest_on_cluster, or beforehand to keep the models' loading out of a
    measurement or to serve several folders.
    """

    def __init__(
        self,
        config: EmbeddingConfig,
        *,
        workers: int | None = None,
        batch_size: int = 32,
        all_faces: bool = False,
        options: FaceOptions | None = None,
    ) -> None:
        ray = _import_ray()
        options = options or FaceOptions()
        self.config, self.all_faces = config, all_faces
        count = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        # A worker that dies is started again and its batch run again (max_task_retries).
        actor = ray.remote(num_cpus=1, max_restarts=-1, max_task_retries=-1)(EmbedWorker)
        self.actors = [actor.remote(config, batch_size, all_faces, options) for _ in range(count)]

    def ready(self) -> None:
        """Wait until every actor has its model loaded."""
        ray = _import_ray()
        ray.get([actor.pid.remote() for actor in self.actors])


def _batches(
    paths: list[Path], known: dict[str, str], size: int
) -> Iterator[tuple[list[str], list[str | None]]]:
    for start in range(0, len(paths), size):
        part = paths[start : start + size]
        yield [str(p) for p in part], [known.get(imaging.path_text(p)) for p in part]


def ingest_on_cluster(
    conn: psycopg.Connection,
    job: IngestJob,
    *,
    progress: Progress | None = None,
    on_batch: Callable[[BatchResult], None] | None = None,
    pool: EmbedPool | None = None,
    waiting: Callable[[str], None] | None = None,
) -> IngestReport:
    """Embed every photo under job.root into the gallery on Ray workers; the driver writes.

    job.cluster: a running cluster ("ray://head:10001", "auto"); "" starts a local Ray
    for this run (or uses the one this process already started). on_batch sees each
    finished batch (its worker's CPU seconds, for accounting). pool: actors made
    beforehand (their configuration must be the job's); without one, the workers get the
    job's options (runtime, weights source). As on this machine, one run writes a
    gallery at a time (a second waits, told through `waiting`), special files and link
    loops are passed over and listed, and no image over max_pixels is decoded.
    """
    if job.attributes:
        raise UsageError("attribute prediction does not run on a cluster yet")
    ray = _import_ray()
    began = time.perf_counter()
    scan = imaging.photos_to_ingest(job.root)
    repo = Repository(conn)
    with repo.writing(job.gallery, waiting):
        start = start_run(repo, scan, job, job.config, catalog.dimension(job.config.model))
        started_here = _start_ray(ray, job)
        writer = BatchWriter(repo, start.gallery)
        writer.start()
        try:
            if pool is None:
                pool = EmbedPool(
                    job.config,
                    workers=job.workers,
                    batch_size=job.batch_size,
                    all_faces=job.all_faces,
                    options=job.options,
                )
            elif (pool.config, pool.all_faces) != (job.config, job.all_faces):
                raise UsageError("the Ray actors were made for another embedding configuration")
            _drive(ray, pool, start, job, writer, progress, on_batch)
        finally:
            try:
                writer.close()
            finally:
                if started_here:
                    ray.shutdown()
    return finish_report(start.report, began, job.log_dir)


def _start_ray(ray, job: IngestJob) -> bool:  # type: ignore[no-untyped-def]
    """Ray started for this run, quietly, unless this process already has it; True if so."""
    if ray.is_initialized():
        return False
    quiet: dict[str, object] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "logging_level": "WARNING",
    }
    if job.cluster:
        ray.init(address=job.cluster, **quiet)
    else:
        ray.init(num_cpus=job.workers or os.cpu_count() or 1, **quiet)
    return True


def _drive(  # type: ignore[no-untyped-def]
    ray,
    pool: EmbedPool,
    start: Start,
    job: IngestJob,
    writer: BatchWriter,
    progress: Progress | None,
    on_batch: Callable[[BatchResult], None] | None,
) -> None:
    """The driver's loop: batches to the actors, each result to the writer and the
    report; a batch whose worker was lost goes out again, RETRIES times at most."""
    report, actors = start.report, pool.actors
    todo = list(_batches(start.paths, start.known, job.files_per_task))
    todo.reverse()
    running: dict[object, tuple[int, tuple[list[str], list[str | None]], int]] = {}
    done = 0
    free = [i for i in range(len(actors)) for _ in range(1 + TASKS_AHEAD)]

    def submit(slot: int, batch: tuple[list[str], list[str | None]], tries: int) -> None:
        running[actors[slot].run.remote(*batch, job.max_pixels)] = (slot, batch, tries)

    while todo or running:
        while todo and free:
            submit(free.pop(), todo.pop(), 0)
        ready, _ = ray.wait(list(running), num_returns=1)
        slot, batch, tries = running.pop(ready[0])
        free.append(slot)
        try:
            result: BatchResult = ray.get(ready[0])
        except ray.exceptions.RayError as exc:
            if tries >= RETRIES:
                raise DoppelError(f"a cluster worker failed on {batch[0][0]}: {exc}") from exc
            submit(free.pop(), batch, tries + 1)
            continue
        if result.images:
            writer.put(result.images, result.faces)
        if on_batch:
            on_batch(result)
        report.faces_added += len(result.faces)
        report.images_added += sum(1 for i in result.images if i.status == "ok")
        report.skipped += result.skipped
        report.no_face += result.no_face
        report.unreadable += result.unreadable
        report.too_small += result.too_small
        report.faces_found += result.faces_found
        done += result.files
        if progress:
            progress(done, len(start.paths), report)
