"""What both ingest pipelines share: the job, the report, a file's preparation and sorting,
the start under the gallery's writer lock, the batch writer and the list of problem files.

This machine's pipeline (local.py) and the Ray one (ray.py) differ only in where files
are decoded and embedded; everything here is the same for both, so a rule changed here
changes for both.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

import numpy as np
import psycopg

from doppel.config import DEFAULT_BATCH_SIZE, DEFAULT_MAX_PIXELS, FaceOptions
from doppel.duplicates import dhash
from doppel.errors import DetectorFailed, DoppelError, PhotoTooSmall
from doppel.faces import imaging
from doppel.faces.embed import Embedder
from doppel.outputs import log_file, write_text
from doppel.store.repository import Repository
from doppel.types import DetectedFace, EmbeddingConfig, Gallery, ImageRecord, NewFace

# (done, total, report): the report so far, for running counts in a bar.
Progress = Callable[[int, int, "IngestReport"], None]


@dataclass(frozen=True)
class IngestJob:
    """One `doppel ingest`: built once by the front end, read by each layer below it.

    cluster: None runs on this machine; "" on a Ray started for the run; otherwise the
    address of a running Ray cluster ("ray://head:10001", "auto"). options
    (Settings.face_options) go with the models to wherever they run.
    """

    root: Path
    gallery: str
    config: EmbeddingConfig
    all_faces: bool = False
    batch_size: int = DEFAULT_BATCH_SIZE
    workers: int | None = None  # decoding processes here, Ray actors on a cluster
    storage: str | None = None  # "vector" or "halfvec" for a new gallery; None: by pgvector
    attributes: bool = False  # age, sex and race of each face (not on a cluster)
    cluster: str | None = None
    # Files per Ray task: big enough for a full model batch most of the time, small
    # enough that a lost task costs little and every worker has work to the end.
    files_per_task: int = 32
    log_dir: Path | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    options: FaceOptions = field(default_factory=FaceOptions)


@dataclass
class IngestReport:
    gallery: str
    files: int = 0
    faces_added: int = 0
    faces_found: int = 0  # as files are detected; stored a batch at a time (faces_added)
    images_added: int = 0
    skipped: int = 0
    no_face: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    # "path\treason": photos too small or too thin to hold a face (icons, tracking pixels)
    too_small: list[str] = field(default_factory=list)
    # "path\treason": special files, link loops and folders that cannot be read
    passed_over: list[str] = field(default_factory=list)
    listed_in: Path | None = None
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        done = self.images_added + len(self.no_face) + len(self.unreadable) + len(self.too_small)
        return done / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class Prepared:
    """A file after the worker has read it: skipped, unreadable, or decoded pixels."""

    source: str
    content_hash: str
    status: str  # "skip", "ok", "too_small" or "unreadable"
    photo: imaging.Photo | None = None
    detail: str | None = None
    phash: int | None = None  # the photo's difference hash, to tell copies of one picture


def prepare(
    path: str,
    known_hash: str | None,
    resize_to: int | None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Prepared:
    """Read, hash and decode one file (runs in a worker process).

    resize_to is set for detector `skip`: the whole image is the face, so it is shrunk
    to the model's input here, off the main process, and sent back small. `source`
    is the path as doppel records it (imaging.path_text).
    """
    source = imaging.path_text(path)
    try:
        data = imaging.read_file(path)
    except DoppelError as exc:
        return Prepared(source, "", "unreadable", detail=str(exc).removeprefix(f"{source}: "))
    digest = imaging.content_hash(data)
    if digest == known_hash:
        return Prepared(source, digest, "skip")
    try:
        # Straight from full size to the model's input: one resize, not two.
        photo = imaging.decode(
            data, source, None if resize_to else imaging.MAX_SIDE, max_pixels=max_pixels
        )
    except PhotoTooSmall as exc:
        return Prepared(source, digest, "too_small", detail=str(exc).removeprefix(f"{source}: "))
    except DoppelError as exc:
        return Prepared(source, digest, "unreadable", detail=str(exc))
    phash = dhash(photo.pixels)  # of the whole photo, before any shrinking
    if resize_to:
        # Square like the model's input; the box stays in file pixels through scale.
        photo = photo.shrunk(resize_to, square=True)
    return Prepared(source, digest, "ok", photo, phash=phash)


def examine(
    item: Prepared, embedder: Embedder, all_faces: bool
) -> tuple[ImageRecord | None, list[DetectedFace]]:
    """A prepared file's record (None: it is stored already) and the faces to embed: the
    largest only, unless all_faces. Both ingest pipelines sort their files with it.

    A photo too small to hold a face is stored as one without a face (with the reason),
    and one the detector failed on as unreadable: either way a rerun passes over it.
    """
    if item.status == "skip":
        return None, []
    if item.status == "unreadable":
        return ImageRecord(item.source, item.content_hash, "unreadable", item.detail), []
    if item.status == "too_small":
        return ImageRecord(item.source, item.content_hash, "no_face", item.detail), []
    assert item.photo is not None
    try:
        faces = embedder.detect(item.photo)
    except DetectorFailed as exc:
        return ImageRecord(item.source, item.content_hash, "unreadable", str(exc)), []
    if not all_faces:
        faces = faces[:1]
    return ImageRecord(item.source, item.content_hash, "ok" if faces else "no_face"), faces


class BatchTallies(Protocol):
    """The lists of a run's problem files (IngestReport and a Ray batch's result)."""

    faces_found: int
    no_face: list[str]
    unreadable: list[str]
    too_small: list[str]


def tally(
    tallies: BatchTallies,
    item: Prepared,
    record: ImageRecord,
    faces: list[DetectedFace],
) -> bool:
    """Count a stored file in the lists a summary shows; True when it has faces to embed.
    Both ingest pipelines sort their files with it."""
    if record.status == "unreadable":
        tallies.unreadable.append(f"{item.source}\t{record.detail}")
    elif faces:
        tallies.faces_found += len(faces)
        return True
    elif item.status == "too_small":
        tallies.too_small.append(f"{item.source}\t{item.detail}")
    else:
        tallies.no_face.append(item.source)
    return False


def face_rows(
    pending: list[tuple[Prepared, list[DetectedFace]]],
    vectors: np.ndarray,
    skip_detection: bool,
    labels: list[tuple[int, str, str]] | None = None,
) -> list[NewFace]:
    """The rows of the pending files' faces, given their vectors (and age, sex, race) in
    the same order; a face has a box only where a detector found it."""
    rows: list[NewFace] = []
    for item, faces in pending:
        for face in faces:
            age, sex, race = labels[len(rows)] if labels else (None, None, None)
            rows.append(
                NewFace(
                    item.source,
                    item.content_hash,
                    face.index,
                    vectors[len(rows)],
                    None if skip_detection else face.box,
                    None if skip_detection else face.confidence,
                    age,
                    sex,
                    race,
                    item.phash,
                    None if skip_detection else face.quality,
                )
            )
    return rows


@dataclass
class Start:
    """Where a run stands once it holds the gallery's writer lock, before any file."""

    gallery: Gallery
    paths: list[Path]  # the files to go through, resolved
    known: dict[str, str]  # source -> content hash of the files the gallery has seen
    report: IngestReport
    new_files: int
    images: list[ImageRecord] = field(default_factory=list)  # written with the first batch


def start_run(
    repo: Repository,
    scan: imaging.FolderScan,
    job: IngestJob,
    config: EmbeddingConfig,
    dimension: int,
    *,
    crashed: tuple[str, str] | None = None,
    before_drop: Callable[[int, int], None] | None = None,
) -> Start:
    """Both pipelines' start under the writer lock: the gallery made or checked, the
    files it already holds, and its index dropped when the new files make a bulk load.

    crashed: (source, content hash) of a photo an earlier run's detector brought down;
    it is recorded as unreadable with the first batch and not read again. before_drop
    hears the counts of new files and of all files before any index is dropped (to load the model
    first, so that missing weights fail before anything changes).
    """
    gallery = repo.ensure_gallery(job.gallery, config, job.storage, dimension=dimension)
    paths = [path.resolve() for path in scan.images]
    known = repo.known_images(gallery)
    report = IngestReport(gallery=gallery.name, files=len(paths))
    images: list[ImageRecord] = []
    if crashed is not None and known.get(crashed[0]) != crashed[1]:
        # Recorded with this run's first batch, so no later run tries it again.
        images.append(ImageRecord(crashed[0], crashed[1], "unreadable", CRASHED))
        report.unreadable.append(f"{crashed[0]}\t{CRASHED}")
        paths = [path for path in paths if imaging.path_text(path) != crashed[0]]
    report.passed_over = [f"{imaging.path_text(item.path)}\t{item.reason}" for item in scan.skipped]
    new_files = sum(1 for path in paths if imaging.path_text(path) not in known)
    if before_drop:
        before_drop(new_files, len(paths))
    if new_files and repo.has_index(gallery):
        repo.drop_index_before_bulk_load(gallery, new_files, repo.face_count(gallery))
    return Start(gallery, paths, known, report, new_files, images)


# What a run records for a photo on which the detector brought the process down.
CRASHED = "the face detector crashed on this photo in an earlier run"


class BatchWriter(threading.Thread):
    """Writes batches with COPY on the connection while the main thread embeds the next."""

    def __init__(self, repo: Repository, gallery: Gallery) -> None:
        super().__init__(daemon=True)
        self.repo = repo
        self.gallery = gallery
        self.jobs: queue.Queue[tuple[list[ImageRecord], list[NewFace]] | None] = queue.Queue(2)
        self.error: BaseException | None = None

    def run(self) -> None:
        while (job := self.jobs.get()) is not None:
            if self.error is None:
                try:
                    self.repo.write_batch(self.gallery, *job)
                except BaseException as exc:  # handed to the main thread
                    self.error = exc

    def put(self, images: list[ImageRecord], faces: list[NewFace]) -> None:
        self.check()
        self.jobs.put((images, faces))

    def close(self) -> None:
        self.jobs.put(None)
        self.join()
        self.check()

    def check(self) -> None:
        if self.error is not None:
            if isinstance(self.error, psycopg.Error):
                raise DoppelError(f"writing to the database failed: {self.error}")
            raise self.error


def finish_report(report: IngestReport, began: float, log_dir: Path | None) -> IngestReport:
    """The run's time, and its problem files listed in a log when there are any."""
    report.seconds = time.perf_counter() - began
    if report.no_face or report.unreadable or report.too_small or report.passed_over:
        report.listed_in = write_problems(report, log_dir)
    return report


def write_problems(report: IngestReport, log_dir: Path | None) -> Path | None:
    """List the files passed over in a log; None when there is no log folder. A log
    that cannot be written loses nothing stored, so it is a one-line error after the
    faces are committed, naming the folder."""
    if log_dir is None:
        return None
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = log_file(log_dir, "ingest", report.gallery, stamp)
    lines = [f"no_face\t{source}" for source in report.no_face]
    lines += [f"too_small\t{entry}" for entry in report.too_small]
    lines += [f"unreadable\t{entry}" for entry in report.unreadable]
    lines += [f"skipped\t{entry}" for entry in report.passed_over]
    write_text(path, "\n".join(lines) + "\n")
    return path
