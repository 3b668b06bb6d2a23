"""Embed a folder of photos into a gallery: decode, embed and write overlap, resumably."""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

import numpy as np
import psycopg

from doppel.config import DEFAULT_BATCH_SIZE, DEFAULT_MAX_PIXELS
from doppel.duplicates import dhash
from doppel.errors import DetectorFailed, DoppelError, PhotoTooSmall
from doppel.faces import imaging
from doppel.faces.embed import Embedder
from doppel.indexing import finish_index
from doppel.ingest.workers import process_pool
from doppel.outputs import file_stem, log_file, write_text
from doppel.store.repository import Repository
from doppel.types import BuildProgress, DetectedFace, Gallery, ImageRecord, NewFace

# (done, total, report): the report so far, for running counts in a bar.
Progress = Callable[[int, int, "IngestReport"], None]


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
    index_built: bool = False
    index_background: bool = False  # handed to a background process; exact search meanwhile
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


class BatchTallies(Protocol):
    """The lists of a run's problem files (IngestReport and a Ray batch's result)."""

    faces_found: int
    no_face: list[str]
    unreadable: list[str]
    too_small: list[str]


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


def _prepared_stream(
    paths: list[Path],
    known: dict[str, str],
    resize_to: int | None,
    workers: int,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Iterator[Prepared]:
    """Prepared files in order, decoded by `workers` processes with bounded look-ahead."""

    def args(path: Path) -> tuple[str, str | None, int | None, int]:
        return str(path), known.get(imaging.path_text(path)), resize_to, max_pixels

    if workers <= 0 or len(paths) < 16:
        for path in paths:
            yield prepare(*args(path))
        return
    with process_pool(workers) as pool:
        pending: list[Future[Prepared]] = []
        window = 8 * workers + 32
        todo = iter(paths)
        try:
            for path in todo:
                pending.append(pool.submit(prepare, *args(path)))
                if len(pending) >= window:
                    yield pending.pop(0).result()
            while pending:
                yield pending.pop(0).result()
        finally:
            for future in pending:
                future.cancel()


# What a run records for a photo on which the detector brought the process down.
CRASHED = "the face detector crashed on this photo in an earlier run"


class CrashJournal:
    """The photo being examined, named in a small file before its detector runs.

    A detector's native code can abort the whole process (dlib's CNN has, on thin
    pictures). The photo then stays named here, and the next run records it as
    unreadable instead of crashing on it again. Naming a photo costs a few
    microseconds against a detection's tens of milliseconds. Best effort: a journal
    that cannot be written never stops an ingest.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._fd: int | None = None

    def leftover(self) -> tuple[str, str] | None:
        """(source, content hash) of the photo a crashed run was examining, if any."""
        if self.path is None:
            return None
        try:
            text = self.path.read_bytes().decode("utf-8", "surrogateescape")
        except OSError:
            return None
        source, _, digest = text.partition("\t")
        return (source, digest) if source and digest else None

    def open(self) -> None:
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        except OSError:
            self._fd = None

    def begin(self, source: str, digest: str) -> None:
        if self._fd is not None:
            data = f"{source}\t{digest}".encode("utf-8", "surrogateescape")
            os.pwrite(self._fd, data, 0)
            os.ftruncate(self._fd, len(data))

    def end(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)

    def close(self) -> None:
        """Forget the journal: the run ended without a crash."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def journal_path(log_dir: Path | None, gallery: str) -> Path | None:
    return None if log_dir is None else log_dir / f".detecting-{file_stem(gallery)}"


class _Writer(threading.Thread):
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


# Over 80 lines: one pipeline (decode, detect, embed, write) whose batches share state
# with its flush(); split up, that state would have to travel between functions.
def ingest(
    conn: psycopg.Connection,
    root: Path,
    gallery_name: str,
    embedder: Embedder,
    *,
    all_faces: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int | None = None,
    log_dir: Path | None = None,
    progress: Progress | None = None,
    storage: str | None = None,
    attributes: Callable[[list[np.ndarray]], list[tuple[int, str, str]]] | None = None,
    m: int | None = None,
    ef_construction: int | None = None,
    index: str = "auto",
    index_progress: Callable[[BuildProgress], None] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    waiting: Callable[[str], None] | None = None,
    notice: Callable[[str], None] | None = None,
) -> IngestReport:
    """Embed every photo under root into the gallery; files already there are skipped.

    Each batch of files and its faces is committed together, so an interrupted run
    loses at most the batch in flight and the next run picks up where it stopped.
    One run writes a gallery at a time: a second waits (told through `waiting`) and
    then adds only what the first did not. Special files, link loops and folders that
    cannot be read are passed over and listed; nothing is opened that could block.
    """
    start = time.perf_counter()
    scan = imaging.photos_to_ingest(root)
    repo = Repository(conn)
    with repo.writing(gallery_name, waiting):
        report = _ingest_locked(
            repo,
            scan,
            gallery_name,
            embedder,
            all_faces=all_faces,
            batch_size=batch_size,
            workers=workers,
            progress=progress,
            storage=storage,
            attributes=attributes,
            max_pixels=max_pixels,
            journal=CrashJournal(journal_path(log_dir, gallery_name)),
            notice=notice,
        )
        outcome = finish_index(
            conn,
            repo.gallery(gallery_name),
            index,
            m=m,
            ef_construction=ef_construction,
            progress=index_progress,
            log_dir=log_dir,
        )
    report.index_built, report.index_background = outcome.built, outcome.background
    report.seconds = time.perf_counter() - start
    if report.no_face or report.unreadable or report.too_small or report.passed_over:
        report.listed_in = _write_problems(report, log_dir)
    return report


# Over 80 lines: the batches of one run share the writer, the crash journal and the
# report with flush(); split up, that state would travel between functions.
def _ingest_locked(
    repo: Repository,
    scan: imaging.FolderScan,
    gallery_name: str,
    embedder: Embedder,
    *,
    all_faces: bool,
    batch_size: int,
    workers: int | None,
    progress: Progress | None,
    storage: str | None,
    attributes: Callable[[list[np.ndarray]], list[tuple[int, str, str]]] | None,
    max_pixels: int,
    journal: CrashJournal,
    notice: Callable[[str], None] | None = None,
) -> IngestReport:
    """The body of ingest, run while this run holds the gallery's writer lock."""
    gallery = repo.ensure_gallery(
        gallery_name, embedder.config, storage, dimension=embedder.dimension
    )
    paths = [path.resolve() for path in scan.images]
    known = repo.known_images(gallery)
    report = IngestReport(gallery=gallery.name, files=len(paths))
    images: list[ImageRecord] = []
    crashed = journal.leftover()
    if crashed is not None and known.get(crashed[0]) != crashed[1]:
        # Recorded with this run's first batch, so no later run tries it again.
        images.append(ImageRecord(crashed[0], crashed[1], "unreadable", CRASHED))
        report.unreadable.append(f"{crashed[0]}\t{CRASHED}")
        paths = [path for path in paths if imaging.path_text(path) != crashed[0]]
    report.passed_over = [f"{imaging.path_text(item.path)}\t{item.reason}" for item in scan.skipped]
    skip_detection = embedder.config.detector == "skip"
    new_files = sum(1 for path in paths if imaging.path_text(path) not in known)
    cores = os.cpu_count() or 1
    workers = cores if workers is None else workers
    if embedder.threads is None and workers > 0 and len(paths) >= 16:
        # The decoding workers keep the cores busy; the model gets what they leave, at
        # least one thread. One ONNX Runtime thread spends a third less CPU per face
        # than two competing with the decoders (docs/benchmarks.md, section 1).
        embedder.threads = max(1, cores - workers)
    if new_files:
        if notice:  # loading takes seconds before the first file; with nothing new, none
            notice(f"loading the {embedder.config.model} model…")
        embedder.warm_up()  # fail on missing weights before any work
    if new_files and repo.has_index(gallery):
        repo.drop_index_before_bulk_load(gallery, new_files, repo.face_count(gallery))
    resize_to = embedder.input_size if skip_detection else None

    writer = _Writer(repo, gallery)
    writer.start()
    journal.open()
    pending: list[tuple[Prepared, list[DetectedFace]]] = []  # (file, detected faces)
    crops = 0
    done = 0

    def flush() -> None:
        nonlocal images, pending, crops
        vectors = embedder.embed_crops([f.crop for _, faces in pending for f in faces])
        labels = attributes([f.crop for _, faces in pending for f in faces]) if attributes else None
        rows = face_rows(pending, vectors, skip_detection, labels)
        report.faces_added += len(rows)
        report.images_added += len(pending)
        writer.put(images, rows)
        images, pending, crops = [], [], 0

    try:
        for item in _prepared_stream(paths, known, resize_to, workers, max_pixels):
            done += 1
            if item.status == "ok":
                journal.begin(item.source, item.content_hash)
            try:
                record, faces = examine(item, embedder, all_faces)
            finally:
                journal.end()  # only a crash that unwinds nothing leaves the photo named
            if record is None:
                report.skipped += 1
            else:
                images.append(record)
                if tally(report, item, record, faces):
                    pending.append((item, faces))
                    crops += len(faces)
            if crops >= batch_size or len(images) >= 4 * batch_size:
                flush()
            if progress:
                progress(done, len(paths), report)
        if images or pending:
            flush()
    finally:
        writer.close()
    journal.close()
    return report


def _write_problems(report: IngestReport, log_dir: Path | None) -> Path | None:
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
